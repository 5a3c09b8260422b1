#!/usr/bin/env python3
"""Synthesise a small corpus laid out exactly like TED-LIUM release 3, with espeak-ng.

TED-LIUM 3 (Hernandez et al., 2018) ships each talk as one long 16 kHz
NIST SPHERE file and one STM transcript, per split::

    TEDLIUM_release-3/legacy/{train,dev,test}/sph/<talk>.sph
    TEDLIUM_release-3/legacy/{train,dev,test}/stm/<talk>.stm
    TEDLIUM_release-3/speaker-adaptation/{train,dev,test}/{sph,stm}/ ...

An STM line is ``<talk> <channel> <speaker> <start> <end> <labels> <text>``
(times in seconds), for example::

    JaneMoss_2014 1 JaneMoss_2014 12.04 16.87 <o,f0,female> it 's a picture of the ocean
    JaneMoss_2014 1 inter_segment_gap 16.87 18.10 <o,,unknown> ignore_time_segment_in_scoring

with TED-LIUM's own text conventions: lower case, contractions split before
the apostrophe (``it 's``, ``don 't``), ``<unk>`` for a word outside the
transcribers' lexicon, and now and then a digit, a ``%`` or an ``&`` that
the recipe's normaliser spells out. This script writes the same layout with
the same conventions, so that ``tedlium_prepare.py`` (and any tool written
for the real corpus) runs unchanged on it.

Content: talk-like sentences from templates with slot fillers (topics,
places, numbers, years ...). A talk is one speaker: an espeak-ng voice
(accent + variant, pitch, speed); each STM segment is one to six sentences
(one or two in the ``mini`` preset), separated by pauses; between some segments an "applause" burst is marked
``ignore_time_segment_in_scoring`` (speaker ``inter_segment_gap``), as TED-LIUM
marks non-speech. The whole talk has a low room-noise floor. The audio says
what the normalised transcript says (numbers as the normaliser spells them,
``<unk>`` as a made-up name), so the transcripts are exact.

Splits: train, dev and test talks are given by disjoint voices (accents and
variants), so dev and test speakers are unseen in training; no sentence is in
two splits. The speaker-adaptation layout (``--layout speaker-adaptation``)
holds the same talks under that folder instead.

Presets (``--preset``):

* ``mini`` (the tests): 2 train talks of ~25 s, 1 dev and 1 test talk of ~15 s;
* ``demo`` (the offline main job): 10 train talks of ~4 minutes, 2 dev talks of
  ~2 minutes, 2 test talks of ~3 minutes and ~11 minutes (the long-form talk).

``ensure_corpus(out, preset="demo")`` builds it once (a completion marker is
written last; a killed build is never used) and returns the
``TEDLIUM_release-3`` root.

Usage::

    python make_mini_tedlium.py --preset demo --out /data/tedlium_demo

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
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.synth import (  # noqa: E402
    SAMPLE_RATE,
    default_workers,
    ensure_folder,
    espeak_version,
    hash_name,
    marker_matches,
    parallel_map,
    require_espeak,
    synthesise,
)
from tedlium_prepare import normalize_text  # noqa: E402

GENERATOR = "make_mini_tedlium.py"
GENERATOR_VERSION = 2
ROOT = "TEDLIUM_release-3"
SPLITS = ("train", "dev", "test")
LAYOUTS = ("legacy", "speaker-adaptation")

# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------

# Slot fillers. Words the normaliser changes (digits, %, &, hyphens) appear in
# the raw transcript; what is spoken is the normalised text.
FILLERS = {
    "topic": [
        "the ocean", "climate change", "our cities", "the human brain", "clean water",
        "public health", "the internet", "music", "education", "the future of work",
        "artificial intelligence", "old trees", "the night sky", "small farms", "language",
        "sleep", "happiness", "the deep sea", "solar power", "our food",
    ],
    "person": [
        "my mother", "my father", "a young teacher", "an old friend", "my grandmother",
        "a doctor", "a farmer", "my daughter", "a scientist", "my neighbour", "a student",
    ],
    "place": [
        "london", "kenya", "a small village", "new york", "the desert", "india", "brazil",
        "the mountains", "a hospital", "our lab", "the city", "a school",
    ],
    "thing": [
        "a map", "a tiny robot", "the first photograph", "a piece of paper", "a coral reef",
        "an old car", "a simple machine", "the stars", "a cell", "a bridge", "a garden",
    ],
    "plural": [
        "children", "people", "birds", "doctors", "teachers", "cities", "computers",
        "farmers", "fish", "families", "companies", "students",
    ],
    "adj": [
        "amazing", "strange", "beautiful", "important", "difficult", "simple", "surprising",
        "hard", "wonderful", "possible",
    ],
    "verb": ["learn", "grow", "change", "move", "listen", "work", "share", "build", "sleep", "talk"],
    "number": ["two", "three", "four", "five", "ten", "twenty", "a hundred", "a thousand", "12", "40"],
    "year": ["1998", "2004", "2009", "2012", "1985", "2016"],
    "percent": ["10%", "30%", "50%", "80%", "95%"],
    "age": ["six", "ten", "twelve", "fifteen", "eighteen", "20"],
    "unk": ["<unk>"],
}  # fmt: skip

TEMPLATES = [
    "today i want to talk about {topic}",
    "i 'd like to show you {thing}",
    "let me tell you a story about {person}",
    "when i was {age} years old i lived in {place}",
    "in {year} we started to study {topic}",
    "it 's {adj} to see how {plural} {verb}",
    "we found that {percent} of {plural} {verb} every day",
    "{person} told me that {topic} is {adj}",
    "so what can we do about {topic}",
    "this is a picture of {thing} in {place}",
    "the problem is that {plural} don 't {verb} anymore",
    "we 're going to look at {number} {plural} in {place}",
    "there are {number} {plural} in {place}",
    "i think {topic} will change how we {verb}",
    "here 's {thing} that {person} made",
    "research & development in {place} is {adj}",
    "{plural} are well-known for how they {verb}",
    "and that 's why {topic} matters",
    "my friend {unk} works with {plural} in {place}",
    "you can 't {verb} without {topic}",
    "what i learned from {person} is {adj}",
    "we built {thing} for {plural} in {place}",
    "imagine {number} {plural} who {verb} together",
    "it was {adj} and we all laughed",
    "now i 'm going to show you {thing}",
    "thank you very much",
]
# Made-up names spoken where the transcript says <unk>.
UNK_WORDS = ["zorbex", "kalumbo", "trevani", "oskadel", "mirulan", "quendry"]

def make_sentence(rng, template=None):
    """One raw (STM-style) sentence and what is spoken for it.

    Arguments
    ---------
    rng : random.Random
    template : str, optional

    Returns
    -------
    raw : str
        As in a TED-LIUM STM (``<unk>``, digits, ``it 's`` ...).
    speech : str
        What the voice says.
    """
    template = template or rng.choice(TEMPLATES)
    raw = template.format(**{slot: rng.choice(words) for slot, words in FILLERS.items()})
    # The reader says what the recipe's normaliser makes of the transcript,
    # and a made-up name where the transcribers wrote <unk>.
    said = " ".join(rng.choice(UNK_WORDS) if word == "<unk>" else word for word in raw.split())
    return raw, normalize_text(said)


# --------------------------------------------------------------------------
# Speakers and talks
# --------------------------------------------------------------------------

# espeak-ng English voices; accents *and* variants are disjoint between the
# splits, so dev and test talks are given by voices never heard in training.
VOICES = {
    "train": (["en-us", "en-gb", "en-gb-scotland", "en-029"], ["m1", "m3", "f1", "f3", "klatt"]),
    "dev": (["en-gb-x-gbclan"], ["m2", "f2"]),
    "test": (["en-us-nyc", "en-gb-x-rp"], ["m4", "f4"]),
}
FEMALE = {"f1", "f2", "f3", "f4", "f5"}
FIRST_NAMES = ["Ada", "Ben", "Cleo", "Dev", "Ema", "Finn", "Gia", "Hugo", "Ines", "Jon", "Kai", "Lena",
               "Milo", "Nia", "Omar", "Pia", "Ravi", "Sara", "Tom", "Uma", "Vik", "Wren", "Yara", "Zeno"]
LAST_NAMES = ["Moss", "Okafor", "Lind", "Varga", "Castro", "Ng", "Rossi", "Haddad", "Berg", "Quinn",
              "Sato", "Duval", "Kerr", "Mendes", "Ibsen", "Abara", "Frey", "Lowe", "Park", "Stone"]

# Talks per split and their approximate length in seconds.
PRESETS = {
    "mini": {"train": [25, 25], "dev": [15], "test": [15]},
    "demo": {"train": [240] * 10, "dev": [120, 120], "test": [180, 720]},
}
# Sentences per STM segment (drawn uniformly from the tuple). The demo's
# segments last 2-25 s (about 10 s on average), like TED-LIUM's; a model
# trained only on short segments does not carry over to long windows.
SEGMENT_SENTENCES = {"mini": (1, 1, 2), "demo": (1, 2, 3, 4, 5, 6)}


def corpus_settings(preset="demo", seed=1234, layout="legacy"):
    """The full description of a corpus.

    Arguments
    ---------
    preset : str
        A key of ``PRESETS``.
    seed : int
    layout : str
        ``legacy`` or ``speaker-adaptation`` (the folder the talks go to).

    Returns
    -------
    dict

    Example
    -------
    >>> corpus_settings("mini")["talk_seconds"]["dev"]
    [15]
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset '{preset}': choose among {sorted(PRESETS)}.")
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout '{layout}': choose among {LAYOUTS}.")
    return {"preset": preset, "seed": seed, "layout": layout, "talk_seconds": PRESETS[preset],
            "segment_sentences": list(SEGMENT_SENTENCES[preset])}


def plan_corpus(settings):
    """Every talk: its id, voice and segments (raw text, spoken text, pause after).

    Arguments
    ---------
    settings : dict
        From :func:`corpus_settings`.

    Returns
    -------
    dict
        split -> list of talk dicts (``talk``, ``voice``, ``pitch``, ``speed``,
        ``gender``, ``gain``, ``segments``, ``target_s``).

    Example
    -------
    >>> plan = plan_corpus(corpus_settings("mini"))
    >>> [len(plan[s]) for s in ("train", "dev", "test")]
    [2, 1, 1]
    >>> len({seg["raw"] for talks in plan.values() for t in talks for seg in t["segments"]}) == sum(
    ...     len(t["segments"]) for talks in plan.values() for t in talks)
    True
    """
    rng = random.Random(settings["seed"])
    used = set()
    names = rng.sample([(f, s) for f in FIRST_NAMES for s in LAST_NAMES], 64)
    plan = {}
    for split in SPLITS:
        accents, variants = VOICES[split]
        pairs = [(a, v) for v in variants for a in accents]
        rng.shuffle(pairs)
        talks = []
        for i, seconds in enumerate(settings["talk_seconds"][split]):
            accent, variant = pairs[i % len(pairs)]
            first, last = names.pop()
            speed = rng.randint(150, 180)
            talk = {
                "talk": f"{first}{last}_{rng.randint(2007, 2017)}",
                "voice": f"{accent}+{variant}",
                "gender": "female" if variant in FEMALE else "male",
                "pitch": rng.randint(30, 70),
                "speed": speed,
                "gain": rng.uniform(0.1, 0.2),
                "target_s": seconds,
                "segments": [],
            }
            # ~2.6 words per second at these speeds.
            budget = seconds * speed / 60.0
            while budget > 0:
                raws, speech = [], []
                for _ in range(rng.choice(settings["segment_sentences"])):
                    for _attempt in range(200):
                        raw, said = make_sentence(rng)
                        if raw not in used:
                            break
                    else:
                        raise RuntimeError("ran out of distinct sentences: add templates or fillers")
                    used.add(raw)
                    raws.append(raw)
                    speech.append(said)
                budget -= len(" ".join(speech).split()) + 1.5  # words, plus the pause
                applause = rng.random() < 0.08
                talk["segments"].append({
                    "raw": " ".join(raws),
                    "speech": ", ".join(speech),
                    "pause": round(rng.uniform(0.25, 0.8), 2),
                    "applause": round(rng.uniform(1.0, 2.0), 2) if applause else 0.0,
                })
            talks.append(talk)
        plan[split] = talks
    return plan


def _render_talk(task):
    """Synthesises one talk; returns (split, talk id, STM lines, seconds)."""
    root, split, talk, seed, exe, tmp = task
    np_rng = np.random.default_rng([seed, hash_name(talk["talk"])])
    tmp_wav = os.path.join(tmp, f"espeak-{os.getpid()}.wav")
    pieces, lines, t = [np.zeros(int(0.6 * SAMPLE_RATE), np.float32)], [], 0.6
    tag = f"<o,f0,{talk['gender']}>"
    for seg in talk["segments"]:
        audio = synthesise(exe, seg["speech"], talk["voice"], talk["pitch"], talk["speed"], tmp_wav) * talk["gain"]
        start, end = t, t + len(audio) / SAMPLE_RATE
        # STM times have two decimals and a little margin around the speech.
        lines.append(f"{talk['talk']} 1 {talk['talk']} {max(0.0, start - 0.05):.2f} {end + 0.05:.2f} {tag} {seg['raw']}")
        pieces.append(audio)
        t = end
        gap = seg["pause"]
        if seg["applause"]:
            # Applause: band-limited noise bursts, marked as non-speech.
            n = int(seg["applause"] * SAMPLE_RATE)
            burst = np_rng.standard_normal(n).astype(np.float32) * 0.03
            burst *= np.hanning(n).astype(np.float32)
            pieces += [np.zeros(int(gap * SAMPLE_RATE), np.float32), burst]
            lines.append(f"{talk['talk']} 1 inter_segment_gap {end + 0.05:.2f} {end + gap + seg['applause']:.2f} "
                         "<o,,unknown> ignore_time_segment_in_scoring")
            t += gap + seg["applause"]
            gap = 0.3
        pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
        t += gap
    audio = np.concatenate(pieces)
    audio += (np_rng.standard_normal(len(audio)) * 0.001).astype(np.float32)  # room-noise floor
    folder = os.path.join(root, split)
    sf.write(os.path.join(folder, "sph", f"{talk['talk']}.sph"), np.clip(audio, -1, 1), SAMPLE_RATE,
             format="NIST", subtype="PCM_16")
    with open(os.path.join(folder, "stm", f"{talk['talk']}.stm"), "w", encoding="utf-8") as fo:
        fo.write("\n".join(lines) + "\n")
    return split, talk["talk"], len(lines), len(audio) / SAMPLE_RATE


def build_corpus(out, settings, exe, workers=1, progress=True):
    """Writes a whole corpus under ``out/TEDLIUM_release-3/<layout>/``.

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
        Per split: talks, STM lines and seconds of audio; and the build time.
    """
    begin = time.perf_counter()
    root = os.path.join(out, ROOT, settings["layout"])
    for split in SPLITS:
        for kind in ("sph", "stm"):
            os.makedirs(os.path.join(root, split, kind), exist_ok=True)
    plan = plan_corpus(settings)
    summary = {split: {"talks": 0, "stm_lines": 0, "seconds": 0.0} for split in SPLITS}
    with tempfile.TemporaryDirectory() as tmp:
        tasks = [(root, split, talk, settings["seed"], exe, tmp) for split in SPLITS for talk in plan[split]]
        for split, _, n_lines, seconds in parallel_map(_render_talk, tasks, workers, "talks", progress, 1):
            summary[split]["talks"] += 1
            summary[split]["stm_lines"] += n_lines
            summary[split]["seconds"] = round(summary[split]["seconds"] + seconds, 2)
    return dict(summary, elapsed_s=round(time.perf_counter() - begin, 1))


def ensure_corpus(out, preset="demo", seed=1234, layout="legacy", workers=None, progress=True):
    """Makes sure ``out`` holds a complete corpus of these settings.

    Arguments
    ---------
    out : str
        The corpus folder (``TEDLIUM_release-3`` goes inside it).
    preset : str
        ``demo`` or ``mini``.
    seed : int
    layout : str
        ``legacy`` or ``speaker-adaptation``.
    workers : int, optional
        Synthesis processes (default 2; 1 on a single CPU).
    progress : bool

    Returns
    -------
    str
        The ``TEDLIUM_release-3`` root (what ``prepare_tedlium`` reads).
    """
    settings = corpus_settings(preset, seed, layout)
    out = os.path.abspath(os.fspath(out))
    if not marker_matches(out, GENERATOR, GENERATOR_VERSION, settings):
        exe = require_espeak(f"Building the {preset} TED-LIUM-layout corpus at {out}")
        ensure_folder(
            out, GENERATOR, GENERATOR_VERSION, settings,
            lambda tmp: build_corpus(tmp, settings, exe, workers or default_workers(), progress),
            [ROOT], extra={"espeak_ng": espeak_version(exe)},
        )
    return os.path.join(out, ROOT)


def main(argv=None):
    """Command line: builds a corpus (or reports the one that is there)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="corpus folder (TEDLIUM_release-3/ is written inside)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--layout", choices=LAYOUTS, default="legacy")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    root = ensure_corpus(args.out, args.preset, args.seed, args.layout, args.workers)
    print(root)
    return root


if __name__ == "__main__":
    main()
