"""Data preparation for three GLUE tasks (SST-2, QNLI, QQP): one CSV row per example.

Reads GLUE as its download script (``download_glue_data.py``) leaves it::

    <data_folder>/SST-2/{train,dev,test}.tsv   sentence \\t label                  (0/1)
    <data_folder>/QNLI/{train,dev,test}.tsv    index \\t question \\t sentence \\t label
                                               (entailment/not_entailment)
    <data_folder>/QQP/{train,dev,test}.tsv     id \\t qid1 \\t qid2 \\t question1 \\t question2
                                               \\t is_duplicate                (0/1)

``data_folder`` is the ``glue_data`` folder (or the folder holding it, or
the task folder itself); task folders are found whatever their case
(``SST-2``, ``sst2``, ``Sst-2``). The files are tab-separated with a header
line and no quoting: a ``"`` is an ordinary character.

GLUE's ``test.tsv`` files have no labels (the scores come from the GLUE
server), so they are not read: as usual, GLUE's ``dev.tsv`` is the test set
here, and the validation set is a slice of ``train.tsv`` (``valid_fraction``
of it, stratified by label, drawn with ``seed``; the same options always give
the same slice). The examples go to ``<save_folder>/{train,valid,test}.csv``
with the columns ``ID, text, text_pair, label, label_id``: ``text`` is the
sentence (SST-2) or the first of the pair (QNLI's question, QQP's
question1), ``text_pair`` the second (QNLI's sentence, QQP's question2;
empty for SST-2), ``label`` the label's name and ``label_id`` its index in
:data:`TASKS`' ``labels`` (SST-2 ``negative``/``positive``, QNLI
``entailment``/``not_entailment``, QQP ``not_duplicate``/``duplicate``).
``ID`` is ``<task>-<train|dev>-<n>``, ``n`` being QNLI's ``index``, QQP's
``id`` or SST-2's 0-based row (the ``idx`` of the ``datasets`` copies).

Malformed rows are reported with the file and line: a row without as many
fields as the header, a label outside the task's, an empty text, an ID
already used, bytes that are not UTF-8. The released QQP ``train.tsv`` has a
few such rows (questions broken across lines). With ``on_error="skip"`` (the
default) they are dropped and listed (in the log, in
``<save_folder>/skipped_<split>.txt`` as ``<file>:<line>\\t<reason>`` and in
the returned summary; ``skipped_train.txt`` covers ``train.tsv``, the source
of train and valid, ``skipped_test.txt`` covers ``dev.tsv``); with
``on_error="error"`` the first one stops the preparation. A header without
a column the task needs is always an error naming the file and the column.
Blank lines are ignored.

The TSV files are parsed line by line rather than through
``datasets.load_dataset("csv", ...)``: the csv builder (pandas) cannot say
on which line a row is malformed, and a broken QQP row either stops it or
shifts fields silently. The ``datasets`` library reads the other accepted
source: ``data_folder`` may also be a ``datasets`` copy of ``glue/<task>``
saved with ``DatasetDict.save_to_disk`` (the folder itself, or a
``<task>`` folder in it), or a hub id such as ``nyu-mll/glue`` (loaded with
``datasets.load_dataset(id, task)``, so offline it must be in the cache).
Those have the columns ``sentence`` / ``question, sentence`` /
``question1, question2``, an integer ``label`` and ``idx``; their
``train`` split gives train and valid, ``validation`` gives test, and
their rows are checked like the TSV lines (``line`` then means the
0-based row).

Load the manifests with :func:`load_manifest`: SpeechBrain's CSV reader
substitutes ``$name`` placeholders in every field, and review or question
text often holds a ``$`` (``$100``); :func:`load_manifest` keeps unknown
placeholders as they are written.

Everything is read and checked before anything is written, so an error
never damages a previous preparation; each file is written to a temporary
name and then moved into place. Idempotent in SpeechBrain's way: the
options are saved last to ``opt_glue_prepare.pkl``; a later call with the
same options and every CSV present does nothing.

Authors
 * cald-brain developers 2026
"""

import os
import re
from collections import Counter

from speechbrain.dataio.dataio import save_pkl
from speechbrain.utils.logger import get_logger

