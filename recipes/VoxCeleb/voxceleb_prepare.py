"""Data preparation for VoxCeleb1 speaker identification: one CSV row per utterance.

Reads the corpus as users download and unpack it::

    <data_folder>/iden_split.txt                      (or Iden_split.txt)
    <data_folder>/wav/<speaker>/<video>/<nnnnn>.wav   (16 kHz mono WAV)

The ``vox1_dev_wav`` and ``vox1_test_wav`` archives each unpack to a
``wav/`` tree: unpack both into one, or pass the two folders as
``wav_folders`` (a file is looked up in each in turn; without
``wav_folders``, ``<data_folder>/wav`` is used, else
``<data_folder>/vox1_dev_wav/wav`` and ``<data_folder>/vox1_test_wav/wav``).

Each line ``<code> <speaker>/<video>/<nnnnn>.wav`` of the identification
split puts one utterance in train (``1``), dev (``2``, validation) or test
(``3``); the split is by video (no dev or test recording session is in
train), and each of the 1,251 speakers is in all three. The utterances go to
``<save_folder>/{train,dev,test}.csv`` with the columns
``ID, duration, wav, spk_id``; ``ID`` is ``<speaker>-<video>-<nnnnn>``
(e.g. ``id10001-1zcIwhmdeo4-00001``), ``duration`` is in seconds, read from
the WAV header (the audio is not loaded). ``wav`` starts with the
``$data_root`` placeholder when the file lies under ``data_folder``, so the
manifests stay valid when the corpus moves; load them with
``cald_brain.dataio.manifest_datasets(csvs, data_folder)`` (or
``DynamicItemDataset.from_csv(csv, replacements={"data_root": data_folder})``).
A file found in a ``wav_folders`` entry outside ``data_folder`` is written
with its absolute path.

A classifier cannot name a speaker it never heard: a dev or test speaker
without train utterances stops the preparation (``unseen_speakers="error"``)
or, with ``"skip"``, those utterances are dropped and reported with the split
file's line (in the log, in ``<save_folder>/skipped_<split>.txt`` and in the
returned summary). Damaged input stops it with a message naming the split
file and line: a line without two fields, a split code other than 1, 2 or 3,
a path that is not ``<speaker>/<video>/<file>.wav``, a file named twice, a
WAV missing from every folder, unreadable or empty, or not 16 kHz mono.
Everything is checked before anything is written, so an error never damages
a previous preparation; each file is written to a temporary name and then
moved into place.

Idempotent in SpeechBrain's way: the options are saved to
``opt_voxceleb_prepare.pkl``; a later call with the same options and every
CSV present does nothing.

Authors
 * cald-brain developers 2026
"""

import os

import soundfile as sf
from speechbrain.dataio.dataio import save_pkl
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parallel import parallel_map
from tqdm import tqdm

from cald_brain.preparation import begin_writing, count_rows, is_up_to_date, log_skips, read_skips, skips_path
from cald_brain.preparation import write_csv, write_skips

logger = get_logger(__name__)

OPT_FILE = "opt_voxceleb_prepare.pkl"
SPLITS = ("train", "dev", "test")
SPLIT_CODES = {"1": "train", "2": "dev", "3": "test"}
SPLIT_FILES = ("iden_split.txt", "Iden_split.txt")
UNSEEN_POLICIES = ("error", "skip")
SAMPLE_RATE = 16000
CSV_COLUMNS = ["ID", "duration", "wav", "spk_id"]
# Above this many files, WAV headers are read in worker processes.
PARALLEL_MIN_FILES = 2000
# The columns of skipped_<split>.txt between the split file's line and the reason.
SKIP_FIELDS = ("wav", "spk_id")


class VoxCelebError(ValueError):
    """Damaged corpus input (named with its file and line)."""


# --------------------------------------------------------------------------
# The split file
# --------------------------------------------------------------------------


def find_split_file(data_folder, split_file=None):
    """The identification split file: ``split_file``, or the one in ``data_folder``.

    Arguments
    ---------
    data_folder : str
    split_file : str, optional
        An explicit path.

    Returns
    -------
    str

    Raises
    ------
    FileNotFoundError
    """
    if split_file is not None:
        if not os.path.isfile(split_file):
            raise FileNotFoundError(f"The split file {split_file} (split_file) does not exist.")
        return os.path.abspath(split_file)
    for name in SPLIT_FILES:
        path = os.path.join(data_folder, name)
        if os.path.isfile(path):
            return os.path.abspath(path)
    raise FileNotFoundError(
        f"No iden_split.txt in {data_folder}: download VoxCeleb1's identification split "
        "(https://www.robots.ox.ac.uk/~vgg/data/voxceleb/meta/iden_split.txt) into data_folder, "
        "or give its path as split_file."
    )


