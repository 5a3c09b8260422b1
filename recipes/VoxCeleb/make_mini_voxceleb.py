#!/usr/bin/env python3
"""Synthesise a small corpus laid out exactly like VoxCeleb1 (identification), with espeak-ng.

VoxCeleb1 (Nagrani et al., 2017) holds 153,516 utterances of 1,251
celebrities cut from 22,496 YouTube interviews, as 16 kHz mono 16-bit WAV
files, one folder per speaker and per video::

    wav/<speaker>/<video>/<nnnnn>.wav        e.g. wav/id10001/1zcIwhmdeo4/00001.wav

(the ``vox1_dev_wav`` and ``vox1_test_wav`` archives each unpack to a
``wav/`` tree; together they hold every speaker). The identification split
``iden_split.txt`` names every file once with its split, ``1`` train, ``2``
validation (dev), ``3`` test::

    1 id10001/1zcIwhmdeo4/00001.wav
    3 id10001/7w0IBEWc9Qw/00004.wav

and is made by video: for each speaker, the utterances of one video are the
test set, those of another the validation set, so that no test (or dev)
recording session is heard in training. ``vox1_meta.csv`` lists the
speakers, tab-separated: ``VoxCeleb1 ID, VGGFace1 ID`` (the celebrity's
name), ``Gender`` (m/f), ``Nationality`` and ``Set`` (``dev``, or ``test``
for the 40 speakers of the verification test set).

This script writes the same three parts, so that ``voxceleb_prepare.py`` (and
any tool written for the real corpus) runs unchanged on it:

* speakers ``id10001``, ``id10002`` ... (numbered in the order of their
  made-up names, as the real ids are), each one espeak-ng voice: an English
  accent (``en-us``, ``en-gb-scotland`` ...) with its own voice variant
  (``m3``, ``f2``, ``klatt2`` ...; no two speakers share one), pitch (30-80)
  and speed (140-190 words per minute), spread evenly over those ranges;
* videos with 11-character YouTube-like ids; each video is one recording
  condition: a room (the speech convolved with a decaying-noise impulse
  response of its own RT60, 0.1-0.6 s, mixed dry/wet), a level (peak -12 to
  0 dB) and a low noise floor;
* utterances of about 2-6 s, an interview-like sentence from templates with
  slot fillers (now and then with a short remark: "to be honest", "oh it was
  great"), every one different; the sentences are drawn from one
  pool independently of the speaker, so the words never tell who speaks;
* the split by video as the real one: each speaker has some train videos,
  one dev video and one test video, so every speaker is in all three splits.

Presets (``--preset``), per speaker:

* ``mini`` (the tests): 4 speakers, 2 train videos x 2 utterances, a dev and
  a test video of 2 utterances each (32 files);
* ``demo`` (the offline demo): 20 speakers, 4 train videos x 4 utterances, a
  dev video of 3 and a test video of 5 utterances (480 files).

The output is deterministic for a given ``--seed`` and espeak-ng version,
whatever the number of workers. ``ensure_corpus(out, preset="demo")``
builds it once (a completion marker is written last; a killed build is never
used) and returns the corpus root, the folder holding ``wav/`` and
``iden_split.txt``.

Usage::

    python make_mini_voxceleb.py --preset demo --out /data/voxceleb_demo

Requires the ``espeak-ng`` binary (``apt-get install -y espeak-ng``).

Authors
 * cald-brain developers 2026
"""

import argparse
import os
import random
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
if REPO_DIR not in sys.path:
    sys.path.insert(0, REPO_DIR)

from cald_brain.synth import (  # noqa: E402
    SAMPLE_RATE,
    default_workers,
    ensure_folder,
    espeak_version,
    hash_name,
    marker_matches,
    parallel_map,
    read_marker,
    require_espeak,
    reverberate,
    synthesise,
)

