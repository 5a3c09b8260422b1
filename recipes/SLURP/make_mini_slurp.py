#!/usr/bin/env python3
"""Synthesise a small corpus laid out exactly like SLURP, with espeak-ng.

SLURP (Bastianelli et al., EMNLP 2020) ships its text as JSON lines under
``dataset/slurp/`` and its audio as 16 kHz mono FLAC under ``slurp_real/``
(close-talk ``audio-<id>-headset.flac`` and far-field ``audio-<id>.flac``
microphones of the same reading) and ``slurp_synth/`` (text-to-speech audio,
listed in ``train_synthetic.jsonl``). This script writes the same layout,

    <out>/dataset/slurp/{train,devel,test,train_synthetic}.jsonl
    <out>/dataset/slurp/metadata.json
    <out>/slurp_real/audio-<id>-headset.flac, audio-<id>.flac
    <out>/slurp_synth/audio-<id>.flac

with the same JSON fields (``slurp_id``, ``sentence``, ``sentence_annotation``,
``intent`` = ``<scenario>_<action>``, ``action``, ``tokens``, ``scenario``,
``recordings`` = [{file, wer, ent_wer, status}], ``entities``), so that
``slurp_prepare.py`` and any recipe built on it run unchanged on the real
corpus. The defaults produce the mini corpus committed in ``mini_slurp/``;
larger counts give a larger corpus.

Content: 10 intents from 8 SLURP scenarios, templated sentences with slot
fillers (times, dates, places, artists, rooms ...) annotated SLURP-style
(``wake me up at [time : five am]``). Sentences are unique across the whole
corpus, and every intent appears in every split.

Speakers are espeak-ng voices: an English accent (``en-us``, ``en-gb``,
``en-gb-x-rp``, ``en-gb-scotland``, ``en-029`` ...) with a voice variant
(``+m3``, ``+f2``, ``+klatt`` ...), a pitch and a speed. The split:

* train, devel and test readers are disjoint: no voice variant is shared
  between the three pools; accents are shared, so that held-out speakers are
  new voices rather than a new dialect;
* each reading gives a headset recording (the clean synthesis) and, usually,
  a far-field one (the same audio with a synthetic room response, a low-pass,
  a level drop and a little noise); as in SLURP, some train readings lack the
  far-field file and every eighth train sentence is read by two speakers;
* ``train_synthetic`` uses the plain accent voices (no variant, fixed pitch),
  a "text-to-speech engine" that never reads in the real splits.

The ``wer``/``ent_wer`` fields are placeholders (0.0, or null when the
sentence has no entity) and ``status`` is always ``correct``: nothing was
transcribed. Output is deterministic for a given ``--seed`` and espeak-ng
version.

Counts are sentences per intent; the capacity is a few hundred distinct
sentences per intent, beyond which the script stops with an error.

Usage:
    python make_mini_slurp.py                       # the committed mini corpus
    python make_mini_slurp.py --out /data/slurp_big --n-train 60 --n-synth 40 \
        --n-devel 15 --n-test 15

Requires the ``espeak-ng`` binary (``apt-get install -y espeak-ng``).

Authors
 * cald-brain developers 2026
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import scipy.signal
import soundfile as sf
import torch
import torchaudio
from tqdm import tqdm

SAMPLE_RATE = 16000

# --------------------------------------------------------------------------
# Text: intents, templates and slot fillers
# --------------------------------------------------------------------------

# intent -> (scenario, action, templates). ``{slot}`` marks an entity; the
# wording of each intent is kept distinct so that a tiny model can separate
# the classes from a few minutes of audio.
INTENTS = {
    "alarm_set": (
        "alarm",
        "set",
        [
            "wake me up at {time}",
            "set an alarm for {time}",
            "set an alarm for {time} {date}",
            "wake me up {date} at {time}",
            "i need an alarm at {time}",
            "alarm for {time} on {weekday}",
        ],
    ),
    "alarm_remove": (
        "alarm",
        "remove",
        [
            "cancel my alarm for {time}",
            "delete the {time} alarm",
            "remove my alarm for {date}",
            "cancel all my alarms",
            "delete every alarm",
            "remove the alarm on {weekday}",
        ],
    ),
    "weather_query": (
        "weather",
        "query",
        [
            "what is the weather in {place_name}",
            "will it rain {date}",
            "is it going to be {weather_descriptor} {date}",
            "what is the temperature in {place_name}",
            "how hot is it outside",
            "weather forecast for {date}",
        ],
    ),
    "play_music": (
        "play",
        "music",
        [
            "play some {music_genre} music",
            "play {song_name} by {artist_name}",
            "put on a song by {artist_name}",
            "i want to listen to {artist_name}",
            "play my {playlist_name} playlist",
            "play {song_name}",
        ],
    ),
    "iot_hue_lightoff": (
        "iot",
        "hue_lightoff",
        [
            "turn off the lights in the {house_place}",
            "switch off the {house_place} lights",
            "lights off in the {house_place}",
            "kill the lights",
            "make the {house_place} dark",
        ],
    ),
    "iot_hue_lighton": (
        "iot",
        "hue_lighton",
        [
            "turn on the lights in the {house_place}",
            "switch on the {house_place} lights",
            "lights on in the {house_place}",
            "i need some light in the {house_place}",
            "turn the {house_place} lights on",
        ],
    ),
    "calendar_query": (
        "calendar",
        "query",
        [
            "what is on my calendar {date}",
            "do i have any meetings {date}",
            "what is my schedule for {date}",
            "when is my {event_name}",
            "am i free on {weekday} {timeofday}",
        ],
    ),
    "general_joke": (
        "general",
        "joke",
        [
            "tell me a joke",
            "tell me a {joke_type} joke",
            "make me laugh",
            "do you know any good jokes",
            "say something funny",
            "i want to hear a {joke_type} joke",
            "i need a good laugh",
            "tell me your best joke",
        ],
    ),
    "news_query": (
        "news",
        "query",
        [
            "what is the latest news",
            "read me the {news_topic} news",
            "any news about {news_topic}",
            "give me the headlines from {media_type}",
            "what are the top stories {date}",
        ],
    ),
    "email_query": (
        "email",
        "query",
        [
            "do i have any new emails",
            "check my inbox",
            "did {person} send me an email",
            "read my emails from {person}",
            "how many unread emails do i have",
            "any emails from {person}",
            "open my latest email",
        ],
    ),
}

# slot -> (entity type, fillers). Most slots are named after their SLURP
# entity type; ``weekday`` is a second pool of ``date`` fillers.
SLOTS = {
    "time": (
        "time",
        [
            "five am",
            "six thirty",
            "seven o'clock",
            "eight fifteen",
            "nine pm",
            "ten am",
            "noon",
            "half past six",
            "quarter to eight",
            "six am",
            "eleven pm",
            "four forty five",
        ],
    ),
    "date": (
        "date",
        ["tomorrow", "today", "this weekend", "next week", "tonight"],
    ),
    "weekday": (
        "date",
        ["monday", "tuesday", "wednesday", "thursday", "friday", "sunday"],
    ),
    "place_name": (
        "place_name",
        [
            "london",
            "paris",
            "edinburgh",
            "new york",
            "tokyo",
            "berlin",
            "madrid",
            "chicago",
        ],
    ),
    "weather_descriptor": (
        "weather_descriptor",
        ["sunny", "cold", "windy", "snowy", "warm", "cloudy"],
    ),
    "music_genre": (
        "music_genre",
        ["jazz", "rock", "classical", "pop", "reggae", "country"],
    ),
    "song_name": (
        "song_name",
        [
            "yellow submarine",
            "hey jude",
            "imagine",
            "let it be",
            "bohemian rhapsody",
            "dancing queen",
        ],
    ),
    "artist_name": (
        "artist_name",
        ["the beatles", "queen", "adele", "madonna", "elvis", "abba"],
    ),
    "playlist_name": (
        "playlist_name",
        ["workout", "morning", "party", "chill", "dinner"],
    ),
    "house_place": (
        "house_place",
        [
            "kitchen",
            "bedroom",
            "living room",
            "bathroom",
            "hallway",
            "garage",
            "office",
        ],
    ),
    "event_name": (
        "event_name",
        [
            "meeting",
            "dentist appointment",
            "yoga class",
            "team lunch",
            "doctor appointment",
        ],
    ),
    "timeofday": ("timeofday", ["morning", "afternoon", "evening"]),
    "joke_type": ("joke_type", ["funny", "short", "silly", "nerdy"]),
    "news_topic": (
        "news_topic",
        ["sports", "politics", "business", "science", "technology"],
    ),
    "media_type": ("media_type", ["bbc", "cnn", "reuters", "sky news"]),
    "person": (
        "person",
        ["john", "sarah", "mike", "emma", "david", "lucy", "peter"],
    ),
}

# Optional words around a command (SLURP users address the device as "olly"),
# each used with a small probability.
PREFIXES = ["olly", "please", "hey olly", "okay olly"]
SUFFIXES = ["please", "now", "thanks"]
P_PREFIX, P_SUFFIX = 0.2, 0.1

# Lemma and part of speech of the template words, in the style of SLURP's
# spaCy 2 tokens ("me" -> "-PRON-"). Unlisted words are nouns (NN) with
# themselves as lemma; number words are CD. An approximation: no recipe is
# expected to train on these tags.
LEXICON = {
    "a": ("a", "DT"),
    "about": ("about", "IN"),
    "alarm": ("alarm", "NN"),
    "alarms": ("alarm", "NNS"),
    "all": ("all", "DT"),
    "am": ("be", "VBP"),
    "an": ("an", "DT"),
    "any": ("any", "DT"),
    "are": ("be", "VBP"),
    "at": ("at", "IN"),
    "best": ("good", "JJS"),
    "by": ("by", "IN"),
    "cancel": ("cancel", "VB"),
    "check": ("check", "VB"),
    "dark": ("dark", "JJ"),
    "delete": ("delete", "VB"),
    "did": ("do", "VBD"),
    "do": ("do", "VBP"),
    "emails": ("email", "NNS"),
    "every": ("every", "DT"),
    "for": ("for", "IN"),
    "free": ("free", "JJ"),
    "from": ("from", "IN"),
    "funny": ("funny", "JJ"),
    "give": ("give", "VB"),
    "going": ("go", "VBG"),
    "good": ("good", "JJ"),
    "headlines": ("headline", "NNS"),
    "hear": ("hear", "VB"),
    "hey": ("hey", "UH"),
    "hot": ("hot", "JJ"),
    "how": ("how", "WRB"),
    "i": ("i", "PRP"),
    "in": ("in", "IN"),
    "is": ("be", "VBZ"),
    "it": ("-PRON-", "PRP"),
    "jokes": ("joke", "NNS"),
    "kill": ("kill", "VB"),
    "know": ("know", "VB"),
    "latest": ("late", "JJS"),
    "laugh": ("laugh", "VB"),
    "lights": ("light", "NNS"),
    "listen": ("listen", "VB"),
    "make": ("make", "VB"),
    "many": ("many", "JJ"),
    "me": ("-PRON-", "PRP"),
    "meetings": ("meeting", "NNS"),
    "my": ("-PRON-", "PRP$"),
    "need": ("need", "VBP"),
    "new": ("new", "JJ"),
    "now": ("now", "RB"),
    "off": ("off", "RP"),
    "okay": ("okay", "UH"),
    "olly": ("olly", "UH"),
    "on": ("on", "IN"),
    "open": ("open", "VB"),
    "outside": ("outside", "RB"),
    "play": ("play", "VB"),
    "please": ("please", "UH"),
    "put": ("put", "VB"),
    "rain": ("rain", "VB"),
    "read": ("read", "VB"),
    "remove": ("remove", "VB"),
    "say": ("say", "VB"),
    "send": ("send", "VB"),
    "set": ("set", "VB"),
    "some": ("some", "DT"),
    "something": ("something", "NN"),
    "stories": ("story", "NNS"),
    "switch": ("switch", "VB"),
    "tell": ("tell", "VB"),
    "thanks": ("thank", "NNS"),
    "the": ("the", "DT"),
    "to": ("to", "IN"),
    "top": ("top", "JJ"),
    "turn": ("turn", "VB"),
    "unread": ("unread", "JJ"),
    "up": ("up", "RP"),
    "wake": ("wake", "VB"),
    "want": ("want", "VBP"),
    "what": ("what", "WP"),
    "when": ("when", "WRB"),
    "will": ("will", "MD"),
    "you": ("-PRON-", "PRP"),
    "your": ("-PRON-", "PRP$"),
}
NUMBER_WORDS = {
    "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "fifteen", "thirty", "forty",
}  # fmt: skip

# --------------------------------------------------------------------------
# Speakers
# --------------------------------------------------------------------------

# espeak-ng's own English voices (no mbrola needed).
ACCENTS = [
    "en-us",
    "en-gb",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
]
# Disjoint voice variants per split: held-out readers are new voices.
VARIANTS = {
    "train": [
        "m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt",
        "edward", "linda", "john", "steph",
    ],
    "devel": ["m5", "f4", "klatt2", "david"],
    "test": ["m6", "f5", "klatt3", "belinda"],
}  # fmt: skip
FEMALE_VARIANTS = {"f1", "f2", "f3", "f4", "f5", "linda", "steph", "belinda"}
# The "text-to-speech engine" of train_synthetic: plain accent voices.
SYNTH_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-029"]


def make_speakers(split, rng):
    """Returns the reader pool of a split: espeak-ng voice, pitch, speed, id.

    Arguments
    ---------
    split : str
        "train", "devel" or "test".
    rng : random.Random
        Source of the per-speaker pitch, speed, gain and accent offset.

    Returns
    -------
    list of dict
        One dict per speaker with keys usrid, voice, pitch, speed, gain.
    """
    offset = {"train": 0, "devel": 3, "test": 5}[split]
    speakers = []
    for i, variant in enumerate(VARIANTS[split]):
        accent = ACCENTS[(i + offset) % len(ACCENTS)]
        if variant in FEMALE_VARIANTS:
            gender = "F"
        elif variant.startswith("klatt"):
            gender = "UNK"
        else:
            gender = "M"
        speakers.append(
            {
                # SLURP's usrid pattern: Gender, native language, number.
                "usrid": f"{gender}E-{100 * (1 + offset) + i:03d}",
                "voice": f"{accent}+{variant}",
                "pitch": rng.randint(30, 70),
                "speed": rng.randint(185, 225),
                # Close-talk peak level, -24 to -18 dBFS: real recordings are
                # not normalised, and a low level keeps the FLAC files small.
                "gain": rng.uniform(0.06, 0.12),
            }
        )
    return speakers


# --------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------


def make_sentence(intent, rng):
    """Fills a random template of an intent, with SLURP's annotations.

    Arguments
    ---------
    intent : str
        A key of ``INTENTS``.
    rng : random.Random
        Source of the template, fillers, prefix and suffix.

    Returns
    -------
    dict
        sentence, sentence_annotation, tokens, entities (SLURP fields).
    """
    _, _, templates = INTENTS[intent]
    template = rng.choice(templates)
    prefix = rng.choice(PREFIXES) if rng.random() < P_PREFIX else ""
    suffix = rng.choice(SUFFIXES) if rng.random() < P_SUFFIX else ""
    if prefix == suffix == "please":
        suffix = ""
    words, annotation, entities = [], [], []
    for part in f"{prefix} {template} {suffix}".split():
        if part.startswith("{"):
            entity_type, fillers = SLOTS[part.strip("{}")]
            filler = rng.choice(fillers).split()
            span = list(range(len(words), len(words) + len(filler)))
            entities.append({"span": span, "type": entity_type})
            words.extend(filler)
            annotation.append(f"[{entity_type} : {' '.join(filler)}]")
        else:
            words.append(part)
            annotation.append(part)
    tokens = []
    for idx, word in enumerate(words):
        if word in NUMBER_WORDS:
            lemma, pos = word, "CD"
        else:
            lemma, pos = LEXICON.get(word, (word, "NN"))
        tokens.append({"surface": word, "id": idx, "lemma": lemma, "pos": pos})
    return {
        "sentence": " ".join(words),
        "sentence_annotation": " ".join(annotation),
        "tokens": tokens,
        "entities": entities,
    }


# --------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------


def check_espeak():
    """Returns the espeak-ng executable, or exits with how to install it."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        sys.exit(
            "make_mini_slurp.py needs the espeak-ng speech synthesiser, which "
            "is not on PATH.\nInstall it with:\n"
            "  Debian/Ubuntu: sudo apt-get install -y espeak-ng\n"
            "  Fedora:        sudo dnf install espeak-ng\n"
            "  macOS:         brew install espeak-ng\n"
            "then run this script again."
        )
    return exe


