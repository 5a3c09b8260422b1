"""Helpers shared by the recipes' data preparation (``*_prepare.py``).

A preparation reads a corpus, checks every row before anything is written,
and writes CSV manifests (plus one ``skipped_<split>.txt`` report per split)
atomically. What a row is, where the corpus lies and how errors are worded
stay in the recipes; this module holds the pieces they have in common:

* :class:`Problems`: collects unusable rows (file, line, reason) or raises
  on the first one, following an ``on_error`` policy (``skip`` / ``error``);
* :func:`write_csv` and :func:`count_rows`: atomic manifest writing and
  counting;
* :func:`skips_path`, :func:`write_skips`, :func:`read_skips` and
  :func:`log_skips`: the skip reports;
* :func:`is_up_to_date` and :func:`begin_writing`: SpeechBrain-style
  idempotence (the options pickled last, next to the CSVs);
* :func:`split_train_valid`: a deterministic validation slice stratified by
  label;
* :func:`is_saved_dataset` and :func:`load_datasets`: the ``datasets``
  copies (``save_to_disk`` folders or hub ids) a recipe may read instead of
  the released files;
* :func:`load_manifest`: ``DynamicItemDataset.from_csv`` that keeps unknown
  ``$name`` text (``$100`` in a review) as written instead of failing.

Authors
 * cald-brain developers 2026
"""

import csv
import os
import random
import re
from collections import Counter

ON_ERROR = ("skip", "error")
MAX_LOGGED_SKIPS = 20
# A datasets hub id ("glue", "nyu-mll/glue"); only tried for paths that do not exist.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# --------------------------------------------------------------------------
# Unusable rows
# --------------------------------------------------------------------------