GENERATOR = "make_mini_voxceleb.py"
GENERATOR_VERSION = 1
SPLITS = ("train", "dev", "test")
SPLIT_CODES = {"train": 1, "dev": 2, "test": 3}
WAV_DIR = "wav"
SPLIT_FILE = "iden_split.txt"
META_FILE = "vox1_meta.csv"
META_HEADER = ["VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set"]
PARTS = [WAV_DIR, SPLIT_FILE, META_FILE]
FIRST_ID = 10001
VIDEO_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

# Speakers, videos and utterances per preset.
PRESETS = {
    "mini": {"speakers": 4, "train_videos": 2, "utterances": {"train": 2, "dev": 2, "test": 2}},
    "demo": {"speakers": 20, "train_videos": 4, "utterances": {"train": 4, "dev": 3, "test": 5}},
}

# --------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------

# espeak-ng's English accents (no mbrola needed) and the nationality a
# speaker with that accent gets in vox1_meta.csv.
ACCENTS = {
    "en-us": "USA",
    "en-gb": "UK",
    "en-gb-scotland": "UK",
    "en-029": "Jamaica",
    "en-us-nyc": "USA",
    "en-gb-x-rp": "UK",
    "en-gb-x-gbclan": "UK",
    "en-gb-x-gbcwmd": "UK",
}
# Voice variants (``espeak-ng --voices=variant``); each speaker gets its own.
# Every one of these changes the voice (an unknown name would silently fall
# back to the plain accent).
MALE_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "klatt", "klatt2", "klatt3", "john",
                 "robert", "paul", "max", "norbert", "travis", "victor", "Andy", "Mike"]
FEMALE_VARIANTS = ["f1", "f2", "f3", "f4", "f5", "linda", "steph", "belinda", "Annie", "Alicia", "Andrea"]
PITCH_RANGE = (30, 80)
SPEED_RANGE = (140, 190)

FIRST_NAMES = {
    "m": ["Aaron", "Bruno", "Callum", "Dario", "Elliot", "Felix", "Gideon", "Hamish", "Idris", "Jasper",
          "Kofi", "Lorenzo", "Magnus", "Nikolai", "Oscar", "Piers", "Rafael", "Silas", "Tobias", "Wilbur"],
    "f": ["Adelaide", "Beatrix", "Celeste", "Delphine", "Esme", "Flora", "Greta", "Harriet", "Imogen",
          "Juno", "Kezia", "Lavinia", "Marisol", "Nerys", "Odette", "Priya", "Rosalind", "Sabine"],
}
LAST_NAMES = ["Ashdown", "Blakemore", "Carraway", "Delacroix", "Everly", "Fairbanks", "Grisham", "Holloway",
              "Iverson", "Jarrow", "Kingsley", "Lockhart", "Montague", "Northcott", "Okonkwo", "Pemberton",
              "Quarles", "Rutherford", "Sinclair", "Thornbury", "Underhill", "Vance", "Whitlock", "Yardley"]

# --------------------------------------------------------------------------
# Sentences (interview-like; the same pool for every speaker)
# --------------------------------------------------------------------------

FILLERS = {
    "topic": ["the music", "my family", "the script", "the story", "the fans", "the whole cast", "my career",
              "that character", "the costumes", "live theatre", "the ending", "social media", "the first album",
              "the stunts", "growing older", "the old songs"],
    "work": ["film", "album", "series", "play", "book", "documentary", "show", "record", "tour", "musical"],
    "adj": ["amazing", "strange", "exhausting", "wonderful", "terrifying", "special", "surreal", "intense",
            "hilarious", "beautiful", "difficult", "magical"],
    "place": ["london", "toronto", "a small town in texas", "dublin", "new zealand", "the desert", "paris",
              "glasgow", "the mountains", "a studio in berlin", "new york", "cape town", "sydney", "rome"],
    "relative": ["mother", "father", "grandmother", "older brother", "aunt", "uncle", "sister", "grandfather"],
    "advice": ["just be yourself", "never give up", "listen more than you talk", "keep it simple",
               "always be on time", "trust your instincts", "stay curious", "say yes more often"],
    "number": ["two", "three", "four", "five", "six", "eight", "ten", "twelve"],
    "month": ["january", "march", "april", "june", "september", "october", "november", "december"],
    "feeling": ["nervous", "excited", "grateful", "proud", "scared", "thrilled", "honoured", "emotional"],
    "job": ["teacher", "pilot", "doctor", "chef", "lawyer", "painter", "footballer", "journalist", "vet"],
    "verb": ["ride a horse", "play the piano", "speak french", "sing", "dance", "juggle", "fight with a sword",
             "drive a truck", "swim", "cook", "skate", "fly a plane"],
    "season": ["summer", "winter", "spring", "autumn", "christmas"],
}  # fmt: skip

