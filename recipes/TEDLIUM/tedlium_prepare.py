"""Data preparation for TED-LIUM release 3: one CSV row per scored STM segment.

Reads the corpus as users download and unpack it (``TEDLIUM_release-3.tgz``)::

    <data_folder>/legacy/{train,dev,test}/sph/<talk>.sph     (16 kHz NIST SPHERE)
    <data_folder>/legacy/{train,dev,test}/stm/<talk>.stm
    <data_folder>/speaker-adaptation/{train,dev,test}/{sph,stm}/ ...

``data_folder`` is the ``TEDLIUM_release-3`` folder (or the folder that
holds it). ``split_type="legacy"`` is the paper's split (the release-1/2
dev and test talks); ``"speaker-adaptation"`` the release's other one.

Each STM line ``<talk> <channel> <speaker> <start> <end> [<labels>] <text>``
is one segment. Segments whose text is ``ignore_time_segment_in_scoring``
(non-speech, TED-LIUM's marker) are dropped. The others are cut from the
talk's SPHERE audio into ``<save_folder>/audio/<split>/<talk>/<talk>_<8-digit
line index>.flac`` and listed in ``<save_folder>/<split>.csv`` with the
columns ``ID, duration, wav, spk_id, talk, start, end, wrd``; ``wrd`` is the
normalised transcript (:func:`normalize_text`). ``<split>_talks.csv`` lists
the whole talks (``wav`` = the SPHERE file, ``wrd`` = their scored segments
in order) for long-form transcription.

Skipped segments are reported with talk, STM file, line and reason (in the
log, in ``<save_folder>/skipped_<split>.txt`` and in the returned summary):
``ignore_time_segment_in_scoring``, an empty transcript (e.g. only
``<unk>``), times outside the talk's audio (reported, never silently cut),
segments shorter than ``min_duration``, and, in train, characters outside
the vocabulary. Damaged input stops the preparation with a message naming
the file and line: an STM without its SPH, an STM line with too few fields
or unreadable times, audio that is not 16 kHz mono, and a dev/test character
outside the vocabulary (dropping test segments would change the WER).
Everything is checked before anything is written, so an error never
damages a previous preparation.

Idempotent in SpeechBrain's way: the options are saved to
``opt_tedlium_prepare.pkl``; a later call with the same options and every
CSV present does nothing.

Authors
 * cald-brain developers 2026
"""

import os
import re
from collections import Counter

import soundfile as sf
from speechbrain.dataio.dataio import load_pkl, save_pkl
from speechbrain.utils.logger import get_logger
from tqdm import tqdm

from cald_brain.preparation import count_rows, write_csv

logger = get_logger(__name__)

OPT_FILE = "opt_tedlium_prepare.pkl"
SPLITS = ("train", "dev", "test")
SPLIT_TYPES = ("legacy", "speaker-adaptation")
SAMPLE_RATE = 16000
IGNORE = "ignore_time_segment_in_scoring"
# What the character targets can spell (the word delimiter is the space).
VOCABULARY = frozenset("abcdefghijklmnopqrstuvwxyz' ")
CSV_COLUMNS = ["ID", "duration", "wav", "spk_id", "talk", "start", "end", "wrd"]
TALK_COLUMNS = ["ID", "duration", "wav", "spk_id", "n_segments", "wrd"]
# STM times are rounded to 1/100 s: an end this close past the audio is kept.
END_TOLERANCE = 0.05
MAX_LOGGED_SKIPS = 20


class TedliumError(ValueError):
    """Damaged corpus input (named with its file and line)."""


# --------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------


def _inflect():
    import inflect

    if not hasattr(_inflect, "engine"):
        _inflect.engine = inflect.engine()
    return _inflect.engine


def _words(n):
    """Cardinal words without commas or hyphens ("one thousand two hundred and five")."""
    text = _inflect().number_to_words(n, andword="and")
    return text.replace(",", "").replace("-", " ")