def parse_split_line(line, path, line_no):
    """One line of ``iden_split.txt`` -> dict, or None for a blank line.

    Arguments
    ---------
    line : str
    path : str
        The split file (for messages).
    line_no : int
        1-based.

    Returns
    -------
    dict or None
        ``split``, ``rel`` (``<speaker>/<video>/<nnnnn>.wav``), ``spk_id``,
        ``video``, ``ID`` and ``line``.

    Raises
    ------
    VoxCelebError
        Not two fields, an unknown split code, a path of another shape.

    Example
    -------
    >>> entry = parse_split_line("3 id10001/1zcIwhmdeo4/00001.wav", "iden_split.txt", 1)
    >>> entry["split"], entry["spk_id"], entry["ID"]
    ('test', 'id10001', 'id10001-1zcIwhmdeo4-00001')
    >>> parse_split_line("4 id10001/1zcIwhmdeo4/00001.wav", "iden_split.txt", 7)
    Traceback (most recent call last):
    ...
    voxceleb_prepare.VoxCelebError: iden_split.txt line 7: unknown split code '4' (1 = train, 2 = dev, 3 = test): ...
    >>> parse_split_line("id10001/1zcIwhmdeo4/00001.wav", "iden_split.txt", 2)
    Traceback (most recent call last):
    ...
    voxceleb_prepare.VoxCelebError: iden_split.txt line 2: a line needs 2 fields (...), found 1: ...
    """
    stripped = line.strip()
    if not stripped:
        return None
    fields = stripped.split()
    if len(fields) != 2:
        raise VoxCelebError(
            f"{path} line {line_no}: a line needs 2 fields (<split code> <speaker>/<video>/<file>.wav), "
            f"found {len(fields)}: '{stripped[:100]}'"
        )
    code, rel = fields
    if code not in SPLIT_CODES:
        raise VoxCelebError(
            f"{path} line {line_no}: unknown split code '{code}' (1 = train, 2 = dev, 3 = test): '{stripped[:100]}'"
        )
    parts = rel.replace("\\", "/").split("/")
    if len(parts) != 3 or not all(parts) or not parts[2].lower().endswith(".wav") or ".." in parts:
        raise VoxCelebError(
            f"{path} line {line_no}: the file must be named <speaker>/<video>/<file>.wav "
            f"(e.g. id10001/1zcIwhmdeo4/00001.wav), got '{rel}'"
        )
    speaker, video, name = parts
    return {"split": SPLIT_CODES[code], "rel": "/".join(parts), "spk_id": speaker, "video": video,
            "ID": f"{speaker}-{video}-{os.path.splitext(name)[0]}", "line": line_no}


def read_split_file(path):
    """Every utterance of an identification split file, checked.

    Arguments
    ---------
    path : str

    Returns
    -------
    list of dict
        :func:`parse_split_line`'s, in file order.

    Raises
    ------
    VoxCelebError
        A bad line (see :func:`parse_split_line`), a file named twice, or no
        utterance at all.

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("iden_split.txt"))
    >>> _ = open(path, "w").write("1 id10001/a/00001.wav\\n2 id10001/b/00001.wav\\n1 id10001/a/00001.wav\\n")
    >>> read_split_file(path)
    Traceback (most recent call last):
    ...
    voxceleb_prepare.VoxCelebError: ...iden_split.txt line 3: id10001/a/00001.wav is already listed on line 1
    """
    entries, seen = [], {}
    with open(path, encoding="utf-8") as fin:
        for line_no, line in enumerate(fin, 1):
            entry = parse_split_line(line, path, line_no)
            if entry is None:
                continue
            if entry["ID"] in seen:
                raise VoxCelebError(
                    f"{path} line {line_no}: {entry['rel']} is already listed on line {seen[entry['ID']]}"
                )
            seen[entry["ID"]] = line_no
            entries.append(entry)
    if not entries:
        raise VoxCelebError(f"{path} lists no utterance (expected lines like '1 id10001/1zcIwhmdeo4/00001.wav').")
    return entries