def synthesise(exe, text, voice, pitch, speed, tmp_wav):
    """Speaks a text with espeak-ng; returns trimmed 16 kHz float audio.

    Arguments
    ---------
    exe : str
        Path of the espeak-ng executable.
    text : str
        What to say.
    voice : str
        espeak-ng voice, e.g. "en-gb-x-rp+f2".
    pitch : int
        Base pitch, 0-99.
    speed : int
        Words per minute.
    tmp_wav : str
        Scratch file for espeak-ng's 22.05 kHz output.

    Returns
    -------
    numpy.ndarray
        Mono float32 audio at 16 kHz, peak 1, silence trimmed to short margins.
    """
    cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed)]
    subprocess.run(cmd + ["-w", tmp_wav, text], check=True, capture_output=True)
    audio, rate = sf.read(tmp_wav, dtype="float32")
    audio = torchaudio.functional.resample(
        torch.from_numpy(audio), rate, SAMPLE_RATE
    ).numpy()
    # Trim leading/trailing silence (-35 dB of the peak), keeping 50 ms before
    # and 80 ms after the speech: silence is free in FLAC but costs compute.
    peak = np.abs(audio).max()
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (-35 / 20))
    start = max(loud[0] - int(0.05 * SAMPLE_RATE), 0)
    stop = min(loud[-1] + int(0.08 * SAMPLE_RATE), len(audio))
    return audio[start:stop] / peak