TEMPLATES = [
    "i think {topic} is what made the {work} so {adj}",
    "when we were shooting in {place} it was really {adj}",
    "my {relative} always told me to {advice}",
    "the first time i read the script i knew it would be {adj}",
    "we spent {number} months in {place} working on the {work}",
    "honestly i never expected {topic} to matter so much",
    "people always ask me about {topic}",
    "i remember the night we played in {place}",
    "it was {adj} to work with such a lovely team",
    "you know, {topic} is something i really care about",
    "the {work} comes out in {month} and i am so {feeling}",
    "we rehearsed for {number} weeks before the opening night",
    "growing up in {place} i wanted to be a {job}",
    "i was so {feeling} when they called me about the part",
    "my {relative} was a {job}, so i learned to {verb} quite early",
    "the hardest part was learning to {verb} on camera",
    "there is a scene where my character has to {verb} in the rain",
    "i love going back to {place} every {season}",
    "we wrote most of the songs in a tiny room in {place}",
    "i think the audience really connected with {topic}",
    "at the end of the day it is all about {topic}",
    "i had to learn to {verb} for the role",
    "it took us {number} years to finish the {work}",
    "the best advice i ever got was to {advice}",
    "i still get {feeling} before every single show",
    "the director wanted everything to feel {adj}",
    "we talked a lot about {topic} on set",
    "next {season} we are going on tour in {place}",
    "i met my best friend on the set of that {work}",
    "working in {place} changed the way i think about {topic}",
    "to be honest the {work} was {adj} from start to finish",
    "so we flew to {place} and started filming the next morning",
]
# Short remarks said before or after some sentences.
REMARKS = ["yeah absolutely", "oh it was great", "thank you", "to be honest", "i mean", "you know",
           "it really was", "no not at all", "honestly", "and that was it", "well", "oh wow", "right"]
P_REMARK = 0.35
# Words per utterance: about 2.5-5 s at the mean speed (165 words per
# minute); the speaker's own speed (140-190) makes it 2-6 s.
WORDS_RANGE = (7, 14)
# Seconds of reverberation tail kept after the speech.
TAIL_S = 0.25


def make_sentence(rng):
    """One sentence: a template with its slots filled.

    Arguments
    ---------
    rng : random.Random

    Returns
    -------
    str

    Example
    -------
    >>> make_sentence(random.Random(0)) == make_sentence(random.Random(0))
    True
    """
    return rng.choice(TEMPLATES).format(**{slot: rng.choice(words) for slot, words in FILLERS.items()})


def make_utterance_text(rng, used):
    """The text of one utterance: a sentence, sometimes with a short remark, never seen before.

    Arguments
    ---------
    rng : random.Random
    used : set of str
        Texts already given out (updated).

    Returns
    -------
    str
        Between ``WORDS_RANGE`` words.

    Example
    -------
    >>> rng, used = random.Random(0), set()
    >>> texts = [make_utterance_text(rng, used) for _ in range(50)]
    >>> len(set(texts)), all(7 <= len(t.split()) <= 14 for t in texts)
    (50, True)
    """
    low, high = WORDS_RANGE
    for _attempt in range(1000):
        text = make_sentence(rng)
        if rng.random() < P_REMARK:
            remark = rng.choice(REMARKS)
            if len(text.split()) + len(remark.split()) <= high:
                text = f"{remark}, {text}" if rng.random() < 0.5 else f"{text}. {remark}"
        if low <= len(text.split()) <= high and text not in used:
            used.add(text)
            return text
    raise RuntimeError("ran out of distinct sentences: add templates or fillers")