def count_speakers(data_folder, split_file=None):
    """Number of train speakers of the identification split (the classifier size).

    Read from the split file before any manifest exists, so that the YAML can
    size the classifier (``n_speakers: !apply:voxceleb_prepare.count_speakers
    [...]``); 1,251 for VoxCeleb1.

    Arguments
    ---------
    data_folder : str
    split_file : str, optional

    Returns
    -------
    int

    Example
    -------
    >>> folder = getfixture("tmpdir")
    >>> lines = ["1 id10001/a/00001.wav", "1 id10002/c/00001.wav", "3 id10001/b/00001.wav"]
    >>> _ = folder.join("iden_split.txt").write("\\n".join(lines))
    >>> count_speakers(str(folder))
    2
    """
    entries = read_split_file(find_split_file(data_folder, split_file))
    return len({e["spk_id"] for e in entries if e["split"] == "train"})


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------


def find_wav_folders(data_folder, wav_folders=None):
    """The folders the split file's paths are looked up in, in order.

    Arguments
    ---------
    data_folder : str
    wav_folders : sequence of str, optional
        Explicit folders (e.g. the ``wav/`` of ``vox1_dev_wav`` and of
        ``vox1_test_wav``).

    Returns
    -------
    list of str
        Absolute paths.

    Raises
    ------
    FileNotFoundError
    """
    if wav_folders is not None:
        if isinstance(wav_folders, (str, os.PathLike)):
            wav_folders = [wav_folders]
        folders = [os.path.abspath(f) for f in wav_folders]
        missing = [f for f in folders if not os.path.isdir(f)]
        if missing or not folders:
            raise FileNotFoundError(f"wav_folders: {', '.join(missing) or 'empty'} not found (give existing folders).")
        return folders
    default = os.path.join(data_folder, "wav")
    if os.path.isdir(default):
        return [os.path.abspath(default)]
    archives = [os.path.join(data_folder, name, "wav") for name in ("vox1_dev_wav", "vox1_test_wav")]
    folders = [os.path.abspath(f) for f in archives if os.path.isdir(f)]
    if not folders:
        raise FileNotFoundError(
            f"No wav/ folder in {data_folder}: unpack vox1_dev_wav.zip and vox1_test_wav.zip there "
            "(both hold a wav/ tree), or give the folders as wav_folders."
        )
    return folders


def _audio_info(path):
    """Returns (frames, sample rate, channels, None), or (None, None, None, error message)."""
    try:
        info = sf.info(path)
        return info.frames, info.samplerate, info.channels, None
    except Exception as err:  # any decoding failure: reported with the line
        lines = str(err).strip().splitlines()
        return None, None, None, lines[0] if lines else type(err).__name__


def _audio_infos(paths, split, progress):
    """WAV headers of many files, in worker processes when there are many."""
    if len(paths) >= PARALLEL_MIN_FILES:
        return list(parallel_map(_audio_info, paths, progress_bar=progress,
                                 progress_bar_kwargs={"desc": f"reading {split} headers"}))
    return [_audio_info(p) for p in tqdm(paths, desc=f"reading {split} headers", disable=not progress)]


def _manifest_path(path, data_folder):
    """``$data_root/...`` for a file under ``data_folder``, else the absolute path."""
    rel = os.path.relpath(path, data_folder)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        return path
    return "$data_root/" + rel.replace(os.sep, "/")


def _collect_split(split, entries, folders, data_folder, split_path, progress):
    """Locates and checks the files of one split; returns its CSV rows."""
    located = []
    for entry in entries:
        for folder in folders:
            path = os.path.join(folder, *entry["rel"].split("/"))
            if os.path.isfile(path):
                located.append(path)
                break
        else:
            raise VoxCelebError(
                f"{split_path} line {entry['line']}: {entry['rel']} ({split}) is missing from every wav folder "
                f"({', '.join(folders)}). If the dev and test archives were unpacked into separate folders, "
                "give both as wav_folders."
            )
    rows = []
    for entry, path, (frames, rate, channels, error) in zip(entries, located, _audio_infos(located, split, progress)):
        where = f"{split_path} line {entry['line']}: {path}"
        if error is not None:
            raise VoxCelebError(f"{where}: unreadable audio ({error}).")
        if frames == 0:
            raise VoxCelebError(f"{where}: the file holds no audio samples.")
        if rate != SAMPLE_RATE or channels != 1:
            raise VoxCelebError(
                f"{where}: {rate} Hz, {channels} channel(s); VoxCeleb1 is {SAMPLE_RATE} Hz mono and the models "
                "expect it. Resample the corpus (e.g. sox in.wav -r 16000 -c 1 out.wav) or give the real files."
            )
        rows.append({"ID": entry["ID"], "duration": f"{frames / rate:.3f}", "wav": _manifest_path(path, data_folder),
                     "spk_id": entry["spk_id"]})
    return rows