def far_field(audio, np_rng):
    """Simulates a distant microphone: room response, level drop, noise.

    Arguments
    ---------
    audio : numpy.ndarray
        Clean audio at 16 kHz, peak 1.
    np_rng : numpy.random.Generator
        Source of the room response and the noise.

    Returns
    -------
    numpy.ndarray
        Reverberant, quieter, slightly noisy audio, same length plus a short
        reverberation tail.
    """
    rt60 = np_rng.uniform(0.15, 0.4)
    n_taps = int(0.25 * SAMPLE_RATE)
    t = np.arange(n_taps) / SAMPLE_RATE
    rir = np_rng.standard_normal(n_taps) * np.exp(-6.9 * t / rt60)
    rir *= np_rng.uniform(0.15, 0.35) / np.sqrt(np.sum(rir**2))
    delay = int(np_rng.uniform(0.002, 0.008) * SAMPLE_RATE)
    rir[:delay] = 0.0
    rir[0] = 1.0  # direct path
    wet = scipy.signal.fftconvolve(audio, rir)[
        : len(audio) + int(0.08 * SAMPLE_RATE)
    ]
    # A distant microphone hears less of the high band (air absorption,
    # cheaper microphones) and a lower level than the headset.
    cutoff = np_rng.uniform(4000, 6000)
    wet = scipy.signal.sosfilt(
        scipy.signal.butter(4, cutoff, fs=SAMPLE_RATE, output="sos"), wet
    )
    wet *= np_rng.uniform(0.025, 0.05) / np.abs(wet).max()
    # Low-frequency room noise (integrated white noise, leaky): cheap for
    # FLAC's predictor, unlike white noise, which keeps the corpus small.
    noise = scipy.signal.lfilter(
        [1.0], [1.0, -0.97], np_rng.standard_normal(len(wet))
    )
    rms = np.sqrt(np.mean(wet**2))
    snr_db = np_rng.uniform(25, 35)
    noise *= rms * 10 ** (-snr_db / 20) / np.sqrt(np.mean(noise**2))
    return (wet + noise).astype(np.float32)