def number_words(token):
    """Spells out one number as said in a talk (years in pairs, like "nineteen eighty four").

    Arguments
    ---------
    token : str
        Digits, optionally with a decimal part.

    Returns
    -------
    str

    Example
    -------
    >>> number_words("1984"), number_words("2004"), number_words("2016"), number_words("1900")
    ('nineteen eighty four', 'two thousand and four', 'twenty sixteen', 'nineteen hundred')
    >>> number_words("12"), number_words("3.14"), number_words("250")
    ('twelve', 'three point one four', 'two hundred and fifty')
    """
    if "." in token:
        whole, frac = token.split(".", 1)
        return f"{number_words(whole or '0')} point {' '.join(_words(int(d)) for d in frac)}"
    n = int(token)
    if 1100 <= n < 2000 or 2010 <= n < 2100:  # years: "nineteen eighty four", "twenty sixteen"
        hundreds, rest = divmod(n, 100)
        if rest == 0:
            return f"{_words(hundreds)} hundred"
        return f"{_words(hundreds)} {'oh ' + _words(rest) if rest < 10 else _words(rest)}"
    return _words(n)


def _dollars(match):
    whole, cents = match.group(1).replace(",", ""), (match.group(2) or ".")[1:]
    text = f"{_words(int(whole))} dollar{'' if whole == '1' else 's'}"
    if cents and int(cents):
        cents = (cents + "0")[:2]
        text += f" {number_words(str(int(cents)))} cent{'' if int(cents) == 1 else 's'}"
    return f" {text} "


def _ordinal(match):
    return " " + _inflect().ordinal(_words(int(match.group(1)))).replace("-", " ") + " "


def normalize_text(text):
    """TED-LIUM transcript -> the characters the model spells (a-z, ', space).

    As the paper's preparation (cald-reference section 3.11): ``<unk>`` (with
    its split clitic, ``<unk> 's``) and bracketed annotations removed, ``&`` -> and, ``%`` -> percent, ``+`` ->
    plus, ``@`` -> at, unidecode, dollars, decimals, ordinals and numbers
    spelled out, hyphens to spaces, TED-LIUM's split contractions joined
    (``it 's`` -> ``it's``), other punctuation dropped, lower case, spaces
    collapsed. Characters it does not know are kept, so that a caller can
    report them (see :data:`VOCABULARY`).

    Arguments
    ---------
    text : str

    Returns
    -------
    str

    Example
    -------
    >>> normalize_text("it 's <unk> 's idea , you don 't say")
    "it's idea you don't say"
    >>> normalize_text("R&D at 30% in 1984 costs $3.50 , the 2nd time {NOISE}")
    'r and d at thirty percent in nineteen eighty four costs three dollars fifty cents the second time'
    >>> normalize_text("a well-known café with 1,200 seats @ night")
    'a well known cafe with one thousand two hundred seats at night'
    """
    from unidecode import unidecode

    text = re.sub(r"<unk>(\s+'\w+)*", " ", text)  # an unknown word goes with its clitic ("<unk> 's")
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]|\{[^}]*\}", " ", text)
    text = unidecode(text).lower()
    text = re.sub(r"\$\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?", _dollars, text)
    # "1,200" is a count, never a year
    text = re.sub(r"\b\d{1,3}(?:,\d{3})+\b", lambda m: f" {_words(int(m.group(0).replace(',', '')))} ", text)
    text = re.sub(r"\b(\d+)(?:st|nd|rd|th)\b", _ordinal, text)
    text = re.sub(r"\d+(?:\.\d+)?", lambda m: f" {number_words(m.group(0))} ", text)
    for symbol, word in (("&", "and"), ("%", "percent"), ("+", "plus"), ("@", "at")):
        text = text.replace(symbol, f" {word} ")
    text = text.replace("-", " ")
    text = re.sub(r"\s+'", "'", " " + text)  # TED-LIUM writes "it 's" for "it's"
    text = re.sub(r"[.,;:!?\"]", " ", text)
    return " ".join(text.split()).strip("' ") if text.strip(" '") else ""


