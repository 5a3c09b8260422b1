#!/usr/bin/env python3
"""TED-LIUM main job: CALD speech recognition on the real Whisper tiny.en encoder, offline, on a CPU.

Stages (one console line each; full logs in ``<out>/logs/``):

1. **corpus**: talks in TED-LIUM 3's release layout (long SPHERE files + STM),
   made by ``make_mini_tedlium.py --preset demo`` (espeak-ng voices; 10 train
   talks, about 30 minutes of segments; dev and test talks read by voices
   never heard in training, one test talk about 12 minutes long).
2. **source**: the pretrained Whisper tiny.en encoder from its registry
   package (:mod:`cald_brain.pretrained`).
3. **prepare**: TED-LIUM manifests (``tedlium_prepare.py``).
4. **std** (Whisper fine-tuned with CTC), **untrained** (the source with its
   new CTC head, no training: the floor), then the students
   (``train.py hparams/<mode>.yaml``, every self-attention replaced by
   BiMamba2), with the paper's plain start (new mixers at random) or a
   mixer-aware start (``+transfer``: the new mixers first learn, layer by
   layer, to reproduce the attention they replace).
5. **long-form**: std and the best student, packaged and loaded through
   ``CTCTranscriber.from_hparams`` (SpeechBrain's ``EncoderASR``, offline),
   transcribe the long test talk in one pass and in 30 s windows, each in a
   fresh process: time, peak memory, WER on the talk.
6. **timing**: forward time against audio length.

Writes ``results.md``, ``results.json`` and ``results.png`` in ``--out``.

Usage (from the repository root)::

    python recipes/TEDLIUM/demo.py            # std, unguided, waypoint+transfer: about 20 minutes on 2 cores
    python recipes/TEDLIUM/demo.py --full     # every mode with both starts

Authors
 * cald-brain developers 2026
"""

import argparse
import csv
import os
import sys

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.experiment import (  # noqa: E402
    Column, Experiment, Run, add_demo_options, batches_per_epoch, demo_overrides, drop_if_older,
    mode_runs, package_std_and_best, random_audio, rows_from_results, start_of, std_overrides,
    student_run_names, time_inference,
)
from cald_brain.synth import MARKER  # noqa: E402

SOURCE = "whisper-tiny.en"
# BiMamba2 at Whisper tiny's width (384): expand 1 as the paper; d_state 64.
MIXER = {"d_state": 64, "headdim": 64, "expand": 1, "chunk_size": 64}
DEFAULT_RUNS = ["unguided", "waypoint+transfer"]
# Paper, Table 3 (cald-reference section 9): TED-LIUM 3 legacy test,
# wav2vec2-large-lv60, 90k GPU steps per run, greedy CTC over characters.
PAPER = [
    {"run": "std (Wav2Vec2-large)", "test WER %": "6.24"},
    {"run": "hybrid CALD (BiMamba2)", "test WER %": "6.41"},
    {"run": "unguided (BiMamba2)", "test WER %": "11.29"},
    {"run": "target / trajectory / waypoint", "test WER %": "not reported"},
]


def runs(args, steps_per_epoch=60):
    """The demo's runs: std, the untrained floor, then the students.

    Arguments
    ---------
    args : argparse.Namespace
    steps_per_epoch : int
        Optimizer steps per epoch (the std run's schedule length depends on it).

    Returns
    -------
    list of Run

    Example
    -------
    >>> [r.name for r in runs(parse_args([]))]
    ['std', 'untrained', 'unguided', 'waypoint+transfer']
    >>> len(runs(parse_args(["--full"])))
    12
    """
    names = student_run_names() if args.full else list(DEFAULT_RUNS)
    # Students leave Whisper's absolute positions out (see README): their
    # mixers see order themselves, and then carry over to longer inputs.
    student = ["--encoder_positions", args.student_positions]
    out = mode_runs(names + list(args.runs or []), MIXER, args.transfer_steps, std_overrides(args, steps_per_epoch),
                    student_args=student)
    # The source with its new (random) CTC head, tested without training.
    return out[:1] + [Run("untrained", "std", ["--number_of_epochs", 0], needs_std=False)] + out[1:]


def common_args(args, data_folder, steps):
    """Overrides shared by every run (demo sizes; the YAML keeps the paper's).

    Arguments
    ---------
    args : argparse.Namespace
    data_folder : str
    steps : int
        Optimizer steps per epoch.

    Returns
    -------
    list
    """
    shared = demo_overrides(args, data_folder, steps, SOURCE, r"^model\.ctc_head\.")
    return shared + ["--test_batch_size", 8, "--cache_teacher", True]


COLUMNS = [
    Column("run", "run"),
    Column("start", "mixer start"),
    Column("test.WER", "test WER %", "float"),
    Column("test.CER", "test CER %", "float"),
    Column("best_dev_WER", "best dev WER %", "float"),
    Column("params", "params", "int"),
    Column("optimizer_steps", "steps", "int"),
    Column("train_time_s", "train", "seconds"),
]


def longest_talk(talks_csv, data_folder):
    """The longest talk of a ``<split>_talks.csv``: (ID, audio path, seconds, reference text)."""
    with open(talks_csv, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))
    if not rows:
        raise ValueError(f"{talks_csv} lists no talk.")
    row = max(rows, key=lambda r: float(r["duration"]))
    return row["ID"], row["wav"].replace("$data_root", data_folder), float(row["duration"]), row["wrd"]


