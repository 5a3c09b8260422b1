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

The ``demo`` preset (``--preset demo``) makes a larger corpus for a real
result: 10 intents with 10 phrasings (templates) each, more slot fillers,
and per intent 80 train, 10 devel and 20 test readings (1,100 headset files,
about 1.9 s each; no far-field files and no train_synthetic unless asked
for). Its counts are readings per intent: a train sentence may be read by up
to 3 speakers (one entry, several recordings, as in SLURP); devel and test
sentences are read once; no sentence is in two splits. Its readers are every
accent x variant pair of ``DEMO_VOICES`` (train 4 x 6, devel 1 x 4, test
3 x 5), with accents *and* variants disjoint between the splits. Per intent,
``--held-out`` (2) phrasings, drawn with the seed, are kept out of train and
devel and read in test only, by a fifth of its readings. Each demo entry has
two fields that real SLURP lacks: ``phrasing`` ("alarm_set/3": the
template's index in ``demo_phrasings(intent)``) and ``unseen_phrasing``
(true for the held-out ones); metadata.json also lists ``phrasings`` (name ->
template) and ``held_out_phrasings``.

``ensure_corpus(out, preset="demo", seed=1234)`` is the way to get a corpus
from code: it returns at once when ``out`` holds a complete corpus of the
same settings (a marker file, ``.corpus_complete.json``, written last), and
otherwise builds it in a temporary sibling folder that is renamed into place
when complete, so that a killed generation is never used.

Usage:
    python make_mini_slurp.py                       # the committed mini corpus
    python make_mini_slurp.py --out /data/slurp_big --n-train 60 --n-synth 40 \
        --n-devel 15 --n-test 15
    python make_mini_slurp.py --preset demo --out /data/slurp_demo --ensure

Requires the ``espeak-ng`` binary (``apt-get install -y espeak-ng``).

Authors
 * cald-brain developers 2026
"""

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import numpy as np
import scipy.signal
import soundfile as sf

from cald_brain.synth import (
    MARKER,
    SAMPLE_RATE,
    EspeakNotFoundError,
    default_workers,
    ensure_folder,
    espeak_version,
    hash_name,
    marker_matches,
    parallel_map,
    read_marker,
    require_espeak,
    synthesise,
)


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

# More phrasings per intent, used by the "demo" preset only (the mini corpus
# draws from the templates above). With them every intent has 10 phrasings;
# a phrasing is named "<intent>/<index>", indexing INTENTS' templates first
# and these after them.
DEMO_TEMPLATES = {
    "alarm_set": [
        "get me up at {time}",
        "i want to wake up at {time} {date}",
        "make an alarm for {time}",
        "can you set an alarm for {weekday} at {time}",
    ],
    "alarm_remove": [
        "turn off my {time} alarm",
        "get rid of the alarm for {time}",
        "stop the alarm for {date}",
        "i do not need the {time} alarm anymore",
    ],
    "weather_query": [
        "how is the weather {date}",
        "do i need an umbrella in {place_name}",
        "what will the weather be like on {weekday}",
        "tell me the forecast for {place_name}",
    ],
    "play_music": [
        "start playing {artist_name}",
        "i would like to hear some {music_genre}",
        "can you play {song_name} for me",
        "shuffle my {playlist_name} playlist",
    ],
    "iot_hue_lightoff": [
        "shut off the lights in the {house_place}",
        "turn the {house_place} lights off",
        "no more lights in the {house_place}",
        "switch the lights off",
        "darken the {house_place}",
    ],
    "iot_hue_lighton": [
        "switch the lights on",
        "brighten up the {house_place}",
        "put the lights on in the {house_place}",
        "light up the {house_place}",
        "it is too dark in the {house_place}",
    ],
    "calendar_query": [
        "what meetings do i have on {weekday}",
        "check my calendar for {date}",
        "is anything planned for {date}",
        "what time is my {event_name}",
        "show me my appointments {date}",
    ],
    "general_joke": [
        "got any {joke_type} jokes",
        "can you tell me something {joke_type}",
    ],
    "news_query": [
        "what is happening in the world",
        "tell me the {news_topic} headlines",
        "what does {media_type} say {date}",
        "catch me up on {news_topic}",
        "any updates on {news_topic}",
    ],
    "email_query": [
        "show me emails from {person}",
        "is there any mail from {person}",
        "what is in my inbox",
    ],
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

# More fillers per slot for the "demo" preset (the mini corpus draws from
# SLOTS alone): its 1,100 readings need more distinct sentences.
DEMO_FILLERS = {
    "time": ["seven thirty", "five fifteen", "midnight"],
    "date": ["the day after tomorrow", "tomorrow morning", "this friday"],
    "weekday": ["saturday"],
    "place_name": ["rome", "sydney", "dublin"],
    "weather_descriptor": ["foggy", "stormy", "hot"],
    "music_genre": ["blues", "hip hop", "metal"],
    "song_name": ["hello", "thriller", "yesterday"],
    "artist_name": ["taylor swift", "coldplay", "drake"],
    "playlist_name": ["road trip", "study", "relax"],
    "house_place": ["dining room", "basement"],
    "event_name": ["haircut", "book club", "piano lesson"],
    "timeofday": ["night", "lunchtime"],
    "joke_type": [
        "knock knock",
        "dad",
        "clean",
        "animal",
        "christmas",
        "pirate",
    ],
    "news_topic": ["world", "health", "entertainment", "local"],
    "media_type": ["the guardian", "fox news", "npr"],
    "person": ["james", "anna", "tom"],
}
DEMO_SLOTS = {
    slot: (entity_type, fillers + DEMO_FILLERS.get(slot, []))
    for slot, (entity_type, fillers) in SLOTS.items()
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
# Words that only DEMO_TEMPLATES use (none of them occurs in the mini corpus).
LEXICON.update(
    {
        "anymore": ("anymore", "RB"),
        "after": ("after", "IN"),
        "anything": ("anything", "NN"),
        "appointments": ("appointment", "NNS"),
        "brighten": ("brighten", "VB"),
        "can": ("can", "MD"),
        "catch": ("catch", "VB"),
        "darken": ("darken", "VB"),
        "does": ("do", "VBZ"),
        "get": ("get", "VB"),
        "got": ("get", "VBD"),
        "happening": ("happen", "VBG"),
        "like": ("like", "IN"),
        "more": ("more", "JJR"),
        "no": ("no", "DT"),
        "not": ("not", "RB"),
        "of": ("of", "IN"),
        "planned": ("plan", "VBN"),
        "playing": ("play", "VBG"),
        "rid": ("rid", "VBN"),
        "show": ("show", "VB"),
        "shuffle": ("shuffle", "VB"),
        "shut": ("shut", "VB"),
        "start": ("start", "VB"),
        "stop": ("stop", "VB"),
        "there": ("there", "EX"),
        "too": ("too", "RB"),
        "updates": ("update", "NNS"),
        "would": ("would", "MD"),
    }
)
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

# The "demo" preset's readers: every accent x variant pair of a split is one
# speaker. Accents *and* variants are disjoint between the three splits, so
# devel and test are new voices in a dialect never heard in training.
DEMO_VOICES = {
    "train": (
        ["en-us", "en-gb", "en-gb-scotland", "en-029"],
        ["m1", "m3", "m5", "f1", "f3", "klatt"],
    ),
    "devel": (["en-gb-x-gbclan"], ["m2", "m7", "f2", "klatt2"]),
    "test": (
        ["en-us-nyc", "en-gb-x-rp", "en-gb-x-gbcwmd"],
        ["m4", "m6", "f4", "f5", "klatt3"],
    ),
}
# Its text-to-speech engine (train_synthetic, when asked for) speaks with the
# plain train accents only.
DEMO_SYNTH_VOICES = DEMO_VOICES["train"][0]
# Words per minute of the demo's readers: slower than the mini corpus, for
# clips of about 1.9 s on average.
DEMO_SPEED = (140, 175)
# At most this many demo speakers read the same train sentence.
DEMO_MAX_READINGS = 3

# Presets: sentences per intent and the kind of corpus. ``held_out`` is the
# number of phrasings per intent kept out of train and devel (read in test
# only); ``far_field`` whether real readings also get a far-field file.
PRESETS = {
    "mini": {
        "n_train": 4,
        "n_devel": 2,
        "n_test": 2,
        "n_synth": 2,
        "held_out": 0,
        "far_field": True,
    },
    "demo": {
        "n_train": 80,
        "n_devel": 10,
        "n_test": 20,
        "n_synth": 0,
        "held_out": 2,
        "far_field": False,
    },
}


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
        speakers.append(_speaker(split, i, accent, variant, (185, 225), rng))
    return speakers


def make_demo_speakers(split, rng):
    """Returns the reader pool of a split of the "demo" preset.

    One speaker per accent x variant pair of ``DEMO_VOICES[split]``, with its
    own pitch, speed and level (see ``make_speakers``).
    """
    accents, variants = DEMO_VOICES[split]
    pairs = [(a, v) for a in accents for v in variants]
    return [
        _speaker(split, i, accent, variant, DEMO_SPEED, rng)
        for i, (accent, variant) in enumerate(pairs)
    ]


def _speaker(split, index, accent, variant, speeds, rng):
    """One reader: SLURP-style usrid, espeak-ng voice, pitch, speed, gain."""
    offset = {"train": 0, "devel": 3, "test": 5}[split]
    if variant in FEMALE_VARIANTS:
        gender = "F"
    elif variant.startswith("klatt"):
        gender = "UNK"
    else:
        gender = "M"
    return {
        # SLURP's usrid pattern: Gender, native language, number.
        "usrid": f"{gender}E-{100 * (1 + offset) + index:03d}",
        "voice": f"{accent}+{variant}",
        "pitch": rng.randint(30, 70),
        "speed": rng.randint(*speeds),
        # Close-talk peak level, -24 to -18 dBFS: real recordings are not
        # normalised, and a low level keeps the FLAC files small.
        "gain": rng.uniform(0.06, 0.12),
    }


# --------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------


def draw_decoration(rng):
    """Optional words around a command: (prefix, suffix), either may be ""."""
    prefix = rng.choice(PREFIXES) if rng.random() < P_PREFIX else ""
    suffix = rng.choice(SUFFIXES) if rng.random() < P_SUFFIX else ""
    if prefix == suffix == "please":
        suffix = ""
    return prefix, suffix


def make_sentence(intent, rng, template=None, decoration=None, slots=None):
    """Fills a random template of an intent, with SLURP's annotations.

    Arguments
    ---------
    intent : str
        A key of ``INTENTS``.
    rng : random.Random
        Source of the template, fillers, prefix and suffix.
    template : str, optional
        The template to fill; by default one of ``INTENTS[intent]`` at random.
    decoration : tuple of str, optional
        (prefix, suffix) words around the command; by default drawn with
        ``draw_decoration``.
    slots : dict, optional
        slot -> (entity type, fillers); by default ``SLOTS``.

    Returns
    -------
    dict
        sentence, sentence_annotation, tokens, entities (SLURP fields).
    """
    if template is None:
        template = rng.choice(INTENTS[intent][2])
    if decoration is None:
        decoration = draw_decoration(rng)
    prefix, suffix = decoration
    words, annotation, entities = [], [], []
    for part in f"{prefix} {template} {suffix}".split():
        if part.startswith("{"):
            entity_type, fillers = (slots or SLOTS)[part.strip("{}")]
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


def demo_phrasings(intent):
    """The phrasings (templates) of an intent in the "demo" preset.

    Phrasing ``k`` of an intent is named ``"<intent>/<k>"``: ``INTENTS``'
    templates come first, then ``DEMO_TEMPLATES``.
    """
    return INTENTS[intent][2] + DEMO_TEMPLATES[intent]


def plan_corpus(args, rng):
    """Decides every entry: split, intent, sentence, readers and file names.

    Arguments
    ---------
    args : argparse.Namespace
        ``preset`` ("mini" or "demo"), counts per intent (n_train, n_devel,
        n_test, n_synth), ``held_out`` (phrasings per intent read only in
        test; demo only) and ``far_field`` (whether real readings get a
        far-field file too).
    rng : random.Random
        The corpus' random source (seeded).

    Returns
    -------
    dict
        split name -> list of entries; each entry has the SLURP fields (and,
        in the demo preset, ``phrasing`` and ``unseen_phrasing``) and a
        private "_jobs" list of what to synthesise. With the demo preset the
        dict also holds "_held_out": intent -> held-out phrasing indices.
    """
    demo = args.preset == "demo"
    make = make_demo_speakers if demo else make_speakers
    speakers = {s: make(s, rng) for s in ("train", "devel", "test")}
    counts = {
        "train": args.n_train,
        "devel": args.n_devel,
        "test": args.n_test,
        "train_synthetic": args.n_synth,
    }
    held_out = {}
    if demo:
        for intent in INTENTS:
            n_phrasings = len(demo_phrasings(intent))
            held_out[intent] = sorted(
                rng.sample(range(n_phrasings), args.held_out)
            )
    used_sentences, used_ids = set(), set()
    next_id = [1000]

    def new_file_id():
        # Real SLURP audio ids look like unix times, some negative.
        while True:
            value = rng.randint(1_434_000_000, 1_510_000_000)
            if rng.random() < 0.1:
                value = -value
            if value not in used_ids:
                used_ids.add(value)
                return value

    def synth_job(voices):
        voice = rng.choice(voices)
        file = f"audio-{new_file_id()}.flac"
        return {
            "folder": "slurp_synth",
            "voice": voice,
            "pitch": 50,
            "speed": rng.randint(175, 205),
            "gain": 0.1,
            "clean_file": file,
            "far_field_file": None,
            "usrid": None,
        }

    def real_job(split, speaker):
        file_id = new_file_id()
        headset = f"audio-{file_id}-headset.flac"
        far = f"audio-{file_id}.flac" if args.far_field else None
        if far and split == "train" and rng.random() < 0.1:
            # far-field channel lost, as in SLURP; only in train, so that
            # both channels are fully evaluable
            far = None
        return {
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

    def new_record(intent, fields, jobs, phrasing=None):
        record = {
            "slurp_id": next_id[0],
            "intent": intent,
            "fields": fields,
            "jobs": jobs,
            "phrasing": phrasing,
        }
        next_id[0] += 1
        return record

    plan = {}
    for split, per_intent in counts.items():
        records = []
        if not demo:
            for intent in INTENTS:
                for _ in range(per_intent):
                    fields = _mini_sentence(intent, used_sentences, rng)
                    used_sentences.add(fields["sentence"])
                    if split == "train_synthetic":
                        jobs = [synth_job(SYNTH_VOICES)]
                    else:
                        # Every eighth train sentence is read by two
                        # speakers, as many are in SLURP; held-out ones once
                        # (corpus size).
                        two = split == "train" and len(records) % 8 == 0
                        readers = rng.sample(speakers[split], 2 if two else 1)
                        jobs = [real_job(split, s) for s in readers]
                    records.append(new_record(intent, fields, jobs))
        else:
            # Counts are readings. A train sentence may be read by up to
            # DEMO_MAX_READINGS speakers (one entry, several recordings, as in
            # SLURP), so that phrasings with few forms are not pushed to
            # their rare "olly ... thanks" forms; devel and test sentences are
            # read once. No sentence is in two splits.
            cap = DEMO_MAX_READINGS if split == "train" else 1
            by_sentence = {}

            def usable(sentence):
                if sentence in used_sentences:
                    return False
                record = by_sentence.get(sentence)
                return record is None or len(record["jobs"]) < cap

            for intent in INTENTS:
                n_phrasings = len(demo_phrasings(intent))
                schedule = phrasing_schedule(
                    split, per_intent, n_phrasings, held_out[intent], rng
                )
                for k in range(per_intent):
                    phrasing, fields = _demo_sentence(
                        intent, schedule[k], held_out[intent], usable, rng
                    )
                    record = by_sentence.get(fields["sentence"])
                    if split == "train_synthetic":
                        job = synth_job(DEMO_SYNTH_VOICES)
                    else:
                        reading = (
                            {j["usrid"] for j in record["jobs"]}
                            if record
                            else ()
                        )
                        free = [
                            s
                            for s in speakers[split]
                            if s["usrid"] not in reading
                        ]
                        job = real_job(split, rng.choice(free))
                    if record is None:
                        record = new_record(intent, fields, [job], phrasing)
                        by_sentence[fields["sentence"]] = record
                        records.append(record)
                    else:
                        record["jobs"].append(job)
            used_sentences.update(by_sentence)
        entries = [_entry(record, held_out) for record in records]
        rng.shuffle(entries)
        plan[split] = entries
    if demo:
        plan["_held_out"] = held_out
    return plan


def _entry(record, held_out):
    """The jsonl entry (SLURP fields, and "_jobs") of a planned sentence."""
    intent, fields, jobs = record["intent"], record["fields"], record["jobs"]
    scenario, action, _ = INTENTS[intent]
    has_entities = bool(fields["entities"])
    recordings = [
        file
        for job in jobs
        for file in (job["clean_file"], job["far_field_file"])
        if file
    ]
    entry = {
        "slurp_id": record["slurp_id"],
        "sentence": fields["sentence"],
        "sentence_annotation": fields["sentence_annotation"],
        "intent": intent,
        "action": action,
        "tokens": fields["tokens"],
        "scenario": scenario,
        "recordings": [
            {
                "file": file,
                "wer": 0.0,
                "ent_wer": 0.0 if has_entities else None,
                "status": "correct",
            }
            for file in recordings
        ],
        "entities": fields["entities"],
    }
    if record["phrasing"] is not None:
        # Not in real SLURP: which template the sentence fills, and whether
        # that template is missing from train and devel.
        entry["phrasing"] = f"{intent}/{record['phrasing']}"
        entry["unseen_phrasing"] = record["phrasing"] in held_out[intent]
    entry["_jobs"] = jobs
    return entry


def _mini_sentence(intent, used, rng):
    """A sentence of any template of an intent, not in ``used``."""
    for _attempt in range(1000):
        fields = make_sentence(intent, rng)
        if fields["sentence"] not in used:
            return fields
    raise RuntimeError(
        f"Ran out of distinct sentences for {intent}; "
        "add templates or fillers, or lower the counts."
    )


def phrasing_schedule(split, n, n_phrasings, held_out, rng):
    """Which phrasing each of the ``n`` sentences of an intent should fill.

    Train, devel and train_synthetic cycle through the phrasings not held
    out, in a random order, so that each is used about equally. Test does the
    same but gives the held-out phrasings their share,
    ``round(n * len(held_out) / n_phrasings)`` sentences (at least one when
    ``n >= 2``): about 20 % with 2 of 10 phrasings held out.

    Arguments
    ---------
    split : str
        "train", "devel", "test" or "train_synthetic".
    n : int
        Sentences of the intent in the split.
    n_phrasings : int
        Phrasings of the intent.
    held_out : list of int
        Phrasings read in test only.
    rng : random.Random
        Source of the cycling order.

    Returns
    -------
    list of int
        ``n`` phrasing indices.
    """
    seen = [p for p in range(n_phrasings) if p not in held_out]
    n_unseen = 0
    if split == "test" and held_out:
        n_unseen = round(n * len(held_out) / n_phrasings)
        if n_unseen == 0 and n >= 2:
            n_unseen = 1

    def cycle(pool, k):
        order = rng.sample(pool, len(pool))
        return [order[i % len(order)] for i in range(k)]

    return cycle(list(held_out), n_unseen) + cycle(seen, n - n_unseen)


def _demo_sentence(intent, phrasing, held_out, usable, rng):
    """A usable sentence of the scheduled phrasing, or of a phrasing like it.

    The prefix and suffix words are drawn first, with their usual
    probabilities, and kept while fillers are drawn: when ``phrasing`` gives
    nothing usable in a few draws (a phrasing without slots has a single
    form per decoration) the sentence goes to another phrasing of the same
    pool (held out, or not held out). Only when the whole pool is used up
    with that decoration are decorations drawn again. So sentences that must
    differ from those of other splits do not pile up "olly ... thanks"
    forms.

    Arguments
    ---------
    intent : str
        A key of ``INTENTS``.
    phrasing : int
        The scheduled phrasing (index into ``demo_phrasings(intent)``).
    held_out : list of int
        The intent's phrasings read in test only.
    usable : callable
        sentence -> whether it may be used.
    rng : random.Random
        Source of the sentences.

    Returns
    -------
    phrasing : int
        The phrasing used.
    fields : dict
        Output of ``make_sentence``.
    """
    templates = demo_phrasings(intent)
    unseen = phrasing in held_out
    pool = [
        p
        for p in range(len(templates))
        if p != phrasing and (p in held_out) == unseen
    ]
    rng.shuffle(pool)
    decoration = draw_decoration(rng)
    for attempts, fixed in ((50, decoration), (2000, None)):
        for candidate in [phrasing] + pool:
            for _attempt in range(attempts):
                fields = make_sentence(
                    intent, rng, templates[candidate], fixed, DEMO_SLOTS
                )
                if usable(fields["sentence"]):
                    return candidate, fields
    raise RuntimeError(
        f"Ran out of distinct sentences for {intent}; "
        "add templates or fillers, or lower the counts."
    )


def render(plan, out, seed, exe, workers=1, progress=True):
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
    workers : int
        Processes that synthesise; 1 synthesises in this process. The files
        do not depend on it.
    progress : bool
        Whether to show a progress bar.

    Returns
    -------
    dict
        split name -> total seconds of audio written.
    """
    seconds = {split: 0.0 for split in plan if not split.startswith("_")}
    with tempfile.TemporaryDirectory() as tmp:
        tasks = [
            (out, seed, exe, tmp, split, entry["sentence"], job)
            for split in seconds
            for entry in plan[split]
            for job in entry["_jobs"]
        ]
        for split, duration in parallel_map(_render_one, tasks, workers, progress=progress):
            seconds[split] += duration
    return seconds


def _render_one(task):
    """Synthesises and writes one reading (headset and far-field files).

    Returns (split, seconds of audio written).
    """
    out, seed, exe, tmp, split, sentence, job = task
    tmp_wav = os.path.join(tmp, f"espeak-{os.getpid()}.wav")
    folder = os.path.join(out, job["folder"])
    audio = synthesise(
        exe, sentence, job["voice"], job["pitch"], job["speed"], tmp_wav
    )
    write_flac(os.path.join(folder, job["clean_file"]), audio * job["gain"])
    seconds = len(audio) / SAMPLE_RATE
    if job["far_field_file"]:
        np_rng = np.random.default_rng([seed, hash_name(job["far_field_file"])])
        distant = far_field(audio, np_rng)
        write_flac(os.path.join(folder, job["far_field_file"]), distant)
        seconds += len(distant) / SAMPLE_RATE
    return split, seconds


def write_text(plan, out):
    """Writes the jsonl files and metadata.json of the planned corpus.

    With the demo preset, metadata.json also holds two keys that are not
    SLURP ids: ``phrasings`` (phrasing name -> template) and
    ``held_out_phrasings`` (the sorted names of the phrasings read in test
    only).

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
        if split.startswith("_"):
            continue
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
    if "_held_out" in plan:
        metadata["phrasings"] = {
            f"{intent}/{k}": template
            for intent in INTENTS
            for k, template in enumerate(demo_phrasings(intent))
        }
        metadata["held_out_phrasings"] = [
            f"{intent}/{k}"
            for intent, held in plan["_held_out"].items()
            for k in held
        ]
    with open(
        os.path.join(text_dir, "metadata.json"), "w", encoding="utf-8"
    ) as fout:
        json.dump(metadata, fout)


# --------------------------------------------------------------------------
# Building a corpus
# --------------------------------------------------------------------------

# Written last into a corpus that ensure_corpus built; its "settings" say
# which corpus it is.
# Bumped whenever the same settings would give a different corpus, so that
# ensure_corpus rebuilds corpora made by an older generator.
GENERATOR_VERSION = 1
GENERATOR = "make_mini_slurp.py"
CORPUS_PARTS = ("dataset", "slurp_real", "slurp_synth")
REQUIRED = tuple(
    os.path.join("dataset", "slurp", name)
    for name in (
        "train.jsonl",
        "devel.jsonl",
        "test.jsonl",
        "train_synthetic.jsonl",
        "metadata.json",
    )
)
def corpus_settings(
    preset="mini",
    seed=1234,
    n_train=None,
    n_devel=None,
    n_test=None,
    n_synth=None,
    held_out=None,
    far_field=None,
):
    """The full description of a corpus: a preset, some values overridden.

    Arguments
    ---------
    preset : str
        A key of ``PRESETS``: "mini" (the committed corpus) or "demo".
    seed : int
        The corpus' random seed.
    n_train, n_devel, n_test, n_synth : int, optional
        Sentences per intent of train, devel, test and train_synthetic;
        None keeps the preset's count.
    held_out : int, optional
        Phrasings per intent read in test only (demo preset; the mini preset
        holds none out).
    far_field : bool, optional
        Whether real readings also get a far-field file.

    Returns
    -------
    dict
        preset, seed, n_train, n_devel, n_test, n_synth, held_out, far_field.

    Raises
    ------
    ValueError
        For an unknown preset or a count out of range.
    """
    if preset not in PRESETS:
        raise ValueError(
            f"preset must be one of {sorted(PRESETS)}, got {preset!r}"
        )
    overrides = {
        "n_train": n_train,
        "n_devel": n_devel,
        "n_test": n_test,
        "n_synth": n_synth,
        "held_out": held_out,
        "far_field": far_field,
    }
    settings = {"preset": preset, "seed": int(seed), **PRESETS[preset]}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("n_train", "n_devel", "n_test", "n_synth", "held_out"):
        settings[key] = int(settings[key])
    settings["far_field"] = bool(settings["far_field"])
    for key in ("n_train", "n_devel", "n_test"):
        if settings[key] < 1:
            raise ValueError(f"{key} must be at least 1")
    if settings["n_synth"] < 0:
        raise ValueError("n_synth must be at least 0")
    if preset == "mini":
        if settings["held_out"]:
            raise ValueError("the mini preset holds no phrasings out")
    else:
        fewest = min(len(demo_phrasings(intent)) for intent in INTENTS)
        if not 0 <= settings["held_out"] < fewest:
            raise ValueError(
                f"held_out must be between 0 and {fewest - 1} "
                f"(phrasings per intent: {fewest})"
            )
    return settings


def build_corpus(out, settings, exe, workers=1, progress=True):
    """Writes a whole corpus into ``out`` (which must not hold one yet).

    Arguments
    ---------
    out : str
        Corpus root; created if needed.
    settings : dict
        Output of ``corpus_settings``.
    exe : str
        Path of the espeak-ng executable.
    workers : int
        Synthesis processes (the output does not depend on it).
    progress : bool
        Whether to show a progress bar.

    Returns
    -------
    dict
        ``splits`` (split -> sentences, recordings, seconds), ``recordings``,
        ``seconds`` (audio), ``mib`` (size on disk), ``unseen_test``
        (test recordings of held-out phrasings) and ``elapsed_s``.
    """
    start = time.perf_counter()
    os.makedirs(os.path.join(out, "dataset", "slurp"), exist_ok=True)
    for part in CORPUS_PARTS[1:]:
        os.makedirs(os.path.join(out, part), exist_ok=True)
    rng = random.Random(settings["seed"])
    plan = plan_corpus(argparse.Namespace(**settings), rng)
    seconds = render(plan, out, settings["seed"], exe, workers, progress)
    write_text(plan, out)
    splits = {
        split: {
            "sentences": len(entries),
            "recordings": sum(len(e["recordings"]) for e in entries),
            "seconds": round(seconds[split], 3),
        }
        for split, entries in plan.items()
        if not split.startswith("_")
    }
    size = sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(out)
        for f in files
    )
    return {
        "splits": splits,
        "recordings": sum(s["recordings"] for s in splits.values()),
        "seconds": round(sum(s["seconds"] for s in splits.values()), 3),
        "mib": round(size / 2**20, 2),
        "unseen_test": sum(
            len(e["recordings"])
            for e in plan["test"]
            if e.get("unseen_phrasing")
        ),
        "elapsed_s": round(time.perf_counter() - start, 1),
    }


def ensure_corpus(
    out,
    preset="demo",
    seed=1234,
    *,
    n_train=None,
    n_devel=None,
    n_test=None,
    n_synth=None,
    held_out=None,
    far_field=None,
    workers=None,
    progress=True,
):
    """Makes sure ``out`` holds a complete corpus of these settings.

    If ``out`` holds a corpus that this function completed with the same
    settings (its marker file, written last, says so), nothing is done.
    Otherwise the corpus is built into a temporary sibling folder, the marker
    is written, and the folder is renamed to ``out``, so a generation that
    was killed is never taken for a corpus (its leftover temporary folder is
    removed by a later call). An existing ``out`` is replaced only if it
    holds nothing but a corpus' parts (dataset/, slurp_real/, slurp_synth/,
    the marker): it may be an unfinished or older corpus, never other files.

    Arguments
    ---------
    out : str or path-like
        Corpus root.
    preset : str
        "demo" (default) or "mini"; see ``PRESETS``.
    seed : int
        The corpus' random seed.
    n_train, n_devel, n_test, n_synth : int, optional
        Sentences per intent, overriding the preset's counts.
    held_out : int, optional
        Phrasings per intent read in test only (demo preset).
    far_field : bool, optional
        Whether real readings also get a far-field file.
    workers : int, optional
        Synthesis processes; default 2 (1 on a single CPU). The corpus does
        not depend on it.
    progress : bool
        Whether to show a progress bar while synthesising.

    Returns
    -------
    str
        ``out`` as an absolute path.

    Raises
    ------
    EspeakNotFoundError
        When the corpus must be built and espeak-ng is not installed.
    FileExistsError
        When ``out`` exists and holds something other than a corpus.
    ValueError
        For settings out of range (see ``corpus_settings``).
    """
    settings = corpus_settings(
        preset, seed, n_train, n_devel, n_test, n_synth, held_out, far_field
    )
    out = os.path.abspath(os.fspath(out))
    if is_complete(out, settings):
        return out
    exe = require_espeak(f"Building the {preset} SLURP-layout corpus at {out}")
    return ensure_folder(
        out,
        GENERATOR,
        GENERATOR_VERSION,
        settings,
        lambda tmp: build_corpus(
            tmp, settings, exe, workers or default_workers(), progress
        ),
        CORPUS_PARTS,
        REQUIRED,
        extra={"espeak_ng": espeak_version(exe)},
    )


def is_complete(out, settings):
    """Whether ``out`` holds a complete corpus made with these settings."""
    return marker_matches(out, GENERATOR, GENERATOR_VERSION, settings, REQUIRED)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv):
    """Parses the command line."""
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(
        description="Synthesise a small corpus in SLURP's on-disk layout "
        "with espeak-ng. Counts are sentences per intent (10 intents); by "
        "default those of the preset.",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="mini",
        help="mini: the committed corpus (4/2/2 sentences per intent, 2 "
        "synthetic, both microphones); demo: 80/10/20 per intent, headset "
        "only, 10 phrasings per intent of which --held-out are read in test "
        "only, accents and variants disjoint between splits "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--out",
        default=None,
        help="corpus root to create (default for the mini preset: "
        f"{os.path.join(here, 'mini_slurp')}; required for the others)",
    )
    parser.add_argument(
        "--n-train", type=int, default=None,
        help="train.jsonl sentences per intent, each read by 1-2 speakers "
        "(mini: 4); demo preset: train readings per intent (80)",
    )  # fmt: skip
    parser.add_argument(
        "--n-synth", type=int, default=None,
        help="train_synthetic.jsonl sentences per intent, one TTS recording "
        "each (mini: 2, demo: 0)",
    )  # fmt: skip
    parser.add_argument(
        "--n-devel", type=int, default=None,
        help="devel.jsonl sentences per intent, one reading each (mini: 2, "
        "demo: 10)",
    )  # fmt: skip
    parser.add_argument(
        "--n-test", type=int, default=None,
        help="test.jsonl sentences per intent, one reading each (mini: 2, "
        "demo: 20)",
    )  # fmt: skip
    parser.add_argument(
        "--held-out", type=int, default=None,
        help="demo preset: phrasings per intent kept out of train and devel "
        "and read in test only (default: 2)",
    )  # fmt: skip
    parser.add_argument(
        "--far-field", action=argparse.BooleanOptionalAction, default=None,
        help="whether real readings also get a far-field recording "
        "(default: yes for mini, no for demo)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument(
        "--workers", type=int, default=None,
        help="synthesis processes; the output does not depend on it "
        f"(default: {default_workers()})",
    )  # fmt: skip
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the dataset/, slurp_real/ and slurp_synth/ folders of "
        "an existing corpus at --out",
    )
    parser.add_argument(
        "--ensure",
        action="store_true",
        help="build as ensure_corpus() does: nothing to do if --out holds "
        "this corpus complete, else build into a temporary folder, write a "
        "completion marker and rename it to --out",
    )
    args = parser.parse_args(argv)
    try:
        args.settings = corpus_settings(
            args.preset, args.seed, args.n_train, args.n_devel, args.n_test,
            args.n_synth, args.held_out, args.far_field,
        )  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    if args.out is None:
        if args.preset != "mini":
            parser.error(f"--out is required with --preset {args.preset}")
        args.out = os.path.join(here, "mini_slurp")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    return args


def print_summary(out, settings, summary):
    """Prints what a corpus holds."""
    print(
        f"Wrote a SLURP-layout corpus to {out} (espeak-ng, preset "
        f"{settings['preset']}, seed {settings['seed']})"
    )
    for split, stats in summary["splits"].items():
        print(
            f"  {split:16s} {stats['sentences']:4d} sentences "
            f"{stats['recordings']:5d} recordings "
            f"{stats['seconds'] / 60:6.1f} min"
        )
    print(
        f"  {len(INTENTS)} intents, {summary['recordings']} recordings, "
        f"{summary['seconds'] / 60:.1f} min of audio, {summary['mib']:.2f} MiB"
    )
    if settings["held_out"]:
        print(
            f"  {summary['unseen_test']} test recordings of phrasings held "
            f"out of train and devel ({settings['held_out']} per intent)"
        )
    print(f"  built in {summary['elapsed_s']:.1f} s")


def main(argv=None):
    """Builds the corpus; prints a summary."""
    args = parse_args(argv)
    settings = args.settings
    out = os.path.abspath(args.out)
    if args.ensure:
        if is_complete(out, settings):
            print(f"{out} already holds this corpus; nothing to do.")
            return
        try:
            ensure_corpus(out, workers=args.workers, **settings)
        except EspeakNotFoundError:
            check_espeak()  # exits with the installation hint
            raise
        except FileExistsError as err:
            sys.exit(str(err))
        print_summary(out, settings, read_marker(out)["summary"])
        return
    exe = check_espeak()
    if any(os.path.exists(os.path.join(out, p)) for p in CORPUS_PARTS):
        if not args.force:
            sys.exit(
                f"{out} already holds a corpus (dataset/, slurp_real/ or "
                "slurp_synth/); pass --force to replace it."
            )
        for part in CORPUS_PARTS:
            shutil.rmtree(os.path.join(out, part), ignore_errors=True)
        # a marker would describe the replaced corpus
        if os.path.exists(os.path.join(out, MARKER)):
            os.remove(os.path.join(out, MARKER))
    workers = args.workers or default_workers()
    summary = build_corpus(out, settings, exe, workers)
    print_summary(out, settings, summary)


if __name__ == "__main__":
    main()