def unknown_characters(text):
    """The characters of a normalised text that the targets cannot spell.

    Example
    -------
    >>> unknown_characters("a#b*a")
    ['#', '*']
    """
    return sorted(set(text) - VOCABULARY, key=text.index)


# --------------------------------------------------------------------------
# STM files
# --------------------------------------------------------------------------


def parse_stm_line(line, path, line_no):
    """One STM line -> dict, or None for comments and blank lines.

    Arguments
    ---------
    line : str
    path : str
        The STM file (for messages).
    line_no : int
        1-based.

    Returns
    -------
    dict or None
        ``talk, channel, speaker, start, end, labels, text, line``.

    Raises
    ------
    TedliumError
        Too few fields, unreadable or reversed times.

    Example
    -------
    >>> parse_stm_line("T 1 T 1.50 3.25 <o,f0,male> hello there", "T.stm", 1)["text"]
    'hello there'
    >>> parse_stm_line("T 1 T 1.5", "T.stm", 7)
    Traceback (most recent call last):
    ...
    tedlium_prepare.TedliumError: T.stm line 7: an STM line needs at least 5 fields (talk channel speaker start end [<labels>] text), found 4: 'T 1 T 1.5'
    """
    stripped = line.strip()
    if not stripped or stripped.startswith(";;"):
        return None
    fields = stripped.split()
    if len(fields) < 5:
        raise TedliumError(
            f"{path} line {line_no}: an STM line needs at least 5 fields (talk channel speaker start end "
            f"[<labels>] text), found {len(fields)}: '{stripped[:80]}'"
        )
    talk, channel, speaker = fields[:3]
    try:
        start, end = float(fields[3]), float(fields[4])
    except ValueError:
        raise TedliumError(
            f"{path} line {line_no}: start and end times must be numbers, got '{fields[3]}' and '{fields[4]}'"
        ) from None
    if end < start or start < 0:
        raise TedliumError(f"{path} line {line_no}: the segment ends ({end}) before it starts ({start})")
    rest = fields[5:]
    labels = ""
    if rest and rest[0].startswith("<") and rest[0].endswith(">") and rest[0] != "<unk>":
        labels, rest = rest[0], rest[1:]
    return {"talk": talk, "channel": channel, "speaker": speaker, "start": start, "end": end,
            "labels": labels, "text": " ".join(rest), "line": line_no}


def split_folder(data_folder, split_type, split):
    """``<root>/<split_type>/<split>``, accepting the release folder or its parent."""
    root = data_folder
    if not os.path.isdir(os.path.join(root, split_type)) and os.path.isdir(
        os.path.join(root, "TEDLIUM_release-3", split_type)
    ):
        root = os.path.join(root, "TEDLIUM_release-3")
    return os.path.join(root, split_type, split)