# --------------------------------------------------------------------------
# Plan
# --------------------------------------------------------------------------


def corpus_settings(preset="demo", seed=1234):
    """The full description of a corpus.

    Arguments
    ---------
    preset : str
        A key of ``PRESETS``.
    seed : int

    Returns
    -------
    dict

    Example
    -------
    >>> corpus_settings("mini")["utterances"]
    {'train': 2, 'dev': 2, 'test': 2}
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset '{preset}': choose among {sorted(PRESETS)}.")
    return dict(PRESETS[preset], preset=preset, seed=seed)


def _spread(low, high, n, rng):
    """``n`` integers evenly spread over [low, high], shuffled."""
    values = [int(round(low + (high - low) * (i + 0.5) / n)) for i in range(n)]
    rng.shuffle(values)
    return values


def _video_id(rng, taken):
    while True:
        video = "".join(rng.choice(VIDEO_ALPHABET) for _ in range(11))
        if video not in taken:
            taken.add(video)
            return video


def plan_corpus(settings):
    """Every speaker, video and utterance of a corpus (nothing is synthesised).

    Arguments
    ---------
    settings : dict
        From :func:`corpus_settings`.

    Returns
    -------
    list of dict
        One per speaker (in id order): ``spk_id``, ``name``, ``gender``,
        ``nationality``, ``set``, ``voice``, ``pitch``, ``speed`` and
        ``videos``, each a dict with ``video``, ``split``, ``rt60``, ``wet``,
        ``gain_db``, ``noise_db`` and ``utterances`` (``file``, ``text``).

    Example
    -------
    >>> plan = plan_corpus(corpus_settings("mini"))
    >>> [s["spk_id"] for s in plan], len({s["voice"] for s in plan})
    (['id10001', 'id10002', 'id10003', 'id10004'], 4)
    >>> sorted(v["split"] for v in plan[0]["videos"])
    ['dev', 'test', 'train', 'train']
    >>> plan[0]["videos"][0]["utterances"][1]["file"]
    '00002.wav'
    """
    n = settings["speakers"]
    n_female = n // 2
    if n - n_female > len(MALE_VARIANTS) or n_female > len(FEMALE_VARIANTS) or n > len(LAST_NAMES):
        raise ValueError(f"{n} speakers need more distinct voices and names than there are")
    rng = random.Random(settings["seed"])
    genders = ["m"] * (n - n_female) + ["f"] * n_female
    rng.shuffle(genders)
    variants = {"m": rng.sample(MALE_VARIANTS, n - n_female), "f": rng.sample(FEMALE_VARIANTS, n_female)}
    accents = list(ACCENTS)
    rng.shuffle(accents)
    pitches = _spread(*PITCH_RANGE, n, rng)
    speeds = _spread(*SPEED_RANGE, n, rng)
    firsts = {g: rng.sample(FIRST_NAMES[g], genders.count(g)) for g in "mf"}
    lasts = rng.sample(LAST_NAMES, n)
    speakers = []
    for i, gender in enumerate(genders):
        accent, variant = accents[i % len(accents)], variants[gender].pop()
        speakers.append({
            "name": f"{firsts[gender].pop()}_{lasts[i]}", "gender": gender, "nationality": ACCENTS[accent],
            "voice": f"{accent}+{variant}", "pitch": pitches[i], "speed": speeds[i],
        })
    # The real ids follow the alphabetical order of the names; a contiguous
    # block of them is the verification test set ("Set" column).
    speakers.sort(key=lambda s: s["name"])
    n_test = max(1, n // 5)
    first_test = n // 4
    taken = set()
    text_rng, used = random.Random(f"{settings['seed']}:text"), set()
    for i, speaker in enumerate(speakers):
        speaker["spk_id"] = f"id{FIRST_ID + i}"
        speaker["set"] = "test" if first_test <= i < first_test + n_test else "dev"
        splits = ["train"] * settings["train_videos"] + ["dev", "test"]
        speaker["videos"] = []
        for split in splits:
            speaker["videos"].append({
                "video": _video_id(rng, taken),
                "split": split,
                "rt60": round(rng.uniform(0.1, 0.6), 3),
                "wet": round(rng.uniform(0.15, 0.5), 3),
                "gain_db": round(rng.uniform(-12.0, 0.0), 2),
                "noise_db": round(rng.uniform(-70.0, -55.0), 2),
                "utterances": [
                    {"file": f"{k + 1:05d}.wav", "text": make_utterance_text(text_rng, used)}
                    for k in range(settings["utterances"][split])
                ],
            })
    return [{key: s[key] for key in ("spk_id", "name", "gender", "nationality", "set", "voice", "pitch",
                                     "speed", "videos")} for s in speakers]


def wav_paths(plan):
    """Every utterance as ``(split, "<speaker>/<video>/<nnnnn>.wav")``, sorted by path.

    Arguments
    ---------
    plan : list of dict
        From :func:`plan_corpus`.

    Returns
    -------
    list of tuple

    Example
    -------
    >>> paths = wav_paths(plan_corpus(corpus_settings("mini")))
    >>> len(paths), paths[0][1].startswith("id10001/"), paths[0][1].endswith(".wav")
    (32, True, True)
    """
    return sorted(
        ((video["split"], f"{speaker['spk_id']}/{video['video']}/{utt['file']}")
         for speaker in plan for video in speaker["videos"] for utt in video["utterances"]),
        key=lambda item: item[1],
    )


def iden_split_text(plan):
    """The contents of ``iden_split.txt``: ``<code> <speaker>/<video>/<nnnnn>.wav`` lines.

    Arguments
    ---------
    plan : list of dict

    Returns
    -------
    str

    Example
    -------
    >>> text = iden_split_text(plan_corpus(corpus_settings("mini")))
    >>> sorted({line.split()[0] for line in text.splitlines()})
    ['1', '2', '3']
    """
    return "".join(f"{SPLIT_CODES[split]} {path}\n" for split, path in wav_paths(plan))


def meta_text(plan):
    """The contents of ``vox1_meta.csv`` (tab-separated, the real header).

    Arguments
    ---------
    plan : list of dict

    Returns
    -------
    str

    Example
    -------
    >>> meta_text(plan_corpus(corpus_settings("mini"))).splitlines()[0].split("\\t")
    ['VoxCeleb1 ID', 'VGGFace1 ID', 'Gender', 'Nationality', 'Set']
    """
    rows = [META_HEADER] + [[s["spk_id"], s["name"], s["gender"], s["nationality"], s["set"]] for s in plan]
    return "".join("\t".join(row) + "\n" for row in rows)


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------


def render_tasks(plan, root, seed, exe, tmp):
    """One synthesis task per utterance (for :func:`render_utterance`)."""
    tasks = []
    for speaker in plan:
        voice = {key: speaker[key] for key in ("voice", "pitch", "speed")}
        for video in speaker["videos"]:
            room = {key: video[key] for key in ("video", "rt60", "wet", "gain_db", "noise_db")}
            for utt in video["utterances"]:
                rel = f"{speaker['spk_id']}/{video['video']}/{utt['file']}"
                tasks.append((root, rel, video["split"], utt["text"], voice, room, seed, exe, tmp))
    return tasks


def render_utterance(task):
    """Synthesises one utterance in its video's room and writes it as 16-bit WAV.

    The room's response depends only on the seed and the video, so every
    utterance of a video is heard in the same room; the noise floor is drawn
    per file.

    Arguments
    ---------
    task : tuple
        From :func:`render_tasks`.

    Returns
    -------
    tuple
        ``(split, seconds)``.
    """
    root, rel, split, text, voice, room, seed, exe, tmp = task
    tmp_wav = os.path.join(tmp, f"espeak-{os.getpid()}.wav")
    audio = synthesise(exe, text, voice["voice"], voice["pitch"], voice["speed"], tmp_wav)
    room_rng = np.random.default_rng([seed, hash_name(room["video"])])
    audio = reverberate(audio, room["rt60"], room["wet"], room_rng)[: len(audio) + int(TAIL_S * SAMPLE_RATE)]
    audio *= 0.89 * 10 ** (room["gain_db"] / 20) / np.abs(audio).max()  # peak at gain_db - 1 dB
    noise_rng = np.random.default_rng([seed, hash_name(rel)])
    audio += (noise_rng.standard_normal(len(audio)) * 10 ** (room["noise_db"] / 20)).astype(np.float32)
    path = os.path.join(root, WAV_DIR, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return split, len(audio) / SAMPLE_RATE


def build_corpus(out, settings, exe, workers=1, progress=True):
    """Writes a whole corpus into ``out``: ``wav/``, ``iden_split.txt``, ``vox1_meta.csv``.

    Arguments
    ---------
    out : str
    settings : dict
        From :func:`corpus_settings`.
    exe : str
        espeak-ng executable.
    workers : int
        Synthesis processes (the output does not depend on it).
    progress : bool

    Returns
    -------
    dict
        Speakers; utterances, videos and seconds of audio per split; build time.
    """
    begin = time.perf_counter()
    plan = plan_corpus(settings)
    summary = {"speakers": len(plan)}
    summary.update({split: {"utterances": 0, "videos": 0, "seconds": 0.0} for split in SPLITS})
    for speaker in plan:
        for video in speaker["videos"]:
            summary[video["split"]]["videos"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        tasks = render_tasks(plan, out, settings["seed"], exe, tmp)
        for split, seconds in parallel_map(render_utterance, tasks, workers, "utterances", progress):
            summary[split]["utterances"] += 1
            summary[split]["seconds"] = round(summary[split]["seconds"] + seconds, 2)
    with open(os.path.join(out, SPLIT_FILE), "w", encoding="utf-8") as fout:
        fout.write(iden_split_text(plan))
    with open(os.path.join(out, META_FILE), "w", encoding="utf-8") as fout:
        fout.write(meta_text(plan))
    return dict(summary, elapsed_s=round(time.perf_counter() - begin, 1))


def ensure_corpus(out, preset="demo", seed=1234, workers=None, progress=True):
    """Makes sure ``out`` holds a complete corpus of these settings; builds it if not.

    Arguments
    ---------
    out : str
        The corpus folder (``wav/``, ``iden_split.txt`` and ``vox1_meta.csv``
        are written inside it).
    preset : str
        ``demo`` or ``mini``.
    seed : int
    workers : int, optional
        Synthesis processes (default 2; 1 on a single CPU).
    progress : bool

    Returns
    -------
    str
        The corpus root (what ``prepare_voxceleb`` reads as ``data_folder``).

    Raises
    ------
    cald_brain.synth.EspeakNotFoundError
        When the corpus must be built and espeak-ng is not installed.
    """
    settings = corpus_settings(preset, seed)
    out = os.path.abspath(os.fspath(out))
    required = [SPLIT_FILE, META_FILE]
    if not marker_matches(out, GENERATOR, GENERATOR_VERSION, settings, required):
        exe = require_espeak(f"Building the {preset} VoxCeleb1-layout corpus at {out}")
        ensure_folder(
            out, GENERATOR, GENERATOR_VERSION, settings,
            lambda tmp: build_corpus(tmp, settings, exe, workers or default_workers(), progress),
            PARTS, required, extra={"espeak_ng": espeak_version(exe)},
        )
    return out


def main(argv=None):
    """Command line: builds a corpus (or reports the one that is there)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="corpus folder (wav/, iden_split.txt, vox1_meta.csv)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--workers", type=int, default=None, help="synthesis processes (default 2)")
    args = p.parse_args(argv)
    root = ensure_corpus(args.out, args.preset, args.seed, args.workers)
    summary = read_marker(root)["summary"]
    counts = ", ".join(
        f"{split} {summary[split]['utterances']} utterances ({summary[split]['seconds'] / 60:.1f} min)"
        for split in SPLITS
    )
    print(f"VoxCeleb1-layout corpus ({args.preset}, seed {args.seed}): {summary['speakers']} speakers; {counts}")
    print(root)
    return root


if __name__ == "__main__":
    main()