def write_flac(path, audio):
    """Writes 16 kHz mono 16-bit FLAC at the strongest compression."""
    sf.write(
        path,
        np.clip(audio, -1.0, 1.0),
        SAMPLE_RATE,
        format="FLAC",
        subtype="PCM_16",
        compression_level=1.0,
    )


# --------------------------------------------------------------------------
# Corpus
# --------------------------------------------------------------------------


def plan_corpus(args, rng):
    """Decides every entry: split, intent, sentence, readers and file names.

    Arguments
    ---------
    args : argparse.Namespace
        Counts per intent (n_train, n_devel, n_test, n_synth).
    rng : random.Random
        The corpus' random source (seeded).

    Returns
    -------
    dict
        split name -> list of entries; each entry has the SLURP fields and a
        private "_jobs" list of what to synthesise.
    """
    speakers = {s: make_speakers(s, rng) for s in ("train", "devel", "test")}
    counts = {
        "train": args.n_train,
        "devel": args.n_devel,
        "test": args.n_test,
        "train_synthetic": args.n_synth,
    }
    used_sentences, used_ids = set(), set()
    slurp_id = 1000

    def new_file_id():
        # Real SLURP audio ids look like unix times, some negative.
        while True:
            value = rng.randint(1_434_000_000, 1_510_000_000)
            if rng.random() < 0.1:
                value = -value
            if value not in used_ids:
                used_ids.add(value)
                return value

    plan = {}
    for split, per_intent in counts.items():
        entries = []
        for intent in INTENTS:
            for _ in range(per_intent):
                for _attempt in range(1000):
                    fields = make_sentence(intent, rng)
                    if fields["sentence"] not in used_sentences:
                        break
                else:
                    raise RuntimeError(
                        f"Ran out of distinct sentences for {intent}; "
                        "add templates or fillers, or lower the counts."
                    )
                used_sentences.add(fields["sentence"])
                scenario, action, _ = INTENTS[intent]
                has_entities = bool(fields["entities"])
                jobs, recordings = [], []
                if split == "train_synthetic":
                    voice = rng.choice(SYNTH_VOICES)
                    file = f"audio-{new_file_id()}.flac"
                    jobs.append(
                        {
                            "folder": "slurp_synth",
                            "voice": voice,
                            "pitch": 50,
                            "speed": rng.randint(175, 205),
                            "gain": 0.1,
                            "clean_file": file,
                            "far_field_file": None,
                            "usrid": None,
                        }
                    )
                    recordings.append(file)
                else:
                    # Every eighth train sentence is read by two speakers, as
                    # many are in SLURP; held-out ones once (corpus size).
                    two = split == "train" and len(entries) % 8 == 0
                    n_readers = 2 if two else 1
                    for speaker in rng.sample(speakers[split], n_readers):
                        file_id = new_file_id()
                        headset = f"audio-{file_id}-headset.flac"
                        far = f"audio-{file_id}.flac"
                        if split == "train" and rng.random() < 0.1:
                            # far-field channel lost, as in SLURP; only in
                            # train, so that both channels are fully evaluable
                            far = None
                        jobs.append(
                            {
                                "folder": "slurp_real",
                                "voice": speaker["voice"],
                                # readings vary a little around the speaker
                                "pitch": speaker["pitch"] + rng.randint(-4, 4),
                                "speed": speaker["speed"] + rng.randint(-8, 8),
                                "gain": speaker["gain"],
                                "clean_file": headset,
                                "far_field_file": far,
                                "usrid": speaker["usrid"],
                            }
                        )
                        recordings.extend(f for f in (headset, far) if f)
                entry = {
                    "slurp_id": slurp_id,
                    "sentence": fields["sentence"],
                    "sentence_annotation": fields["sentence_annotation"],
                    "intent": intent,
                    "action": action,
                    "tokens": fields["tokens"],
                    "scenario": scenario,
                    "recordings": [
                        {
                            "file": f,
                            "wer": 0.0,
                            "ent_wer": 0.0 if has_entities else None,
                            "status": "correct",
                        }
                        for f in recordings
                    ],
                    "entities": fields["entities"],
                    "_jobs": jobs,
                }
                slurp_id += 1
                entries.append(entry)
        rng.shuffle(entries)
        plan[split] = entries
    return plan