def _collect_split(data_folder, split_type, split, min_duration):
    """Reads and checks one split: segments to cut, talks, skipped segments."""
    folder = split_folder(data_folder, split_type, split)
    stm_dir, sph_dir = os.path.join(folder, "stm"), os.path.join(folder, "sph")
    if not os.path.isdir(stm_dir):
        raise FileNotFoundError(
            f"No STM folder {stm_dir}: data_folder must be TEDLIUM_release-3 (holding "
            f"{split_type}/{{train,dev,test}}/{{sph,stm}}) or the folder that contains it."
        )
    stms = sorted(f for f in os.listdir(stm_dir) if f.endswith(".stm"))
    if not stms:
        raise FileNotFoundError(f"{stm_dir} holds no .stm file.")
    segments, talks, skipped = [], [], []
    for name in stms:
        talk = name[: -len(".stm")]
        stm_path = os.path.join(stm_dir, name)
        sph_path = os.path.join(sph_dir, talk + ".sph")
        if not os.path.isfile(sph_path):
            raise TedliumError(f"{stm_path}: its audio {sph_path} is missing (each STM needs the SPH of its talk).")
        try:
            info = sf.info(sph_path)
        except RuntimeError as err:
            raise TedliumError(f"{sph_path}: unreadable audio ({err}).") from None
        if info.samplerate != SAMPLE_RATE or info.channels != 1:
            raise TedliumError(
                f"{sph_path}: {info.samplerate} Hz, {info.channels} channel(s); TED-LIUM audio is "
                f"{SAMPLE_RATE} Hz mono, and the models expect it. Resample the talk (e.g. sox in.sph -r 16000 "
                "out.sph) or give the real corpus."
            )
        audio_s = info.frames / info.samplerate
        talk_rows = []
        with open(stm_path, encoding="utf-8") as fin:
            lines = fin.readlines()
        for line_no, line in enumerate(lines, 1):
            seg = parse_stm_line(line, stm_path, line_no)
            if seg is None:
                continue

            def skip(reason, seg=seg):
                skipped.append({"split": split, "talk": talk, "file": stm_path, "line": seg["line"],
                                "reason": reason})

            if seg["text"] == IGNORE:
                skip(IGNORE)
                continue
            text = normalize_text(seg["text"])
            if not text:
                skip(f"empty transcript ('{seg['text']}')")
                continue
            bad = unknown_characters(text)
            if bad:
                message = f"characters outside the vocabulary {bad} in '{text}'"
                if split != "train":
                    raise TedliumError(
                        f"{stm_path} line {line_no}: {message}. A {split} segment cannot be dropped (that "
                        "would change the WER): fix the transcript or extend the normaliser."
                    )
                skip(message)
                continue
            if seg["start"] >= audio_s or seg["end"] > audio_s + END_TOLERANCE:
                skip(f"times {seg['start']:.2f}-{seg['end']:.2f} s fall outside the audio ({audio_s:.2f} s)")
                continue
            end = min(seg["end"], audio_s)
            if end - seg["start"] < min_duration:
                skip(f"shorter than min_duration ({end - seg['start']:.2f} s < {min_duration} s)")
                continue
            row = {"talk": talk, "sph": sph_path, "spk_id": seg["speaker"], "start": seg["start"], "end": end,
                   "wrd": text, "line": line_no}
            segments.append(row)
            talk_rows.append(row)
        talks.append({"ID": talk, "duration": round(audio_s, 3), "wav": sph_path,
                      "spk_id": talk_rows[0]["spk_id"] if talk_rows else talk,
                      "n_segments": len(talk_rows), "wrd": " ".join(r["wrd"] for r in talk_rows)})
    return segments, talks, skipped


