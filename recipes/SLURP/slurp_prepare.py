"""Data preparation for SLURP: CSV manifests with one row per recording.

Reads the corpus as users download it: ``data_folder`` is the SLURP root,

    <data_folder>/dataset/slurp/{train,devel,test,train_synthetic}.jsonl
    <data_folder>/slurp_real/audio-<id>-headset.flac, audio-<id>.flac
    <data_folder>/slurp_synth/audio-<id>.flac

(the audio folders may also sit under ``<data_folder>/audio/``, where the
SLURP repository's ``scripts/download_audio.sh`` puts them), and writes
``<save_folder>/{train,devel,test}.csv`` with the columns

    ID, duration, wav, transcript, intent, scenario, action, phrasing,
    unseen_phrasing

``wav`` starts with the ``$data_root`` placeholder, so a manifest stays valid
when the corpus moves: load it with
``DynamicItemDataset.from_csv(csv, replacements={"data_root": data_folder})``.
``train`` holds ``train.jsonl`` plus, with ``use_synthetic``,
``train_synthetic.jsonl``; ``devel`` and ``test`` hold their jsonl files.
``phrasing`` and ``unseen_phrasing`` come from the optional jsonl fields of
the same names that generated corpora carry (``make_mini_slurp.py --preset
demo``: the template a sentence fills, and whether that template is kept out
of train and devel; written "1" or "0"); real SLURP has neither, and both
columns are then empty.
``recording_type`` keeps both microphones of the real recordings, or only the
close-talk (``-headset``) or the far-field ones; synthetic recordings have a
single channel and are kept whatever it says.

Rows that cannot be used are skipped and reported (malformed JSON line, a
missing key, an empty sentence, a missing or unreadable audio file, a
duplicate recording), each with its jsonl file and line number, both in the
log and in the returned summary. The preparation is idempotent in
SpeechBrain's way: the options are saved to ``opt_slurp_prepare.pkl`` and a
later call with the same options and all CSVs present does nothing.

Authors
 * cald-brain developers 2026
"""

import csv
import json
import os
from collections import Counter

import soundfile as sf
from speechbrain.dataio.dataio import load_pkl, save_pkl
from speechbrain.utils.logger import get_logger
from speechbrain.utils.parallel import parallel_map
from tqdm import tqdm

logger = get_logger(__name__)

OPT_FILE = "opt_slurp_prepare.pkl"
SPLITS = ("train", "devel", "test")
RECORDING_TYPES = ("both", "headset", "far-field")
CSV_COLUMNS = [
    "ID",
    "duration",
    "wav",
    "transcript",
    "intent",
    "scenario",
    "action",
    "phrasing",
    "unseen_phrasing",
]
# Bumped when the manifest format changes, so that old manifests are rebuilt.
MANIFEST_VERSION = 2
# Below this many files a plain loop is faster than starting worker processes.
PARALLEL_MIN_FILES = 2000
# How many skipped rows are logged one by one per split (all are returned).
MAX_LOGGED_SKIPS = 20