def render(plan, out, seed, exe):
    """Synthesises every planned recording into the corpus folders.

    Arguments
    ---------
    plan : dict
        Output of ``plan_corpus``.
    out : str
        Corpus root.
    seed : int
        Seeds each recording's noise and room response (with its file name),
        so audio does not depend on the order of synthesis.
    exe : str
        Path of the espeak-ng executable.

    Returns
    -------
    dict
        split name -> total seconds of audio written.
    """
    jobs = [
        (split, entry["sentence"], job)
        for split, entries in plan.items()
        for entry in entries
        for job in entry["_jobs"]
    ]
    seconds = {split: 0.0 for split in plan}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_wav = os.path.join(tmp, "espeak.wav")
        for split, sentence, job in tqdm(jobs, desc="synthesising"):
            folder = os.path.join(out, job["folder"])
            audio = synthesise(
                exe, sentence, job["voice"], job["pitch"], job["speed"], tmp_wav
            )
            write_flac(
                os.path.join(folder, job["clean_file"]), audio * job["gain"]
            )
            seconds[split] += len(audio) / SAMPLE_RATE
            if job["far_field_file"]:
                np_rng = np.random.default_rng(
                    [seed, hash_name(job["far_field_file"])]
                )
                distant = far_field(audio, np_rng)
                write_flac(os.path.join(folder, job["far_field_file"]), distant)
                seconds[split] += len(distant) / SAMPLE_RATE
    return seconds