def _cut(segment, audio_dir):
    """Writes one segment as 16 kHz FLAC; returns its CSV row."""
    seg_id = f"{segment['talk']}_{segment['line']:08d}"
    folder = os.path.join(audio_dir, segment["talk"])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, seg_id + ".flac")
    start, stop = int(round(segment["start"] * SAMPLE_RATE)), int(round(segment["end"] * SAMPLE_RATE))
    audio, _ = sf.read(segment["sph"], start=start, stop=stop, dtype="int16")
    sf.write(path + ".tmp", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(path + ".tmp", path)
    return {"ID": seg_id, "duration": round(len(audio) / SAMPLE_RATE, 3), "wav": path,
            "spk_id": segment["spk_id"], "talk": segment["talk"], "start": f"{segment['start']:.2f}",
            "end": f"{segment['end']:.2f}", "wrd": segment["wrd"]}


def _write_skips(path, skipped):
    with open(path + ".tmp", "w", encoding="utf-8") as fo:
        for r in skipped:
            fo.write(f"{r['talk']}\t{r['file']}:{r['line']}\t{r['reason']}\n")
    os.replace(path + ".tmp", path)


def prepare_tedlium(
    data_folder,
    save_folder,
    splits=SPLITS,
    split_type="legacy",
    min_duration=0.3,
    skip_prep=False,
    progress=True,
):
    """Writes ``<save_folder>/{train,dev,test}.csv`` (and ``*_talks.csv``) from TED-LIUM 3.

    Arguments
    ---------
    data_folder : str
        ``TEDLIUM_release-3`` (or the folder holding it).
    save_folder : str
        Where the CSVs and the cut segments go.
    splits : sequence of str
        Among ``train``, ``dev``, ``test``.
    split_type : str
        ``legacy`` (the paper's) or ``speaker-adaptation``.
    min_duration : float
        Segments shorter than this (seconds) are skipped and reported.
    skip_prep : bool
        Do nothing (the CSVs exist already).
    progress : bool
        Show a progress bar while cutting.

    Returns
    -------
    dict
        ``prepared`` (False when skipped or already done), ``csv`` (split ->
        path), ``talks_csv``, ``counts`` (split -> segments), ``skipped``
        (list of dicts: split, talk, file, line, reason).
    """
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"Unknown split '{split}': choose among {SPLITS}.")
    if split_type not in SPLIT_TYPES:
        raise ValueError(f"split_type must be one of {SPLIT_TYPES}, got '{split_type}'.")
    csvs = {split: os.path.join(save_folder, f"{split}.csv") for split in splits}
    talks_csvs = {split: os.path.join(save_folder, f"{split}_talks.csv") for split in splits}
    summary = {"prepared": False, "csv": csvs, "talks_csv": talks_csvs, "counts": {}, "skipped": []}
    if skip_prep:
        return summary
    options = {"data_folder": os.path.abspath(data_folder), "splits": list(splits), "split_type": split_type,
               "min_duration": min_duration}
    opt_path = os.path.join(save_folder, OPT_FILE)
    if all(os.path.isfile(p) for p in list(csvs.values()) + list(talks_csvs.values())) and os.path.isfile(opt_path):
        if load_pkl(opt_path) == options:
            logger.info("TED-LIUM manifests in %s are up to date; skipping preparation.", save_folder)
            summary["counts"] = {s: count_rows(p) for s, p in csvs.items()}
            return summary

    # Read and check everything first: an error leaves earlier output as it was.
    collected = {split: _collect_split(data_folder, split_type, split, min_duration) for split in splits}
    os.makedirs(save_folder, exist_ok=True)
    for split in splits:
        segments, talks, skipped = collected[split]
        audio_dir = os.path.join(save_folder, "audio", split)
        rows = [_cut(s, audio_dir) for s in tqdm(segments, desc=f"cutting {split}", disable=not progress)]
        write_csv(csvs[split], rows, CSV_COLUMNS)
        write_csv(talks_csvs[split], talks, TALK_COLUMNS)
        _write_skips(os.path.join(save_folder, f"skipped_{split}.txt"), skipped)
        summary["counts"][split] = len(rows)
        summary["skipped"].extend(skipped)
        _log_split(split, rows, talks, skipped)
    save_pkl(options, opt_path)
    summary["prepared"] = True
    return summary


def _log_split(split, rows, talks, skipped):
    hours = sum(float(r["duration"]) for r in rows) / 3600
    logger.info("%s: %d segments (%.2f h) from %d talks", split, len(rows), hours, len(talks))
    unusual = [r for r in skipped if r["reason"] != IGNORE]
    for r in unusual[:MAX_LOGGED_SKIPS]:
        logger.warning("%s: skipped %s line %d (talk %s): %s", split, r["file"], r["line"], r["talk"], r["reason"])
    if skipped:
        reasons = Counter(r["reason"].split(" (")[0].split(" [")[0] for r in skipped)
        logger.info("%s: %d segments skipped (%s); all listed in skipped_%s.txt", split, len(skipped),
                    ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()), split)