def prepare_slurp(
    data_folder,
    save_folder,
    splits=SPLITS,
    use_synthetic=True,
    recording_type="both",
    skip_prep=False,
):
    """Writes SLURP's CSV manifests, one row per recording.

    Arguments
    ---------
    data_folder : str
        The SLURP root: it holds ``dataset/slurp/*.jsonl`` and the audio
        folders ``slurp_real/`` and ``slurp_synth/`` (or ``audio/slurp_real/``
        and ``audio/slurp_synth/``).
    save_folder : str
        Where ``<split>.csv`` and ``opt_slurp_prepare.pkl`` are written.
    splits : sequence of str
        Which of "train", "devel", "test" to prepare.
    use_synthetic : bool
        Whether train also holds the text-to-speech recordings of
        ``train_synthetic.jsonl``.
    recording_type : str
        "both", "headset" (close-talk ``*-headset.flac`` only) or "far-field"
        (the distant microphone only). Applies to real recordings.
    skip_prep : bool
        If True, do nothing.

    Returns
    -------
    dict
        ``prepared`` (False when skipped or already prepared), ``reason``
        (why not prepared, else None), ``csv`` (split -> path), ``rows``
        (split -> number of rows), ``duration`` (split -> seconds of audio,
        this run only), ``filtered`` (split -> recordings left out by
        ``recording_type``) and ``skipped`` (list of dicts with ``split``,
        ``source``, ``line``, ``slurp_id``, ``file`` and ``reason``).

    Example
    -------
    >>> summary = prepare_slurp(
    ...     "recipes/SLURP/mini_slurp", "results/slurp_manifests"
    ... )  # doctest: +SKIP
    >>> summary["rows"]["test"]  # doctest: +SKIP
    40
    """
    splits = _check_options(splits, recording_type)
    save_folder = os.path.abspath(save_folder)
    summary = {
        "prepared": False,
        "reason": None,
        "csv": {s: os.path.join(save_folder, f"{s}.csv") for s in splits},
        "rows": {},
        "duration": {},
        "filtered": {},
        "skipped": [],
    }
    if skip_prep:
        logger.info("Skipping SLURP preparation (skip_prep=True).")
        summary["reason"] = "skip_prep"
        return summary

    data_folder = os.path.abspath(data_folder)
    sources = _find_sources(data_folder, splits, use_synthetic)
    options = {
        "data_folder": data_folder,
        "splits": list(splits),
        "use_synthetic": bool(use_synthetic),
        "recording_type": recording_type,
        "manifest_version": MANIFEST_VERSION,
    }
    opt_path = os.path.join(save_folder, OPT_FILE)
    if _already_prepared(summary["csv"].values(), opt_path, options):
        logger.info(
            "SLURP manifests in %s are up to date, skipping preparation.",
            save_folder,
        )
        summary["reason"] = "already prepared"
        summary["rows"] = {
            s: _count_rows(path) for s, path in summary["csv"].items()
        }
        return summary

    os.makedirs(save_folder, exist_ok=True)
    # A run stopped half-way must not leave old options beside new CSVs.
    if os.path.exists(opt_path):
        os.remove(opt_path)
    logger.info("Preparing SLURP from %s into %s", data_folder, save_folder)
    for split in splits:
        rows, filtered, skipped = _collect_split(
            split, sources[split], data_folder, recording_type
        )
        _write_csv(summary["csv"][split], rows)
        summary["rows"][split] = len(rows)
        summary["duration"][split] = sum(row[1] for row in rows)
        summary["filtered"][split] = filtered
        summary["skipped"].extend(skipped)
        _log_split(split, summary, skipped, recording_type)
    save_pkl(options, opt_path)
    summary["prepared"] = True
    return summary


def _check_options(splits, recording_type):
    """Validates the split names and the recording type; returns splits."""
    if isinstance(splits, str):
        splits = [splits]
    unknown = [s for s in splits if s not in SPLITS]
    if unknown or not splits:
        raise ValueError(
            f"splits must be a non-empty subset of {SPLITS}, got {splits}"
        )
    if recording_type not in RECORDING_TYPES:
        raise ValueError(
            f"recording_type must be one of {RECORDING_TYPES}, "
            f"got {recording_type!r}"
        )
    return list(dict.fromkeys(splits))


def _find_sources(data_folder, splits, use_synthetic):
    """Locates the jsonl files and audio folders each split reads.

    Arguments
    ---------
    data_folder : str
        The SLURP root (absolute).
    splits : list of str
        Splits to prepare.
    use_synthetic : bool
        Whether train reads ``train_synthetic.jsonl`` too.

    Returns
    -------
    dict
        split -> list of (jsonl path, audio folder relative to data_folder,
        is_synthetic).
    """
    text_dir = os.path.join(data_folder, "dataset", "slurp")
    if not os.path.isdir(data_folder):
        raise FileNotFoundError(
            f"SLURP data_folder {data_folder} does not exist. It should be "
            "the SLURP root holding dataset/slurp/*.jsonl and the audio "
            "folders slurp_real/ and slurp_synth/."
        )
    marker = os.path.join(text_dir, "train.jsonl")
    if not os.path.isfile(marker):
        raise FileNotFoundError(
            f"{marker} not found: data_folder ({data_folder}) should be the "
            "SLURP root, holding dataset/slurp/{train,devel,test,"
            "train_synthetic}.jsonl (from github.com/pswietojanski/slurp) "
            "and the audio folders slurp_real/ and slurp_synth/."
        )
    wanted = {s: [(s, False)] for s in splits}
    if "train" in wanted and use_synthetic:
        wanted["train"].append(("train_synthetic", True))
    sources = {}
    for split, parts in wanted.items():
        sources[split] = []
        for name, synthetic in parts:
            jsonl = os.path.join(text_dir, f"{name}.jsonl")
            if not os.path.isfile(jsonl):
                hint = " (or set use_synthetic=False)" if synthetic else ""
                raise FileNotFoundError(
                    f"{jsonl} not found; split '{split}' needs it{hint}."
                )
            audio = _find_audio_folder(
                data_folder, "slurp_synth" if synthetic else "slurp_real"
            )
            sources[split].append((jsonl, audio, synthetic))
    return sources


def _find_audio_folder(data_folder, name):
    """Returns ``name`` or ``audio/name`` (relative), whichever exists."""
    for relative in (name, f"audio/{name}"):
        if os.path.isdir(os.path.join(data_folder, relative)):
            return relative
    raise FileNotFoundError(
        f"SLURP audio folder not found: neither "
        f"{os.path.join(data_folder, name)} nor "
        f"{os.path.join(data_folder, 'audio', name)} exists. Download and "
        f"extract {name}.tar.gz from https://zenodo.org/record/4274930 "
        "into the SLURP root."
    )