from cald_brain import preparation
from cald_brain.preparation import Problems, begin_writing, count_rows, is_saved_dataset, is_up_to_date, log_skips
from cald_brain.preparation import read_skips, skips_path, write_csv, write_skips
from cald_brain.preparation import split_train_valid  # noqa: F401 (part of this module's interface)

logger = get_logger(__name__)

OPT_FILE = "opt_glue_prepare.pkl"
OPT_VERSION = 1
SPLITS = ("train", "valid", "test")
# GLUE's file (and the datasets split) each output split is drawn from.
SOURCE_FILES = {"train": "train.tsv", "test": "dev.tsv"}
DATASETS_SPLITS = {"train": "train", "test": "validation"}
CSV_COLUMNS = ["ID", "text", "text_pair", "label", "label_id"]
ON_ERROR = preparation.ON_ERROR
HUB_ID = preparation.HUB_ID

TASKS = {
    "sst2": {
        "folder": "SST-2", "text": "sentence", "pair": None, "label": "label", "id": None,
        "labels": ("negative", "positive"), "tsv_labels": ("0", "1"),
    },
    "qnli": {
        "folder": "QNLI", "text": "question", "pair": "sentence", "label": "label", "id": "index",
        "labels": ("entailment", "not_entailment"), "tsv_labels": ("entailment", "not_entailment"),
    },
    "qqp": {
        "folder": "QQP", "text": "question1", "pair": "question2", "label": "is_duplicate", "id": "id",
        "labels": ("not_duplicate", "duplicate"), "tsv_labels": ("0", "1"),
    },
}


class GlueError(ValueError):
    """Damaged corpus input (named with its file and line)."""