# --------------------------------------------------------------------------
# Preparation
# --------------------------------------------------------------------------


def _check_unseen(by_split, train_speakers, split_path, policy):
    """Dev/test utterances of speakers without train data: an error, or the skipped ones."""
    skipped = []
    for split, entries in by_split.items():
        if split == "train":
            continue
        first = {}
        for entry in entries:
            if entry["spk_id"] not in train_speakers:
                first.setdefault(entry["spk_id"], entry["line"])
        if not first:
            continue
        if policy == "error":
            listing = ", ".join(f"{spk} (first on line {line})" for spk, line in list(first.items())[:5])
            more = f" and {len(first) - 5} more" if len(first) > 5 else ""
            spk, line = next(iter(first.items()))
            raise VoxCelebError(
                f"{split_path} line {line}: speaker {spk} is in {split} but has no train utterance; a classifier "
                f"cannot name a speaker it never heard. Unseen {split} speakers: {listing}{more}. Fix the split "
                "file, or prepare with unseen_speakers='skip' to drop their utterances (each is reported)."
            )
        kept = []
        for entry in entries:
            if entry["spk_id"] in first:
                skipped.append({"split": split, "file": split_path, "line": entry["line"], "wav": entry["rel"],
                                "spk_id": entry["spk_id"], "reason": f"speaker {entry['spk_id']} not in train"})
            else:
                kept.append(entry)
        by_split[split] = kept
    return skipped