def _already_prepared(csv_paths, opt_path, options):
    """True if every CSV exists and was made with the same options."""
    if not all(os.path.isfile(p) for p in csv_paths):
        return False
    if not os.path.isfile(opt_path):
        return False
    try:
        return load_pkl(opt_path) == options
    except Exception:  # an unreadable option file means "prepare again"
        return False


def _count_rows(csv_path):
    """Number of data rows of a manifest."""
    with open(csv_path, newline="", encoding="utf-8") as fin:
        return sum(1 for _ in csv.DictReader(fin))


def _collect_split(split, sources, data_folder, recording_type):
    """Reads the jsonl files of a split into manifest rows.

    Arguments
    ---------
    split : str
        Name of the split (for the skip records).
    sources : list
        (jsonl path, audio folder relative to data_folder, is_synthetic).
    data_folder : str
        The SLURP root (absolute).
    recording_type : str
        "both", "headset" or "far-field".

    Returns
    -------
    rows : list of list
        [ID, duration, wav, transcript, intent, scenario, action, phrasing,
        unseen_phrasing] per row.
    filtered : int
        Real recordings left out by ``recording_type``.
    skipped : list of dict
        One record per skipped jsonl line or recording.
    """
    candidates, skipped, seen = [], [], set()
    filtered = 0

    def skip(source, line, reason, slurp_id=None, file=None):
        skipped.append(
            {
                "split": split,
                "source": source,
                "line": line,
                "slurp_id": slurp_id,
                "file": file,
                "reason": reason,
            }
        )

    for jsonl, audio_dir, synthetic in sources:
        source = os.path.relpath(jsonl, data_folder)
        for line_no, entry, error in _read_jsonl(jsonl):
            if error:
                skip(source, line_no, error)
                continue
            slurp_id = entry.get("slurp_id")
            sentence = " ".join(str(entry.get("sentence") or "").split())
            if not sentence:
                skip(source, line_no, "empty sentence", slurp_id)
                continue
            scenario, action = entry["scenario"], entry["action"]
            intent = entry.get("intent") or f"{scenario}_{action}"
            phrasing, unseen = _phrasing_fields(entry)
            for recording in entry["recordings"]:
                is_dict = isinstance(recording, dict)
                file = recording.get("file") if is_dict else None
                if not file:
                    skip(source, line_no, "recording without 'file'", slurp_id)
                    continue
                if not synthetic and not _keep(file, recording_type):
                    filtered += 1
                    continue
                stem = os.path.splitext(os.path.basename(file))[0]
                kind = "synth_" if synthetic else ""
                utt_id = f"{slurp_id}_{kind}{stem}"
                if utt_id in seen:
                    skip(source, line_no, "duplicate recording", slurp_id, file)
                    continue
                path = os.path.join(data_folder, audio_dir, file)
                if not os.path.isfile(path):
                    skip(source, line_no, "missing audio file", slurp_id, file)
                    continue
                seen.add(utt_id)
                where = (source, line_no, slurp_id, file)
                row = [
                    utt_id,
                    None,  # duration, read below
                    f"$data_root/{audio_dir}/{file}",
                    _csv_safe(sentence),
                    _csv_safe(intent),
                    _csv_safe(scenario),
                    _csv_safe(action),
                    phrasing,
                    unseen,
                ]
                candidates.append((where, path, row))

    rows = []
    durations = _durations([path for _, path, _ in candidates], split)
    for (where, _, row), (duration, error) in zip(
        candidates, durations, strict=True
    ):
        source, line_no, slurp_id, file = where
        if error:
            reason = f"unreadable audio ({error})"
            skip(source, line_no, reason, slurp_id, file)
        elif duration <= 0:
            skip(source, line_no, "empty audio", slurp_id, file)
        else:
            row[1] = duration
            rows.append(row)
    # audio is checked after the text: report in file and line order
    order = {
        os.path.relpath(jsonl, data_folder): i
        for i, (jsonl, *_) in enumerate(sources)
    }
    skipped.sort(key=lambda record: (order[record["source"]], record["line"]))
    return rows, filtered, skipped