def hash_name(name):
    """A stable (process-independent) integer hash of a file name."""
    value = 0
    for char in name.encode("utf-8"):
        value = (value * 131 + char) % (2**61 - 1)
    return value


def write_text(plan, out):
    """Writes the jsonl files and metadata.json of the planned corpus.

    Arguments
    ---------
    plan : dict
        Output of ``plan_corpus``.
    out : str
        Corpus root.
    """
    text_dir = os.path.join(out, "dataset", "slurp")
    metadata = {}
    for split, entries in plan.items():
        path = os.path.join(text_dir, f"{split}.jsonl")
        with open(path, "w", encoding="utf-8") as fout:
            for entry in entries:
                public = {k: v for k, v in entry.items() if k != "_jobs"}
                fout.write(json.dumps(public) + "\n")
        for entry in entries:
            recordings = {}
            for job in entry["_jobs"]:
                for file in (job["clean_file"], job["far_field_file"]):
                    if file:
                        recordings[file] = {
                            "status": "correct",
                            "usrid": job["usrid"],
                            "voice": job["voice"],
                            "split": split,
                        }
            metadata[str(entry["slurp_id"])] = {
                "recordings": recordings,
                "sentence_normalised": entry["sentence"],
                "sentence_original": entry["sentence"],
                "status": "correct",
            }
    with open(
        os.path.join(text_dir, "metadata.json"), "w", encoding="utf-8"
    ) as fout:
        json.dump(metadata, fout)