class Problems:
    """Collects unusable rows, or raises on the first one (``on_error="error"``).

    Called as ``problems(where, reason)``. With a ``file``, ``where`` is the
    line (or row, see ``unit``) within it and a record is
    ``{split, file, line, reason}``; without one, ``where`` is the file and
    a record is ``{split, file, reason}``.

    Arguments
    ---------
    split : str
        The split the rows feed (stored in each record).
    on_error : str
        ``skip`` records the problem, ``error`` raises ``error``.
    error : type
        The exception raised with ``on_error="error"`` (the recipe's own).
    file : str, optional
        The file the locations refer to.
    unit : str
        What a location counts (``line``, ``row``), for messages.
    noun : str
        What is dropped (``rows``, ``files``), for messages.

    Example
    -------
    >>> problems = Problems("train", "skip", file="train.tsv")
    >>> problems(3, "empty sentence")
    >>> problems.records
    [{'split': 'train', 'file': 'train.tsv', 'line': 3, 'reason': 'empty sentence'}]
    >>> Problems("test", "error", file="dev.tsv", unit="row")(7, "unknown label 5")
    Traceback (most recent call last):
    ...
    ValueError: dev.tsv row 7: unknown label 5 (on_error='skip' drops such rows and reports them)
    >>> by_file = Problems("train", "skip", noun="files")
    >>> by_file("pos/1_2.txt", "rating 2 in pos/")
    >>> by_file.records
    [{'split': 'train', 'file': 'pos/1_2.txt', 'reason': 'rating 2 in pos/'}]
    """

    def __init__(self, split, on_error, error=ValueError, file=None, unit="line", noun="rows"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got '{on_error}'.")
        self.split, self.on_error, self.error = split, on_error, error
        self.file, self.unit, self.noun = file, unit, noun
        self.records = []

    def __call__(self, where, reason):
        place = where if self.file is None else f"{self.file} {self.unit} {where}"
        if self.on_error == "error":
            raise self.error(f"{place}: {reason} (on_error='skip' drops such {self.noun} and reports them)")
        if self.file is None:
            self.records.append({"split": self.split, "file": where, "reason": reason})
        else:
            self.records.append({"split": self.split, "file": self.file, "line": where, "reason": reason})


# --------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------


def write_csv(path, rows, columns, extrasaction="raise"):
    """Writes a CSV manifest atomically (a ``.tmp`` file, then ``os.replace``).

    A killed run never leaves a half-written manifest under ``path``.

    Arguments
    ---------
    path : str
    rows : iterable of dict
    columns : sequence of str
        The header, in order.
    extrasaction : str
        ``raise`` (a row key outside ``columns`` is an error) or ``ignore``
        (such keys are not written), as ``csv.DictWriter``'s.

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("train.csv"))
    >>> write_csv(path, [{"ID": "a", "text": "Is it $5?", "line": 2}], ["ID", "text"], extrasaction="ignore")
    >>> print(open(path).read().strip())
    ID,text
    a,Is it $5?
    >>> count_rows(path), os.path.exists(path + ".tmp")
    (1, False)
    """
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fout:
        writer = csv.DictWriter(fout, fieldnames=list(columns), extrasaction=extrasaction)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def count_rows(path):
    """The number of data rows of a CSV manifest (the header excluded).

    Arguments
    ---------
    path : str

    Returns
    -------
    int

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("m.csv"))
    >>> _ = open(path, "w").write('ID,text\\na,"two\\nlines"\\nb,one\\n')
    >>> count_rows(path)
    2
    """
    with open(path, encoding="utf-8", newline="") as fin:
        return sum(1 for _ in csv.DictReader(fin))


def is_up_to_date(paths, opt_path, options):
    """Whether an earlier preparation with the same options is complete.

    True when every path exists and ``opt_path`` (pickled last by the
    preparation) holds ``options``.

    Arguments
    ---------
    paths : iterable of str
        The manifests.
    opt_path : str
        The options pickle.
    options : dict

    Returns
    -------
    bool

    Example
    -------
    >>> from speechbrain.dataio.dataio import save_pkl
    >>> folder = getfixture("tmpdir")
    >>> csv_path, opt_path = str(folder.join("train.csv")), str(folder.join("opt.pkl"))
    >>> write_csv(csv_path, [], ["ID"])
    >>> is_up_to_date([csv_path], opt_path, {"seed": 1})
    False
    >>> save_pkl({"seed": 1}, opt_path)
    >>> is_up_to_date([csv_path], opt_path, {"seed": 1}), is_up_to_date([csv_path], opt_path, {"seed": 2})
    (True, False)
    """
    from speechbrain.dataio.dataio import load_pkl

    return (all(os.path.isfile(p) for p in paths) and os.path.isfile(opt_path)
            and load_pkl(opt_path) == options)


def begin_writing(save_folder, opt_path):
    """Creates ``save_folder`` and removes the options pickle of an earlier run.

    The pickle is written again last, so that a run killed while writing is
    never taken for a complete one (see :func:`is_up_to_date`).

    Arguments
    ---------
    save_folder : str
    opt_path : str

    Example
    -------
    >>> folder = getfixture("tmpdir").join("prep")
    >>> begin_writing(str(folder), str(folder.join("opt.pkl")))
    >>> folder.isdir(), folder.join("opt.pkl").exists()
    (True, False)
    """
    os.makedirs(save_folder, exist_ok=True)
    if os.path.isfile(opt_path):
        os.remove(opt_path)


# --------------------------------------------------------------------------
# Skip reports
# --------------------------------------------------------------------------


def skips_path(save_folder, split):
    """``<save_folder>/skipped_<split>.txt``.

    Arguments
    ---------
    save_folder : str
    split : str

    Returns
    -------
    str

    Example
    -------
    >>> skips_path("prep", "train").replace(os.sep, "/")
    'prep/skipped_train.txt'
    """
    return os.path.join(save_folder, f"skipped_{split}.txt")


def _location(record):
    """``<file>:<line>``, or ``<file>`` for a record without a line."""
    return f"{record['file']}:{record['line']}" if "line" in record else str(record["file"])


def write_skips(path, records, fields=()):
    """Writes the skip report of one split atomically, one tab-separated line a record.

    A line is ``<file>[:<line>]``, then the ``fields`` in order, then the
    reason (``<file>:<line>`` when the records have a ``line``).

    Arguments
    ---------
    path : str
        Usually :func:`skips_path`.
    records : iterable of dict
        With ``file``, ``reason``, optionally ``line`` and the ``fields``.
    fields : sequence of str
        Recipe-specific columns written between the location and the reason.

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("skipped_dev.txt"))
    >>> write_skips(path, [{"split": "dev", "file": "split.txt", "line": 4, "spk_id": "id1",
    ...                     "reason": "speaker id1 not in train"}], fields=["spk_id"])
    >>> open(path).read()
    'split.txt:4\\tid1\\tspeaker id1 not in train\\n'
    >>> read_skips(path, "dev", fields=["spk_id"])
    [{'split': 'dev', 'file': 'split.txt', 'line': 4, 'spk_id': 'id1', 'reason': 'speaker id1 not in train'}]
    """
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fout:
        for r in records:
            fout.write("\t".join([_location(r), *(str(r[f]) for f in fields), r["reason"]]) + "\n")
    os.replace(tmp, path)


def read_skips(path, split, fields=(), with_line=True):
    """The records :func:`write_skips` wrote (an absent file: none).

    Arguments
    ---------
    path : str
    split : str
        Stored in each record.
    fields : sequence of str
        As given to :func:`write_skips`.
    with_line : bool
        Whether the location is ``<file>:<line>`` (``line`` read as an int)
        or only ``<file>``.

    Returns
    -------
    list of dict

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("skipped_train.txt"))
    >>> write_skips(path, [{"split": "train", "file": "pos/1_2.txt", "reason": "empty review"}])
    >>> read_skips(path, "train", with_line=False)
    [{'split': 'train', 'file': 'pos/1_2.txt', 'reason': 'empty review'}]
    >>> read_skips(path + ".absent", "train")
    []
    """
    if not os.path.isfile(path):
        return []
    records = []
    with open(path, encoding="utf-8") as fin:
        for text in fin:
            parts = text.rstrip("\n").split("\t", len(fields) + 1)
            record = {"split": split}
            if with_line:
                file, _, line_no = parts[0].rpartition(":")
                record.update(file=file, line=int(line_no))
            else:
                record["file"] = parts[0]
            record.update(zip(fields, parts[1:-1]))
            record["reason"] = parts[-1]
            records.append(record)
    return records


def log_skips(logger, split, records, noun="rows", group=None, fields=(), max_logged=MAX_LOGGED_SKIPS):
    """Logs the first skipped records of a split and a summary line (warnings).

    Arguments
    ---------
    logger : logging.Logger
    split : str
    records : list of dict
        As :class:`Problems` collects them.
    noun : str
        What was skipped (``utterances``, ``malformed rows``, ``files``).
    group : callable, optional
        Record -> the kind of reason counted in the summary; None: no
        breakdown.
    fields : sequence of str
        Record keys shown, in parentheses, after the location.
    max_logged : int
        How many records are logged one by one.

    Example
    -------
    >>> import logging
    >>> caplog = getfixture("caplog")
    >>> records = [{"split": "train", "file": "train.tsv", "line": n, "reason": "empty text"} for n in (3, 9)]
    >>> with caplog.at_level(logging.WARNING):
    ...     log_skips(logging.getLogger("prep"), "train", records, group=lambda r: r["reason"], max_logged=1)
    >>> print(caplog.text.count("skipped train.tsv:"), "2 rows skipped (2 empty text)" in caplog.text)
    1 True
    """
    for r in records[:max_logged]:
        detail = f" ({', '.join(str(r[f]) for f in fields)})" if fields else ""
        logger.warning("%s: skipped %s%s: %s", split, _location(r), detail, r["reason"])
    if records:
        kinds = ""
        if group is not None:
            reasons = Counter(group(r) for r in records)
            kinds = " (" + ", ".join(f"{n} {why}" for why, n in reasons.most_common(5)) + ")"
        logger.warning("%s: %d %s skipped%s%s; all listed in skipped_%s.txt", split, len(records), noun, kinds,
                       f", only the first {max_logged} logged above" if len(records) > max_logged else "", split)


# --------------------------------------------------------------------------
# Validation slice
# --------------------------------------------------------------------------


def split_train_valid(label_ids, valid_fraction, seed):
    """A deterministic validation slice, stratified by label.

    ``round(n * valid_fraction)`` rows (at least one when the fraction is
    positive and there are two rows or more, never all of them) are shared
    among the labels in proportion (largest remainders) and drawn with
    ``random.Random(seed)``.

    Arguments
    ---------
    label_ids : sequence
        One label per row (any sortable values).
    valid_fraction : float
        In ``[0, 1)``.
    seed : int

    Returns
    -------
    train, valid : list of int
        Row indices, in their original order.

    Example
    -------
    >>> train, valid = split_train_valid([0] * 8 + [1] * 12, 0.25, seed=3)
    >>> len(train), len(valid), sum(1 for i in valid if i >= 8)
    (15, 5, 3)
    >>> split_train_valid([0] * 8 + [1] * 12, 0.25, seed=3) == (train, valid)
    True
    >>> split_train_valid([0, 1, 1], 0.0, seed=0)
    ([0, 1, 2], [])
    """
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}.")
    n = len(label_ids)
    by_label = {}
    for i, label in enumerate(label_ids):
        by_label.setdefault(label, []).append(i)
    total = round(n * valid_fraction)
    if valid_fraction > 0 and n > 1:
        total = min(max(total, 1), n - 1)
    labels = sorted(by_label)
    exact = {lab: len(by_label[lab]) * total / n for lab in labels}
    quota = {lab: int(exact[lab]) for lab in labels}
    for lab in sorted(labels, key=lambda lab: (quota[lab] - exact[lab], lab))[: total - sum(quota.values())]:
        quota[lab] += 1
    rng = random.Random(seed)
    valid = []
    for lab in labels:
        indices = list(by_label[lab])
        rng.shuffle(indices)
        valid.extend(indices[: quota[lab]])
    chosen = set(valid)
    return [i for i in range(n) if i not in chosen], sorted(valid)