def prepare_voxceleb(
    data_folder,
    save_folder,
    splits=SPLITS,
    split_file=None,
    wav_folders=None,
    unseen_speakers="error",
    skip_prep=False,
    progress=True,
):
    """Writes ``<save_folder>/{train,dev,test}.csv`` from VoxCeleb1's identification split.

    Arguments
    ---------
    data_folder : str
        The VoxCeleb1 folder (holding ``iden_split.txt`` and ``wav/``); the
        manifests' ``$data_root``.
    save_folder : str
        Where the CSVs go.
    splits : sequence of str
        Among ``train``, ``dev``, ``test``.
    split_file : str, optional
        The identification split (default: ``<data_folder>/iden_split.txt``
        or ``Iden_split.txt``).
    wav_folders : sequence of str, optional
        Folders holding ``<speaker>/<video>/<nnnnn>.wav``, searched in order
        (default: ``<data_folder>/wav``, else the ``wav/`` of
        ``vox1_dev_wav`` and ``vox1_test_wav`` in ``data_folder``).
    unseen_speakers : str
        A dev/test speaker absent from train: ``error`` stops with the
        speaker, split and line; ``skip`` drops those utterances and reports
        each one.
    skip_prep : bool
        Do nothing (the CSVs exist already).
    progress : bool
        Show a progress bar while reading the WAV headers.

    Returns
    -------
    dict
        ``prepared`` (False when skipped or already done), ``csv`` (split ->
        path), ``counts`` (split -> utterances), ``n_speakers`` (train
        speakers; None with ``skip_prep``), ``skipped`` (list of dicts:
        split, file, line, wav, spk_id, reason).

    Raises
    ------
    VoxCelebError
        Damaged input or an unseen speaker (named with the split file's line).
    FileNotFoundError
        No split file or wav folder.

    Example
    -------
    >>> import numpy as np
    >>> root = getfixture("tmpdir")
    >>> lines = []
    >>> for code, video in (("1", "aaaaaaaaaaa"), ("2", "bbbbbbbbbbb"), ("3", "ccccccccccc")):
    ...     folder = root.join("vox", "wav", "id10001", video).ensure(dir=True)
    ...     sf.write(str(folder.join("00001.wav")), np.zeros(8000), 16000, subtype="PCM_16")
    ...     lines.append(f"{code} id10001/{video}/00001.wav")
    >>> _ = root.join("vox", "iden_split.txt").write("\\n".join(lines) + "\\n")
    >>> out = prepare_voxceleb(str(root.join("vox")), str(root.join("prep")), progress=False)
    >>> out["counts"], out["n_speakers"]
    ({'train': 1, 'dev': 1, 'test': 1}, 1)
    >>> print(root.join("prep", "test.csv").read().strip())
    ID,duration,wav,spk_id
    id10001-ccccccccccc-00001,0.500,$data_root/wav/id10001/ccccccccccc/00001.wav,id10001
    >>> prepare_voxceleb(str(root.join("vox")), str(root.join("prep")), progress=False)["prepared"]
    False
    """
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"Unknown split '{split}': choose among {SPLITS}.")
    if unseen_speakers not in UNSEEN_POLICIES:
        raise ValueError(f"unseen_speakers must be one of {UNSEEN_POLICIES}, got '{unseen_speakers}'.")
    save_folder = os.path.abspath(save_folder)
    csvs = {split: os.path.join(save_folder, f"{split}.csv") for split in splits}
    summary = {"prepared": False, "csv": csvs, "counts": {}, "n_speakers": None, "skipped": []}
    if skip_prep:
        logger.info("Skipping VoxCeleb preparation (skip_prep=True).")
        return summary
    data_folder = os.path.abspath(data_folder)
    split_path = find_split_file(data_folder, split_file)
    folders = find_wav_folders(data_folder, wav_folders)
    options = {"data_folder": data_folder, "splits": list(splits), "split_file": split_path,
               "wav_folders": folders, "unseen_speakers": unseen_speakers}
    entries = read_split_file(split_path)
    train_speakers = {e["spk_id"] for e in entries if e["split"] == "train"}
    summary["n_speakers"] = len(train_speakers)
    opt_path = os.path.join(save_folder, OPT_FILE)
    if is_up_to_date(csvs.values(), opt_path, options):
        logger.info("VoxCeleb manifests in %s are up to date; skipping preparation.", save_folder)
        summary["counts"] = {s: count_rows(p) for s, p in csvs.items()}
        summary["skipped"] = [r for s in splits for r in read_skips(skips_path(save_folder, s), s, SKIP_FIELDS)]
        return summary

    # Read and check everything first: an error leaves earlier output as it was.
    logger.info("Preparing VoxCeleb1 identification from %s (%s) into %s", data_folder, split_path, save_folder)
    by_split = {split: [e for e in entries if e["split"] == split] for split in SPLITS}
    skipped = _check_unseen(by_split, train_speakers, split_path, unseen_speakers)
    rows = {split: _collect_split(split, by_split[split], folders, data_folder, split_path, progress)
            for split in splits}
    begin_writing(save_folder, opt_path)  # the options are written last
    logger.info("VoxCeleb1 identification: %s speakers in train", f"{len(train_speakers):,}")
    for split in splits:
        split_skips = [r for r in skipped if r["split"] == split]
        write_csv(csvs[split], rows[split], CSV_COLUMNS)
        write_skips(skips_path(save_folder, split), split_skips, SKIP_FIELDS)
        summary["counts"][split] = len(rows[split])
        summary["skipped"].extend(split_skips)
        _log_split(split, rows[split], split_skips, csvs[split])
    save_pkl(options, opt_path)
    summary["prepared"] = True
    return summary


def _log_split(split, rows, skipped, csv_path):
    """One summary line per split, and the skipped utterances."""
    hours = sum(float(r["duration"]) for r in rows) / 3600
    length = f"{hours:.2f} h" if hours >= 1 else f"{hours * 60:.1f} min"
    speakers = len({r["spk_id"] for r in rows})
    videos = len({r["ID"].rsplit("-", 1)[0] for r in rows})
    logger.info("%s: %s utterances (%s) of %s speakers from %s videos -> %s", split, f"{len(rows):,}", length,
                f"{speakers:,}", f"{videos:,}", csv_path)
    if not rows:
        logger.warning("%s: no utterance left", split)
    log_skips(logger, split, skipped, noun="utterances", group=lambda r: r["reason"], fields=SKIP_FIELDS[:1])