def parse_args(argv):
    """Parses the command line."""
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(
        description="Synthesise a small corpus in SLURP's on-disk layout "
        "with espeak-ng. Counts are sentences per intent (10 intents).",
    )
    parser.add_argument(
        "--out",
        default=os.path.join(here, "mini_slurp"),
        help="corpus root to create (default: %(default)s)",
    )
    parser.add_argument(
        "--n-train", type=int, default=4,
        help="train.jsonl sentences per intent, each read by 1-2 speakers "
        "on headset and far-field microphones (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--n-synth", type=int, default=2,
        help="train_synthetic.jsonl sentences per intent, one TTS recording "
        "each (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--n-devel", type=int, default=2,
        help="devel.jsonl sentences per intent (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--n-test", type=int, default=2,
        help="test.jsonl sentences per intent (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the dataset/, slurp_real/ and slurp_synth/ folders of "
        "an existing corpus at --out",
    )
    args = parser.parse_args(argv)
    for name in ("n_train", "n_devel", "n_test"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.n_synth < 0:
        parser.error("--n-synth must be at least 0")
    return args


def main(argv=None):
    """Builds the corpus; prints a summary."""
    args = parse_args(argv)
    exe = check_espeak()
    out = os.path.abspath(args.out)
    parts = ["dataset", "slurp_real", "slurp_synth"]
    if any(os.path.exists(os.path.join(out, p)) for p in parts):
        if not args.force:
            sys.exit(
                f"{out} already holds a corpus (dataset/, slurp_real/ or "
                "slurp_synth/); pass --force to replace it."
            )
        for part in parts:
            shutil.rmtree(os.path.join(out, part), ignore_errors=True)
    os.makedirs(os.path.join(out, "dataset", "slurp"))
    os.makedirs(os.path.join(out, "slurp_real"))
    os.makedirs(os.path.join(out, "slurp_synth"))

    rng = random.Random(args.seed)
    plan = plan_corpus(args, rng)
    seconds = render(plan, out, args.seed, exe)
    write_text(plan, out)

    print(f"Wrote a SLURP-layout corpus to {out} (espeak-ng, seed {args.seed})")
    total_files, total_seconds = 0, 0.0
    for split, entries in plan.items():
        n_files = sum(len(e["recordings"]) for e in entries)
        total_files += n_files
        total_seconds += seconds[split]
        print(
            f"  {split:16s} {len(entries):4d} sentences {n_files:5d} "
            f"recordings {seconds[split] / 60:6.1f} min"
        )
    size = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(out)
        for f in files
    )
    print(
        f"  {len(INTENTS)} intents, {total_files} recordings, "
        f"{total_seconds / 60:.1f} min of audio, {size / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