def _norm(name):
    """Folder names compared without case or punctuation ("SST-2" == "sst2")."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _task(task):
    key = _norm(str(task))
    if key not in TASKS:
        raise ValueError(f"Unknown GLUE task '{task}': choose among {', '.join(TASKS)}.")
    return key


def task_labels(task):
    """The label names of a task, in ``label_id`` order.

    Arguments
    ---------
    task : str
        ``sst2``, ``qnli`` or ``qqp`` (any case, ``SST-2`` too).

    Returns
    -------
    list of str

    Example
    -------
    >>> task_labels("SST-2"), task_labels("qqp")
    (['negative', 'positive'], ['not_duplicate', 'duplicate'])
    """
    return list(TASKS[_task(task)]["labels"])


# --------------------------------------------------------------------------
# Finding the input
# --------------------------------------------------------------------------


def _child(folder, name, want_dir=True):
    """The entry of ``folder`` whose name matches ``name`` ignoring case and punctuation."""
    if not os.path.isdir(folder):
        return None
    matches = sorted(e for e in os.listdir(folder) if _norm(e) == _norm(name)
                     and (os.path.isdir(os.path.join(folder, e)) if want_dir
                          else os.path.isfile(os.path.join(folder, e))))
    exact = [e for e in matches if e == name]
    chosen = exact or matches
    return os.path.join(folder, chosen[0]) if chosen else None


def find_source(data_folder, task):
    """Where a task's data is: ``("tsv", folder)``, ``("disk", folder)`` or ``("hub", id)``.

    Nothing is loaded.

    Arguments
    ---------
    data_folder : str
        ``glue_data`` (or the folder holding it, or the task folder), a
        ``datasets`` ``save_to_disk`` folder (or a folder holding
        ``<task>/``), or a hub id.
    task : str

    Returns
    -------
    tuple of (str, str)
        The kind and the absolute folder (or the hub id).

    Raises
    ------
    FileNotFoundError

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> _ = root.join("glue_data", "SST-2").ensure(dir=True)
    >>> kind, folder = find_source(str(root), "sst2")
    >>> kind, os.path.basename(folder)
    ('tsv', 'SST-2')
    >>> find_source("nyu-mll/glue", "qqp")
    ('hub', 'nyu-mll/glue')
    """
    task = _task(task)
    if not os.path.exists(data_folder):
        if HUB_ID.match(str(data_folder)):
            return "hub", str(data_folder)
        raise FileNotFoundError(f"The GLUE data folder {data_folder} does not exist.")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(f"The GLUE data folder {data_folder} is not a folder.")
    data_folder = os.path.abspath(data_folder)
    if is_saved_dataset(data_folder):
        return "disk", data_folder
    for parent in (data_folder, _child(data_folder, "glue_data")):
        folder = parent and _child(parent, TASKS[task]["folder"])
        if folder:
            return ("disk" if is_saved_dataset(folder) else "tsv"), folder
    if _norm(os.path.basename(data_folder)) == task and _child(data_folder, "train.tsv", want_dir=False):
        return "tsv", data_folder
    raise FileNotFoundError(
        f"No {TASKS[task]['folder']} folder in {data_folder}: give the glue_data folder made by GLUE's "
        f"download script (holding {TASKS[task]['folder']}/train.tsv and dev.tsv), or a datasets copy of "
        f"glue/{task} saved with save_to_disk."
    )


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def _excerpt(text, size=80):
    """``repr`` of the start of a line (tabs shown as ``\\t``)."""
    return repr(text if len(text) <= size else text[:size] + "...")


def _make_row(task, split, ident, text, pair, label_id, line, seen, problem):
    """The CSV row of one example, or None (after reporting) when it is not usable."""
    spec = TASKS[task]
    text = text.strip() if isinstance(text, str) else ""
    pair = pair.strip() if isinstance(pair, str) else ""
    if not text:
        problem(line, f"empty {spec['text']}")
        return None
    if spec["pair"] and not pair:
        problem(line, f"empty {spec['pair']}")
        return None
    ident = f"{task}-{'dev' if split == 'test' else 'train'}-{ident}"
    if ident in seen:
        problem(line, f"the ID {ident} is already used on {problem.unit} {seen[ident]}")
        return None
    seen[ident] = line
    return {"ID": ident, "text": text, "text_pair": pair, "label": spec["labels"][label_id],
            "label_id": label_id, "line": line}


def read_tsv(path, task, split="train", max_rows=None, on_error="skip"):
    """The examples of one GLUE TSV file, checked.

    Arguments
    ---------
    path : str
        ``train.tsv`` or ``dev.tsv`` of the task.
    task : str
    split : str
        The output split the file feeds (``train`` or ``test``; for IDs and
        reports).
    max_rows : int, optional
        Read only the first ``max_rows`` data lines.
    on_error : str
        ``skip`` reports malformed rows, ``error`` raises on the first.

    Returns
    -------
    rows : list of dict
        ``ID, text, text_pair, label, label_id`` and ``line``.
    skipped : list of dict
        ``split, file, line, reason``.

    Raises
    ------
    GlueError
        An empty file, a header without a needed column, or (with
        ``on_error="error"``) a malformed row.

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("train.tsv"))
    >>> lines = ["id\\tqid1\\tqid2\\tquestion1\\tquestion2\\tis_duplicate",
    ...          "7\\t1\\t2\\tHow do I learn Python?\\tWhat is the best way to learn Python?\\t1",
    ...          "8\\t3\\t4\\tWhy is the sky blue?",
    ...          "9\\t5\\t6\\tIs it $5?\\tIs it five dollars?\\t0"]
    >>> _ = open(path, "w").write("\\n".join(lines) + "\\n")
    >>> rows, skipped = read_tsv(path, "qqp")
    >>> [(r["ID"], r["label"], r["label_id"]) for r in rows]
    [('qqp-train-7', 'duplicate', 1), ('qqp-train-9', 'not_duplicate', 0)]
    >>> skipped[0]["line"], skipped[0]["reason"]
    (3, "4 fields, the header has 6: '8\\\\t3\\\\t4\\\\tWhy is the sky blue?'")
    >>> read_tsv(path, "qqp", on_error="error")
    Traceback (most recent call last):
    ...
    glue_prepare.GlueError: ...train.tsv line 3: 4 fields, the header has 6: ...
    >>> read_tsv(path, "qnli")
    Traceback (most recent call last):
    ...
    glue_prepare.GlueError: ...train.tsv line 1: the header has no column 'question', 'sentence', 'label' ...
    """
    task = _task(task)
    spec = TASKS[task]
    problem = Problems(split, on_error, GlueError, file=path)
    rows, seen = [], {}
    with open(path, "rb") as fin:
        header, n_data = None, 0
        for line_no, raw in enumerate(fin, 1):
            if header is not None:
                if not raw.strip():
                    continue
                if max_rows is not None and n_data >= max_rows:
                    break
                n_data += 1
            try:
                line = raw.decode("utf-8-sig" if line_no == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                if header is None:
                    raise GlueError(f"{path} line {line_no}: the header is not UTF-8 ({err.reason}).") from None
                problem(line_no, f"not UTF-8 ({err.reason} at byte {err.start})")
                continue
            if header is None:
                header = line.split("\t")
                needed = [c for c in (spec["text"], spec["pair"], spec["label"]) if c]
                missing = [c for c in needed if c not in header]
                if missing:
                    raise GlueError(
                        f"{path} line 1: the header has no column {', '.join(map(repr, missing))} needed for "
                        f"{spec['folder']} (found: {', '.join(header)}); is this the {spec['folder']} file of "
                        "GLUE's download script?"
                    )
                col = {name: header.index(name) for name in header if name}
                continue
            fields = line.split("\t")
            if len(fields) != len(header):
                problem(line_no, f"{len(fields)} fields, the header has {len(header)}: {_excerpt(line)}")
                continue
            value = fields[col[spec["label"]]].strip()
            if value not in spec["tsv_labels"]:
                problem(line_no, f"unknown label {value!r} (expected one of {', '.join(spec['tsv_labels'])})")
                continue
            if spec["id"] and spec["id"] in col:
                ident = fields[col[spec["id"]]].strip()
                if not ident:
                    problem(line_no, f"empty {spec['id']}")
                    continue
            else:
                ident = str(line_no - 2)  # the 0-based data row (the datasets copies' idx)
            row = _make_row(task, split, ident, fields[col[spec["text"]]],
                            fields[col[spec["pair"]]] if spec["pair"] else "",
                            spec["tsv_labels"].index(value), line_no, seen, problem)
            if row is not None:
                rows.append(row)
    if header is None:
        raise GlueError(f"{path} line 1: the file is empty (expected a header line).")
    return rows, problem.records


def read_dataset(dataset, task, split="train", where="dataset", max_rows=None, on_error="skip"):
    """The examples of one split of a ``datasets`` copy of ``glue/<task>``, checked.

    Arguments
    ---------
    dataset : datasets.Dataset
        Columns ``sentence`` / ``question, sentence`` / ``question1,
        question2``, an integer ``label`` and (optionally) ``idx``.
    task : str
    split : str
        The output split it feeds (``train`` or ``test``).
    where : str
        How reports name it (e.g. ``<folder> [validation]``).
    max_rows : int, optional
        Read only the first ``max_rows`` rows.
    on_error : str
        ``skip`` or ``error``.

    Returns
    -------
    rows, skipped
        As :func:`read_tsv`'s (``line`` is the 0-based row).

    Raises
    ------
    GlueError
        A missing column, ``ClassLabel`` names other than the task's, or
        (with ``on_error="error"``) a bad row.

    Example
    -------
    >>> import datasets
    >>> ds = datasets.Dataset.from_dict({"sentence": ["a fine film", " "], "label": [1, 0], "idx": [0, 1]})
    >>> rows, skipped = read_dataset(ds, "sst2")
    >>> [(r["ID"], r["label"]) for r in rows], skipped[0]["reason"]
    ([('sst2-train-0', 'positive')], 'empty sentence')
    """
    task = _task(task)
    spec = TASKS[task]
    needed = [c for c in (spec["text"], spec["pair"], "label") if c]
    missing = [c for c in needed if c not in dataset.column_names]
    if missing:
        raise GlueError(f"{where}: no column {', '.join(map(repr, missing))} needed for glue/{task} "
                        f"(found: {', '.join(dataset.column_names)}).")
    names = getattr(dataset.features["label"], "names", None)
    if names is not None and list(names) != list(spec["labels"]):
        raise GlueError(f"{where}: the label names are {names}, glue/{task}'s are {list(spec['labels'])}.")
    if max_rows is not None:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    problem = Problems(split, on_error, GlueError, file=where, unit="row")
    texts = dataset[spec["text"]]
    pairs = dataset[spec["pair"]] if spec["pair"] else [""] * len(texts)
    labels = dataset["label"]
    idx = dataset["idx"] if "idx" in dataset.column_names else range(len(texts))
    rows, seen = [], {}
    for i, (text, pair, label, ident) in enumerate(zip(texts, pairs, labels, idx)):
        if not isinstance(label, int) or not 0 <= label < len(spec["labels"]):
            problem(i, f"unknown label {label!r} (expected 0 to {len(spec['labels']) - 1})")
            continue
        row = _make_row(task, split, ident, text, pair, label, i, seen, problem)
        if row is not None:
            rows.append(row)
    return rows, problem.records


def _load_datasets(kind, source, task):
    """The DatasetDict of a ``disk`` or ``hub`` source."""
    return preparation.load_datasets(kind, source, f"glue/{task}", list(DATASETS_SPLITS.values()), GlueError,
                                     config=task if kind == "hub" else None,
                                     hint=f"; glue/{task} has train, validation and test")


# --------------------------------------------------------------------------
# Loading the manifests
# --------------------------------------------------------------------------


def load_manifest(csv_path, dynamic_items=(), output_keys=(), replacements=None):
    """A prepared CSV as a ``DynamicItemDataset``, its text kept as written.

    ``DynamicItemDataset.from_csv`` alone fails on a text holding ``$5`` (it
    takes it for a placeholder); here unknown placeholders stay as they are.
    ``label_id`` is read as an int.

    Arguments
    ---------
    csv_path, dynamic_items, output_keys, replacements
        As :func:`cald_brain.preparation.load_manifest`'s.

    Returns
    -------
    speechbrain.dataio.dataset.DynamicItemDataset

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("test.csv"))
    >>> _ = open(path, "w").write('ID,text,text_pair,label,label_id\\nqqp-dev-1,"Is it $5, or $10?",No,duplicate,1\\n')
    >>> ds = load_manifest(path, output_keys=["id", "text", "label_id"])
    >>> ds[0]
    {'id': 'qqp-dev-1', 'text': 'Is it $5, or $10?', 'label_id': 1}
    """
    return preparation.load_manifest(csv_path, replacements, dynamic_items, output_keys, col_types={"label_id": int})


# --------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------


def prepare_glue(
    data_folder,
    save_folder,
    task,
    max_rows=None,
    skip_prep=False,
    valid_fraction=0.05,
    seed=1986,
    on_error="skip",
):
    """Writes ``<save_folder>/{train,valid,test}.csv`` for one GLUE task.

    Arguments
    ---------
    data_folder : str
        GLUE's ``glue_data`` folder (or the one holding it, or the task
        folder), a ``datasets`` ``save_to_disk`` copy of ``glue/<task>`` (or
        a folder holding ``<task>/``), or a ``datasets`` hub id.
    save_folder : str
        Where the CSVs go.
    task : str
        ``sst2``, ``qnli`` or ``qqp`` (any case; ``SST-2`` too).
    max_rows : int, optional
        Read only the first ``max_rows`` rows of each source file (quick
        runs).
    skip_prep : bool
        Do nothing (the CSVs exist already).
    valid_fraction : float
        The share of ``train.tsv`` set apart as the validation set
        (stratified by label).
    seed : int
        Seed of the validation draw.
    on_error : str
        A malformed row: ``skip`` drops and reports it, ``error`` stops.

    Returns
    -------
    dict
        ``prepared`` (False when skipped or already done), ``csv`` (split ->
        path), ``counts`` (split -> rows), ``labels`` (names in ``label_id``
        order), ``skipped`` (list of dicts: split, file, line, reason).

    Raises
    ------
    GlueError
        A header without a needed column, or a malformed row with
        ``on_error="error"`` (named with its file and line).
    FileNotFoundError
        No task folder or file.

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> folder = root.join("glue_data", "SST-2").ensure(dir=True)
    >>> rows = ["a joy to watch\\t1", "dull and long\\t0", "simply great\\t1", "a mess\\t0", "moving\\t1"]
    >>> _ = folder.join("train.tsv").write("sentence\\tlabel\\n" + "\\n".join(rows) + "\\n")
    >>> _ = folder.join("dev.tsv").write("sentence\\tlabel\\nnot bad at all\\t1\\nboring\\t2\\n")
    >>> out = prepare_glue(str(root.join("glue_data")), str(root.join("prep")), "sst2", valid_fraction=0.2)
    >>> out["counts"], out["labels"]
    ({'train': 4, 'valid': 1, 'test': 1}, ['negative', 'positive'])
    >>> out["skipped"][0]["line"], out["skipped"][0]["reason"]
    (3, "unknown label '2' (expected one of 0, 1)")
    >>> print(root.join("prep", "test.csv").read().strip())
    ID,text,text_pair,label,label_id
    sst2-dev-0,not bad at all,,positive,1
    >>> prepare_glue(str(root.join("glue_data")), str(root.join("prep")), "sst2", valid_fraction=0.2)["prepared"]
    False
    """
    task = _task(task)
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got '{on_error}'.")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}.")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive int or None, got {max_rows!r}.")
    save_folder = os.path.abspath(save_folder)
    csvs = {split: os.path.join(save_folder, f"{split}.csv") for split in SPLITS}
    summary = {"prepared": False, "csv": csvs, "counts": {}, "labels": task_labels(task), "skipped": []}
    if skip_prep:
        logger.info("Skipping GLUE preparation (skip_prep=True).")
        return summary
    kind, source = find_source(data_folder, task)
    options = {"version": OPT_VERSION, "task": task, "kind": kind, "source": source, "max_rows": max_rows,
               "valid_fraction": valid_fraction, "seed": seed, "on_error": on_error}
    opt_path = os.path.join(save_folder, OPT_FILE)
    if is_up_to_date(csvs.values(), opt_path, options):
        logger.info("GLUE %s manifests in %s are up to date; skipping preparation.", task, save_folder)
        summary["counts"] = {s: count_rows(p) for s, p in csvs.items()}
        summary["skipped"] = [r for s in SOURCE_FILES for r in read_skips(skips_path(save_folder, s), s)]
        return summary

    # Read and check everything first: an error leaves earlier output as it was.
    logger.info("Preparing GLUE %s from %s (%s) into %s", task, source, kind, save_folder)
    read, skipped = {}, {}
    if kind == "tsv":
        for split, name in SOURCE_FILES.items():
            path = _child(source, name, want_dir=False)
            if path is None:
                raise FileNotFoundError(f"No {name} in {source} (GLUE's {TASKS[task]['folder']} folder holds "
                                        "train.tsv, dev.tsv and test.tsv).")
            read[split], skipped[split] = read_tsv(path, task, split, max_rows, on_error)
    else:
        loaded = _load_datasets(kind, source, task)
        for split, name in DATASETS_SPLITS.items():
            read[split], skipped[split] = read_dataset(loaded[name], task, split, f"{source} [{name}]",
                                                       max_rows, on_error)
    for split in SOURCE_FILES:
        if not read[split]:
            raise GlueError(f"No usable {task} example in the {split} source ({len(skipped[split])} malformed); "
                            f"see {skipped[split][0]['file'] if skipped[split] else source}.")
    train_idx, valid_idx = split_train_valid([r["label_id"] for r in read["train"]], valid_fraction, seed)
    rows = {"train": [read["train"][i] for i in train_idx], "valid": [read["train"][i] for i in valid_idx],
            "test": read["test"]}

    begin_writing(save_folder, opt_path)  # the options are written last
    for split in SPLITS:
        write_csv(csvs[split], rows[split], CSV_COLUMNS, extrasaction="ignore")  # not the "line" key
        summary["counts"][split] = len(rows[split])
    for split in SOURCE_FILES:
        write_skips(skips_path(save_folder, split), skipped[split])
        summary["skipped"].extend(skipped[split])
    _log(task, rows, skipped, summary["labels"], save_folder)
    save_pkl(options, opt_path)
    summary["prepared"] = True
    return summary


def _log(task, rows, skipped, labels, save_folder):
    """One line per split (rows and label counts), and the skipped rows."""
    for split, split_rows in rows.items():
        counts = Counter(r["label"] for r in split_rows)
        logger.info("%s %s: %s examples (%s) -> %s", task, split, f"{len(split_rows):,}",
                    ", ".join(f"{counts[name]:,} {name}" for name in labels),
                    os.path.join(save_folder, f"{split}.csv"))
        if not split_rows:
            logger.warning("%s %s: no example", task, split)
    for split, records in skipped.items():
        log_skips(logger, split, records, noun="malformed rows")