# --------------------------------------------------------------------------
# Loading the manifests
# --------------------------------------------------------------------------


class KeepPlaceholders(dict):
    """Replacements for SpeechBrain's CSV reader that leave unknown ``$name`` text as written.

    Example
    -------
    >>> replacements = KeepPlaceholders({"data_root": "/corpus"})
    >>> replacements["data_root"], replacements["100"]
    ('/corpus', '$100')
    """

    def __missing__(self, key):
        return "$" + key


def load_manifest(csv_path, replacements=None, dynamic_items=(), output_keys=(), col_types=None):
    """A CSV manifest as a ``DynamicItemDataset``, unknown placeholders kept as written.

    ``DynamicItemDataset.from_csv`` substitutes ``$name`` in every field and
    fails (``KeyError``) on a text holding ``$100``; here only the names in
    ``replacements`` are substituted.

    Arguments
    ---------
    csv_path : str
    replacements : dict, optional
        Placeholders to replace (e.g. ``{"data_root": data_folder}``).
    dynamic_items : sequence
        Passed to ``DynamicItemDataset.from_csv``.
    output_keys : sequence
        Passed to ``DynamicItemDataset.from_csv``.
    col_types : dict, optional
        Column -> type (e.g. ``{"label_id": int}``), as SpeechBrain's.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("m.csv"))
    >>> _ = open(path, "w").write('ID,wav,text,label_id\\na,$data_root/a.wav,"It cost $100, or $5M.",1\\n')
    >>> ds = load_manifest(path, {"data_root": "/corpus"}, output_keys=["wav", "text", "label_id"],
    ...                    col_types={"label_id": int})
    >>> ds[0]
    {'wav': '/corpus/a.wav', 'text': 'It cost $100, or $5M.', 'label_id': 1}
    """
    from speechbrain.dataio.dataset import DynamicItemDataset

    return DynamicItemDataset.from_csv(
        csv_path=csv_path, replacements=KeepPlaceholders(replacements or {}),
        dynamic_items=list(dynamic_items), output_keys=list(output_keys), col_types=col_types,
    )