def _read_jsonl(path):
    """Yields (line number, entry, error) for each non-blank line of a file.

    ``error`` is None for a usable entry, else why the line is unusable
    (malformed JSON, not an object, a missing key).
    """
    required = ("slurp_id", "sentence", "scenario", "action", "recordings")
    with open(path, encoding="utf-8") as fin:
        for line_no, line in enumerate(fin, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, None, f"malformed JSON ({err.msg})"
                continue
            if not isinstance(entry, dict):
                yield line_no, None, "malformed JSON (not an object)"
                continue
            missing = [k for k in required if k not in entry]
            if missing:
                yield line_no, None, f"missing key(s) {', '.join(missing)}"
                continue
            if not isinstance(entry["recordings"], list):
                yield line_no, None, "'recordings' is not a list"
                continue
            yield line_no, entry, None


def _phrasing_fields(entry):
    """The optional ``phrasing`` and ``unseen_phrasing`` of an entry.

    Returns (phrasing, "1" / "0"), or ("", "") where the entry lacks them
    (real SLURP).
    """
    phrasing = entry.get("phrasing")
    phrasing = "" if phrasing is None else _csv_safe(phrasing)
    unseen = entry.get("unseen_phrasing")
    if unseen is None:
        unseen = ""
    elif isinstance(unseen, str):
        unseen = "1" if unseen.strip().lower() in ("1", "true", "yes") else "0"
    else:
        unseen = "1" if unseen else "0"
    return phrasing, unseen


def _keep(file, recording_type):
    """Whether a real recording matches the requested microphone."""
    headset = file.endswith("-headset.flac")
    if recording_type == "headset":
        return headset
    if recording_type == "far-field":
        return not headset
    return True


def _csv_safe(text):
    """Makes a text field safe for SpeechBrain's CSV loader.

    ``load_data_csv`` substitutes ``$name`` in every column, so a literal
    dollar sign (as in "$5") would be read as a missing replacement.
    """
    return " ".join(str(text).replace("$", " dollars ").split())


def _audio_duration(path):
    """Returns (seconds, None), or (None, error message) if unreadable."""
    try:
        info = sf.info(path)
        return info.frames / info.samplerate, None
    except Exception as err:  # any decoding failure means: skip this file
        lines = str(err).strip().splitlines()
        return None, lines[0] if lines else type(err).__name__


def _durations(paths, split):
    """Durations of many files, in worker processes when there are many."""
    if len(paths) >= PARALLEL_MIN_FILES:
        return list(
            parallel_map(
                _audio_duration,
                paths,
                progress_bar_kwargs={"desc": f"reading {split} audio"},
            )
        )
    return [
        _audio_duration(p) for p in tqdm(paths, desc=f"reading {split} audio")
    ]


def _write_csv(path, rows):
    """Writes a manifest atomically (a ``.tmp`` file, then a rename)."""
    tmp_path = path + ".tmp"
    with open(tmp_path, "w", newline="", encoding="utf-8") as fout:
        writer = csv.writer(fout)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            writer.writerow([row[0], f"{row[1]:.3f}"] + row[2:])
    os.replace(tmp_path, path)


def _log_split(split, summary, skipped, recording_type):
    """Logs what a split got and every reason rows were skipped."""
    logger.info(
        "%s: %d rows, %.1f min of audio -> %s",
        split,
        summary["rows"][split],
        summary["duration"][split] / 60,
        summary["csv"][split],
    )
    if summary["filtered"][split]:
        logger.info(
            "%s: %d recordings left out by recording_type=%s",
            split,
            summary["filtered"][split],
            recording_type,
        )
    for record in skipped[:MAX_LOGGED_SKIPS]:
        logger.warning(
            "%s: skipped %s line %d%s%s: %s",
            split,
            record["source"],
            record["line"],
            f" (slurp_id {record['slurp_id']})" if record["slurp_id"] else "",
            f" file {record['file']}" if record["file"] else "",
            record["reason"],
        )
    if skipped:
        reasons = Counter(r["reason"].split(" (")[0] for r in skipped)
        logger.warning(
            "%s: %d skipped in all (%s)%s",
            split,
            len(skipped),
            ", ".join(f"{n} {why}" for why, n in reasons.most_common()),
            (
                f"; only the first {MAX_LOGGED_SKIPS} are listed above"
                if len(skipped) > MAX_LOGGED_SKIPS
                else ""
            ),
        )


def count_intents(data_folder, use_synthetic=True):
    """Number of distinct intents in SLURP's training text (the classifier size).

    Read from ``train.jsonl`` (+ ``train_synthetic.jsonl``) before any
    manifest exists, so that the YAML can size the classifier
    (``n_intents: !apply:slurp_prepare.count_intents [...]``). The recipe
    checks it against the label encoder built from ``train.csv``.

    Arguments
    ---------
    data_folder : str
        The SLURP root.
    use_synthetic : bool
        Whether train includes ``train_synthetic.jsonl``.

    Returns
    -------
    n_intents : int
    """
    data_folder = os.path.abspath(data_folder)
    sources = _find_sources(data_folder, ["train"], use_synthetic)
    intents = set()
    for jsonl, _, _ in sources["train"]:
        for _, entry, error in _read_jsonl(jsonl):
            if error is None:
                scenario, action = entry["scenario"], entry["action"]
                intents.add(entry.get("intent") or f"{scenario}_{action}")
    return len(intents)