def evaluate(exp, out, talks_csv, data_folder, test_seconds, timeout):
    """Packages std and the best student, transcribes the long talk, times the forward."""
    from cald_brain.inference import benchmark_long_form, load_transcriber

    results = exp.results()
    packaged = {label: folder for _, label, folder in
                package_std_and_best(out, results, "WER", lower_is_better=True, exclude=("std", "untrained"))}
    talk = longest_talk(talks_csv, data_folder)
    long_rows = benchmark_long_form(packaged, talk[1], talk[3], windows=(None, 30.0, 15.0), timeout=timeout)

    models = {label: load_transcriber(folder, warmup_seconds=0).encode_batch for label, folder in packaged.items()}
    make_input = random_audio
    timing = time_inference(models, make_input, test_seconds, repeats=2, unit=" s")
    return results, long_rows, timing


def parse_args(argv=None):
    """The demo's options (defaults: the measured configuration)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_folder", default=None,
                   help="a TEDLIUM_release-3 folder (default: generate the demo corpus)")
    p.add_argument("--long_form_timeout", type=float, default=600.0, help="seconds per long-form transcription")
    p.add_argument("--student_positions", default="none", choices=["none", "table"],
                   help="whether the students keep Whisper's absolute position table")
    # Layer loss: the paper's TED-LIUM weight, 15.
    add_demo_options(p, out="results/tedlium_demo", epochs=5, std_epochs=5, transfer_steps=60, batch_seconds=30.0,
                     alpha_layer=15.0, seconds=[10, 30, 60, 120, 300])
    return p.parse_args(argv)


def main(argv=None):
    """Runs the demo; returns the report."""
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    plan = (["corpus"] if args.data_folder is None else []) + ["source", "prepare"]
    exp = Experiment(
        "TED-LIUM demo", os.path.join(RECIPE_DIR, "train.py"), os.path.join(RECIPE_DIR, "hparams"), out,
        runs(args), resume=not args.fresh, headline=("test", "WER"), headline_label="test WER %",
        headline_format="float", plan=plan + ["evaluate"],
    )
    data_folder = args.data_folder
    if data_folder is None:
        from make_mini_tedlium import ensure_corpus

        data_folder = exp.stage("corpus", ensure_corpus, os.path.join(out, "corpus"), preset="demo")
    data_folder = os.path.abspath(data_folder)
    from cald_brain.pretrained import resolve_source
    from tedlium_prepare import prepare_tedlium

    exp.stage("source", resolve_source, SOURCE)
    if args.data_folder is None:  # manifests of an older generated corpus go
        drop_if_older(os.path.join(out, "manifests"), os.path.join(out, "corpus", MARKER))
    prepared = exp.stage("prepare", prepare_tedlium, data_folder, os.path.join(out, "manifests"), progress=False)
    steps = batches_per_epoch(prepared["csv"]["train"], args.batch_seconds, args.num_buckets, args.seed)
    exp.runs = runs(args, steps)
    exp.common_args = [str(a) for a in common_args(args, data_folder, steps)]
    exp.train_all()
    results, long_rows, timing = exp.stage(
        "evaluate", evaluate, exp, out, prepared["talks_csv"]["test"], data_folder, args.seconds,
        args.long_form_timeout,
    )
    return report(exp, results, long_rows, timing)


def _best_dev_wer(results):
    curve = (results or {}).get("curve") or []
    values = [p["valid"]["WER"] for p in curve if "WER" in (p.get("valid") or {})]
    return {"best_dev_WER": min(values)} if values else {}


def report(exp, results, long_rows=(), timing=None):
    """Prints and writes the results table, the long-form table, the paper's numbers and the plot.

    Arguments
    ---------
    exp : cald_brain.experiment.Experiment
    results : dict
        Run name -> its results.json (``exp.results()``).
    long_rows : list of dict
        From :func:`cald_brain.inference.benchmark_long_form`.
    timing : dict, optional
        From :func:`cald_brain.experiment.time_inference`.

    Returns
    -------
    dict
        Paths of ``results.md``, ``results.json``, ``results.png`` and the table.
    """
    from cald_brain.inference import long_form_table

    rows = rows_from_results(results, extra=lambda name, res: {
        "start": "-" if name == "untrained" else start_of(name), **_best_dev_wer(res)})
    sections = []
    if long_rows:
        talk = long_rows[0]
        sections.append((
            "Long-form transcription",
            f"The test talk {os.path.basename(talk['audio'])} ({talk['audio_s'] / 60:.1f} minutes), transcribed by the packaged "
            "models (`CTCTranscriber.from_hparams`, offline), each run in a fresh process after a 2 s warm-up; "
            "peak memory is what the transcription added to the loaded model's (resident set on the CPU). "
            "WER over the whole talk against its STM transcript (applause and pauses included in the audio).\n\n"
            + long_form_table(long_rows),
        ))
    return exp.report(
        rows, COLUMNS, title="CALD on TED-LIUM-style talks, Whisper tiny.en source (CPU demo)",
        paper_rows=PAPER, timing=timing, sections=sections,
        curves={r: (v or {}).get("curve") for r, v in results.items()}, plot_column=Column("test.WER", "test WER %"),
        notes=[
            "Corpus: synthetic espeak-ng talks in TED-LIUM 3's layout; dev and test voices never heard in "
            "training; greedy CTC over the paper's 30 characters.",
            "untrained: the source encoder with its new CTC head, before any training.",
            "Paper: full TED-LIUM 3, wav2vec2-large-lv60 source, 90k GPU steps per run. Numbers are not "
            "comparable in size; what carries over is the comparison between modes.",
        ],
    )


if __name__ == "__main__":
    main()
