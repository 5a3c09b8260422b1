"""Data preparation for the IMDB movie-review sentiment corpus (Maas et al., 2011).

Reads the corpus as released (``aclImdb_v1.tar.gz``, unpacked)::

    <data_folder>/aclImdb/train/pos/<id>_<rating>.txt   12,500 reviews rated 7-10
    <data_folder>/aclImdb/train/neg/<id>_<rating>.txt   12,500 reviews rated 1-4
    <data_folder>/aclImdb/test/{pos,neg}/<id>_<rating>.txt   25,000 more
    <data_folder>/aclImdb/train/unsup/ ...              50,000 unlabelled (ignored)

``data_folder`` is the folder holding ``aclImdb`` or ``aclImdb`` itself.
Each file is one review; its name gives the review's number within its
folder and its star rating (``200_8.txt``: review 200, 8 stars). The
bag-of-words files (``*.feat``, ``imdb.vocab``), the URL lists and
``train/unsup`` are not read.

The ``test`` folder is the test set; the validation set is a slice of
``train`` (``valid_fraction`` of it, stratified by label, drawn with
``seed``: the same options always give the same slice). The reviews go to
``<save_folder>/{train,valid,test}.csv`` with the columns ``ID, text,
text_pair, label, label_id, rating`` (the columns of the GLUE recipe, so the
same classifier code reads both): ``ID`` is ``imdb-<train|test>-<pos|neg>-<id>``,
``text`` the review (see :func:`clean_review`: the ``<br />`` tags of the
release become line breaks), ``text_pair`` is empty, ``label`` is
``negative`` or ``positive`` (``label_id`` 0 or 1) and ``rating`` the stars.

Files that cannot be used are reported with the file and the reason (in the
log, in ``<save_folder>/skipped_<split>.txt`` as ``<file>\\t<reason>``, and in
the returned summary; ``skipped_train.txt`` covers ``train``, the source of
train and valid): a name not of the form ``<id>_<rating>.txt``, a rating
outside its folder's range (``pos`` 7-10, ``neg`` 1-4), an empty review,
bytes that are not UTF-8. They are dropped (``on_error="skip"``, the
default) or stop the preparation (``on_error="error"``).

``data_folder`` may also be a ``datasets`` copy of ``stanfordnlp/imdb``
saved with ``DatasetDict.save_to_disk``, or that hub id (loaded with
``datasets.load_dataset``, so offline it must be in the cache): its
``train`` split gives train and valid, ``test`` gives test, ``unsupervised``
is ignored; its columns are ``text`` and ``label`` (0 negative, 1
positive), it has no ratings (``rating`` is left empty) and ``ID`` is
``imdb-<split>-<row>``. Its reviews are cleaned and checked like the files
(a report names ``<folder> [<split>] row <n>``).

Load the manifests with :func:`load_manifest`: SpeechBrain's CSV reader
substitutes ``$name`` placeholders in every field, and reviews often hold a
``$`` (``$10 million``); :func:`load_manifest` keeps unknown placeholders as
they are written.

Everything is read and checked before anything is written, so an error
never damages a previous preparation; each file is written to a temporary
name and then moved into place. Idempotent in SpeechBrain's way: the
options are saved last to ``opt_imdb_prepare.pkl``; a later call with the
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

OPT_FILE = "opt_imdb_prepare.pkl"
OPT_VERSION = 1
SPLITS = ("train", "valid", "test")
SOURCE_SPLITS = ("train", "test")
LABELS = ("negative", "positive")
# Label folder -> (label_id, the ratings it may hold).
FOLDERS = {"neg": (0, range(1, 5)), "pos": (1, range(7, 11))}
CSV_COLUMNS = ["ID", "text", "text_pair", "label", "label_id", "rating"]
ON_ERROR = preparation.ON_ERROR
REVIEW_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
LINE_BREAKS = re.compile(r"\s*(?:<br\s*/?>\s*)+", re.IGNORECASE)
HUB_ID = preparation.HUB_ID


class ImdbError(ValueError):
    """Damaged corpus input (named with its file)."""


# --------------------------------------------------------------------------
# Reviews
# --------------------------------------------------------------------------


def clean_review(text):
    """A review as written to the manifests.

    The release marks paragraph breaks with HTML ``<br />`` tags (usually
    two in a row); each run of such tags, with the spaces around it, becomes
    one newline. The text is otherwise kept (no lower-casing, no other HTML
    handling) and stripped.

    Arguments
    ---------
    text : str

    Returns
    -------
    str

    Example
    -------
    >>> clean_review("  Great cast.<br /><br />Weak plot... <BR>8/10 ")
    'Great cast.\\nWeak plot...\\n8/10'
    """
    return LINE_BREAKS.sub("\n", text).strip()


def parse_review_name(name, label_folder):
    """The review number and rating of a file name, checked against its folder.

    Arguments
    ---------
    name : str
        E.g. ``200_8.txt``.
    label_folder : str
        ``pos`` or ``neg``.

    Returns
    -------
    tuple of (str, int)
        The number (as written) and the rating.

    Raises
    ------
    ImdbError
        A name of another form, or a rating outside the folder's range.

    Example
    -------
    >>> parse_review_name("200_8.txt", "pos")
    ('200', 8)
    >>> parse_review_name("200_3.txt", "pos")
    Traceback (most recent call last):
    ...
    imdb_prepare.ImdbError: rating 3 in pos/ (pos/ holds ratings 7-10)
    >>> parse_review_name("notes.txt", "neg")
    Traceback (most recent call last):
    ...
    imdb_prepare.ImdbError: the name is not <id>_<rating>.txt
    """
    match = REVIEW_NAME.match(name)
    if not match:
        raise ImdbError("the name is not <id>_<rating>.txt")
    number, rating = match.group(1), int(match.group(2))
    allowed = FOLDERS[label_folder][1]
    if rating not in allowed:
        raise ImdbError(f"rating {rating} in {label_folder}/ ({label_folder}/ holds ratings "
                        f"{allowed[0]}-{allowed[-1]})")
    return number, rating


def read_split_folder(folder, split, on_error="skip"):
    """The reviews of ``aclImdb/<split>/{neg,pos}``, checked.

    Arguments
    ---------
    folder : str
        ``aclImdb/train`` or ``aclImdb/test``.
    split : str
        ``train`` or ``test`` (for IDs and reports).
    on_error : str
        ``skip`` reports unusable files, ``error`` raises on the first.

    Returns
    -------
    rows : list of dict
        ``ID, text, text_pair, label, label_id, rating``, neg then pos, by
        review number.
    skipped : list of dict
        ``split, file, reason``.

    Raises
    ------
    FileNotFoundError
        No ``neg`` or ``pos`` folder.
    ImdbError
        With ``on_error="error"``, an unusable file.

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> _ = root.join("train", "pos", "3_9.txt").write("Loved it.<br /><br />Twice.", ensure=True)
    >>> _ = root.join("train", "pos", "4_2.txt").write("Hated it.", ensure=True)
    >>> _ = root.join("train", "neg", "0_1.txt").write("Awful.", ensure=True)
    >>> rows, skipped = read_split_folder(str(root.join("train")), "train")
    >>> [(r["ID"], r["label"], r["rating"], r["text"]) for r in rows]
    [('imdb-train-neg-0', 'negative', 1, 'Awful.'), ('imdb-train-pos-3', 'positive', 9, 'Loved it.\\nTwice.')]
    >>> os.path.basename(skipped[0]["file"]), skipped[0]["reason"]
    ('4_2.txt', 'rating 2 in pos/ (pos/ holds ratings 7-10)')
    """
    problem = Problems(split, on_error, ImdbError, noun="files")
    rows = []
    for label_folder, (label_id, _) in FOLDERS.items():
        path = os.path.join(folder, label_folder)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"No {label_folder}/ folder in {folder} (aclImdb/{split} holds neg/ and pos/).")
        entries, seen = [], {}
        for name in sorted(os.listdir(path)):
            file = os.path.join(path, name)
            if not os.path.isfile(file):
                problem(file, "not a file")
                continue
            try:
                number, rating = parse_review_name(name, label_folder)
            except ImdbError as err:
                problem(file, str(err))
                continue
            if number in seen:
                problem(file, f"review {number} is also {seen[number]} (one file per review)")
                continue
            seen[number] = name
            entries.append((int(number), number, rating, file))
        for _, number, rating, file in sorted(entries):
            with open(file, "rb") as fin:
                raw = fin.read()
            try:
                text = clean_review(raw.decode("utf-8-sig"))
            except UnicodeDecodeError as err:
                problem(file, f"not UTF-8 ({err.reason} at byte {err.start})")
                continue
            if not text:
                problem(file, "empty review")
                continue
            rows.append({"ID": f"imdb-{split}-{label_folder}-{number}", "text": text, "text_pair": "",
                         "label": LABELS[label_id], "label_id": label_id, "rating": rating})
    return rows, problem.records


def read_dataset(dataset, split="train", where="dataset", on_error="skip"):
    """The reviews of one split of a ``datasets`` copy of ``stanfordnlp/imdb``, checked.

    Arguments
    ---------
    dataset : datasets.Dataset
        Columns ``text`` and ``label`` (0 negative, 1 positive).
    split : str
        ``train`` or ``test``.
    where : str
        How reports name it (e.g. ``<folder> [train]``).
    on_error : str
        ``skip`` or ``error``.

    Returns
    -------
    rows, skipped
        As :func:`read_split_folder`'s (``rating`` empty; a report's
        ``file`` is ``<where> row <n>``).

    Raises
    ------
    ImdbError
        A missing column, ``ClassLabel`` names other than ``neg, pos``, or
        (with ``on_error="error"``) a bad row.

    Example
    -------
    >>> import datasets
    >>> ds = datasets.Dataset.from_dict({"text": ["Dull.", "Superb.<br />", ""], "label": [0, 1, 1]})
    >>> rows, skipped = read_dataset(ds, "test", "imdb [test]")
    >>> [(r["ID"], r["label"], r["text"]) for r in rows]
    [('imdb-test-0', 'negative', 'Dull.'), ('imdb-test-1', 'positive', 'Superb.')]
    >>> skipped[0]["file"], skipped[0]["reason"]
    ('imdb [test] row 2', 'empty review')
    """
    missing = [c for c in ("text", "label") if c not in dataset.column_names]
    if missing:
        raise ImdbError(f"{where}: no column {', '.join(map(repr, missing))} (found: "
                        f"{', '.join(dataset.column_names)}); stanfordnlp/imdb has text and label.")
    names = getattr(dataset.features["label"], "names", None)
    if names is not None and list(names) != ["neg", "pos"]:
        raise ImdbError(f"{where}: the label names are {names}, stanfordnlp/imdb's are ['neg', 'pos'].")
    problem = Problems(split, on_error, ImdbError, noun="files")
    rows = []
    for i, (text, label) in enumerate(zip(dataset["text"], dataset["label"])):
        file = f"{where} row {i}"
        if not isinstance(label, int) or label not in (0, 1):
            problem(file, f"unknown label {label!r} (expected 0 or 1)")
            continue
        text = clean_review(text) if isinstance(text, str) else ""
        if not text:
            problem(file, "empty review")
            continue
        rows.append({"ID": f"imdb-{split}-{i}", "text": text, "text_pair": "", "label": LABELS[label],
                     "label_id": label, "rating": ""})
    return rows, problem.records


# --------------------------------------------------------------------------
# Finding the input
# --------------------------------------------------------------------------


def _is_corpus(folder):
    return all(os.path.isdir(os.path.join(folder, s, f)) for s in SOURCE_SPLITS for f in FOLDERS)


def find_source(data_folder):
    """Where the corpus is: ``("files", aclImdb)``, ``("disk", folder)`` or ``("hub", id)``.

    Nothing is loaded.

    Arguments
    ---------
    data_folder : str
        The folder holding ``aclImdb``, ``aclImdb`` itself, a ``datasets``
        ``save_to_disk`` folder, or a hub id.

    Returns
    -------
    tuple of (str, str)

    Raises
    ------
    FileNotFoundError

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> for s in ("train", "test"):
    ...     for f in ("pos", "neg"):
    ...         _ = root.join("aclImdb", s, f).ensure(dir=True)
    >>> kind, folder = find_source(str(root))
    >>> kind, os.path.basename(folder)
    ('files', 'aclImdb')
    >>> find_source("stanfordnlp/imdb")
    ('hub', 'stanfordnlp/imdb')
    """
    if not os.path.exists(data_folder):
        if HUB_ID.match(str(data_folder)):
            return "hub", str(data_folder)
        raise FileNotFoundError(f"The IMDB data folder {data_folder} does not exist.")
    data_folder = os.path.abspath(data_folder)
    if is_saved_dataset(data_folder):
        return "disk", data_folder
    for folder in (os.path.join(data_folder, "aclImdb"), data_folder):
        if _is_corpus(folder):
            return "files", folder
    raise FileNotFoundError(
        f"No IMDB corpus in {data_folder}: give the folder where aclImdb_v1.tar.gz was unpacked (holding "
        "aclImdb/{train,test}/{pos,neg}/), aclImdb itself, or a datasets copy of stanfordnlp/imdb saved with "
        "save_to_disk."
    )


def _load_datasets(kind, source):
    """The DatasetDict of a ``disk`` or ``hub`` source."""
    return preparation.load_datasets(kind, source, "stanfordnlp/imdb", SOURCE_SPLITS, ImdbError)


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_manifest(csv_path, dynamic_items=(), output_keys=(), replacements=None):
    """A prepared CSV as a ``DynamicItemDataset``, its text kept as written.

    ``DynamicItemDataset.from_csv`` alone fails on a review holding ``$10``
    (it takes it for a placeholder); here unknown placeholders stay as they
    are. ``label_id`` is read as an int (``rating`` stays a string: it is
    empty for the ``datasets`` copies).

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
    >>> header = "ID,text,text_pair,label,label_id,rating\\n"
    >>> _ = open(path, "w").write(header + 'imdb-test-pos-1,"It cost $5M, and\\nit shows.",,positive,1,8\\n')
    >>> load_manifest(path, output_keys=["text", "label_id"])[0]
    {'text': 'It cost $5M, and\\nit shows.', 'label_id': 1}
    """
    return preparation.load_manifest(csv_path, replacements, dynamic_items, output_keys, col_types={"label_id": int})


# --------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------


def prepare_imdb(data_folder, save_folder, valid_fraction=0.05, seed=1986, skip_prep=False, on_error="skip"):
    """Writes ``<save_folder>/{train,valid,test}.csv`` from the IMDB reviews.

    Arguments
    ---------
    data_folder : str
        The folder holding ``aclImdb`` (or ``aclImdb`` itself), a
        ``datasets`` ``save_to_disk`` copy of ``stanfordnlp/imdb``, or a
        ``datasets`` hub id.
    save_folder : str
        Where the CSVs go.
    valid_fraction : float
        The share of ``train`` set apart as the validation set (stratified
        by label).
    seed : int
        Seed of the validation draw.
    skip_prep : bool
        Do nothing (the CSVs exist already).
    on_error : str
        An unusable file: ``skip`` drops and reports it, ``error`` stops.

    Returns
    -------
    dict
        ``prepared`` (False when skipped or already done), ``csv`` (split ->
        path), ``counts`` (split -> reviews), ``labels`` (names in
        ``label_id`` order), ``skipped`` (list of dicts: split, file,
        reason).

    Raises
    ------
    ImdbError
        With ``on_error="error"``, an unusable file (named).
    FileNotFoundError
        No corpus in ``data_folder``.

    Example
    -------
    >>> root = getfixture("tmpdir")
    >>> reviews = {"train/pos/0_9.txt": "Wonderful.", "train/pos/1_10.txt": "A classic.",
    ...            "train/neg/0_2.txt": "Dreadful.", "train/neg/1_1.txt": "Avoid.",
    ...            "test/pos/0_8.txt": "Great fun.", "test/neg/0_3.txt": "", "test/neg/1_4.txt": "Meh."}
    >>> for name, text in reviews.items():
    ...     _ = root.join("aclImdb", *name.split("/")).write(text, ensure=True)
    >>> out = prepare_imdb(str(root), str(root.join("prep")), valid_fraction=0.25)
    >>> out["counts"], [(os.path.basename(r["file"]), r["reason"]) for r in out["skipped"]]
    ({'train': 3, 'valid': 1, 'test': 2}, [('0_3.txt', 'empty review')])
    >>> print(root.join("prep", "test.csv").read().strip())
    ID,text,text_pair,label,label_id,rating
    imdb-test-neg-1,Meh.,,negative,0,4
    imdb-test-pos-0,Great fun.,,positive,1,8
    >>> prepare_imdb(str(root), str(root.join("prep")), valid_fraction=0.25)["prepared"]
    False
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got '{on_error}'.")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}.")
    save_folder = os.path.abspath(save_folder)
    csvs = {split: os.path.join(save_folder, f"{split}.csv") for split in SPLITS}
    summary = {"prepared": False, "csv": csvs, "counts": {}, "labels": list(LABELS), "skipped": []}
    if skip_prep:
        logger.info("Skipping IMDB preparation (skip_prep=True).")
        return summary
    kind, source = find_source(data_folder)
    options = {"version": OPT_VERSION, "kind": kind, "source": source, "valid_fraction": valid_fraction,
               "seed": seed, "on_error": on_error}
    opt_path = os.path.join(save_folder, OPT_FILE)
    if is_up_to_date(csvs.values(), opt_path, options):
        logger.info("IMDB manifests in %s are up to date; skipping preparation.", save_folder)
        summary["counts"] = {s: count_rows(p) for s, p in csvs.items()}
        summary["skipped"] = [r for s in SOURCE_SPLITS
                              for r in read_skips(skips_path(save_folder, s), s, with_line=False)]
        return summary

    # Read and check everything first: an error leaves earlier output as it was.
    logger.info("Preparing IMDB from %s (%s) into %s", source, kind, save_folder)
    read, skipped = {}, {}
    if kind == "files":
        for split in SOURCE_SPLITS:
            read[split], skipped[split] = read_split_folder(os.path.join(source, split), split, on_error)
    else:
        loaded = _load_datasets(kind, source)
        for split in SOURCE_SPLITS:
            read[split], skipped[split] = read_dataset(loaded[split], split, f"{source} [{split}]", on_error)
    for split in SOURCE_SPLITS:
        if not read[split]:
            raise ImdbError(f"No usable review in the {split} split of {source} "
                            f"({len(skipped[split])} unusable files).")
    train_idx, valid_idx = split_train_valid([r["label_id"] for r in read["train"]], valid_fraction, seed)
    rows = {"train": [read["train"][i] for i in train_idx], "valid": [read["train"][i] for i in valid_idx],
            "test": read["test"]}

    begin_writing(save_folder, opt_path)  # the options are written last
    for split in SPLITS:
        write_csv(csvs[split], rows[split], CSV_COLUMNS)
        summary["counts"][split] = len(rows[split])
    for split in SOURCE_SPLITS:
        write_skips(skips_path(save_folder, split), skipped[split])
        summary["skipped"].extend(skipped[split])
    _log(rows, skipped, save_folder)
    save_pkl(options, opt_path)
    summary["prepared"] = True
    return summary


def _log(rows, skipped, save_folder):
    """One line per split (reviews, labels, mean length), and the skipped files."""
    for split, split_rows in rows.items():
        counts = Counter(r["label"] for r in split_rows)
        words = sum(len(r["text"].split()) for r in split_rows) / max(len(split_rows), 1)
        logger.info("IMDB %s: %s reviews (%s; %.0f words on average) -> %s", split, f"{len(split_rows):,}",
                    ", ".join(f"{counts[name]:,} {name}" for name in LABELS), words,
                    os.path.join(save_folder, f"{split}.csv"))
    for split, records in skipped.items():
        log_skips(logger, split, records, noun="files", group=lambda r: r["reason"].split(" (")[0])