# --------------------------------------------------------------------------
# datasets copies
# --------------------------------------------------------------------------


def is_saved_dataset(folder):
    """Whether ``folder`` was written by ``datasets``' ``save_to_disk``.

    Arguments
    ---------
    folder : str

    Returns
    -------
    bool

    Example
    -------
    >>> folder = getfixture("tmpdir")
    >>> is_saved_dataset(str(folder))
    False
    >>> _ = folder.join("dataset_dict.json").write("{}")
    >>> is_saved_dataset(str(folder))
    True
    """
    return any(os.path.isfile(os.path.join(folder, f)) for f in ("dataset_dict.json", "state.json"))


def load_datasets(kind, source, corpus, splits, error=ValueError, config=None, hint=""):
    """The ``DatasetDict`` of a ``disk`` (``save_to_disk`` folder) or ``hub`` source, checked.

    Arguments
    ---------
    kind : str
        ``disk`` or ``hub``.
    source : str
        The folder or the hub id (loaded with ``datasets.load_dataset``, so
        offline it must be in the cache).
    corpus : str
        The corpus' name in messages (``stanfordnlp/imdb``, ``glue/qqp``).
    splits : sequence of str
        The splits it must have.
    error : type
        Raised for a single split or a missing one (the recipe's error).
    config : str, optional
        The hub configuration (``load_dataset(source, config)``).
    hint : str
        Appended to the message naming a missing split.

    Returns
    -------
    datasets.DatasetDict

    Raises
    ------
    FileNotFoundError
        A hub id that cannot be loaded.

    Example
    -------
    >>> import datasets
    >>> folder = str(getfixture("tmpdir").join("copy"))
    >>> datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"]})}).save_to_disk(folder)
    >>> list(load_datasets("disk", folder, "my/corpus", ["train"]))
    ['train']
    >>> load_datasets("disk", folder, "my/corpus", ["train", "test"])
    Traceback (most recent call last):
    ...
    ValueError: ...copy has no test split (found: train).
    """
    import datasets

    if kind == "disk":
        loaded = datasets.load_from_disk(source)
    else:
        try:
            loaded = datasets.load_dataset(source, config) if config is not None else datasets.load_dataset(source)
        except Exception as err:
            with_config = f" (config {config!r})" if config is not None else ""
            raise FileNotFoundError(
                f"{source} is not a folder, and loading it as the datasets id {source!r}{with_config} failed: "
                f"{type(err).__name__}: {err}"
            ) from err
    if not isinstance(loaded, datasets.DatasetDict):
        raise error(f"{source} holds a single datasets split; save the whole DatasetDict of {corpus} "
                    f"(its {' and '.join(splits)} splits) with save_to_disk.")
    missing = [s for s in splits if s not in loaded]
    if missing:
        raise error(f"{source} has no {', '.join(missing)} split (found: {', '.join(loaded)}){hint}.")
    return loaded
