#!/usr/bin/env python3
"""VoxCeleb main job: CALD speaker identification on the real Whisper tiny.en encoder, offline, on a CPU.

Stages (one console line each; full logs in ``<out>/logs/``):

1. **corpus**: a synthetic corpus in VoxCeleb1's identification layout
   (``wav/<speaker>/<video>/<n>.wav``, ``iden_split.txt``), made by
   ``make_mini_voxceleb.py --preset demo``: 20 espeak-ng voices, each
   "video" its own room and level; the dev and the test video of each
   speaker never heard in training.
2. **source**: the pretrained Whisper tiny.en encoder from its registry
   package (:mod:`cald_brain.pretrained`).
3. **prepare**: VoxCeleb manifests (``voxceleb_prepare.py``).
4. **std** (Whisper fine-tuned), then the students (``train.py
   hparams/<mode>.yaml``, every self-attention replaced by BiMamba2), with
   the paper's plain start (new mixers at random) or a mixer-aware start
   (``+transfer``: the new mixers first learn, layer by layer, to reproduce
   the attention they replace).
5. **evaluate**: packages std and the best student, loads them with
   SpeechBrain's own ``EncoderClassifier.from_hparams`` (offline), checks
   ``classify_file`` against the test accuracy on a few files, and times
   them against audio length; writes ``results.md``, ``results.json`` and
   ``results.png``.

Usage (from the repository root)::

    python recipes/VoxCeleb/demo.py            # std, unguided, target+transfer
    python recipes/VoxCeleb/demo.py --full     # every mode with both starts

Authors
 * cald-brain developers 2026
"""

import argparse
import csv
import functools
import os
import sys

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.experiment import (  # noqa: E402
    Column, Experiment, add_demo_options, batches_per_epoch, demo_overrides, drop_if_older, mode_runs,
    package_std_and_best, random_audio, rows_from_results, start_of, std_overrides, student_run_names,
    time_inference,
)
from cald_brain.synth import MARKER  # noqa: E402

SOURCE = "whisper-tiny.en"
# BiMamba2 at Whisper tiny's width (384): expand 1 as the paper; d_state 64.
MIXER = {"d_state": 64, "headdim": 64, "expand": 1, "chunk_size": 64}
DEFAULT_RUNS = ["unguided", "target+transfer"]
# Paper, Table 3 (cald-reference section 9): VoxCeleb1 identification,
# wav2vec2-large-lv60, 90k GPU steps per run, top-1 accuracy.
PAPER = [
    {"run": "std (Wav2Vec2-large)", "SID acc %": "96.09"},
    {"run": "hybrid CALD (BiMamba2)", "SID acc %": "96.41"},
    {"run": "unguided (BiMamba2)", "SID acc %": "84.24"},
    {"run": "target / trajectory / waypoint", "SID acc %": "not reported"},
]


def runs(args, steps_per_epoch=40):
    """The demo's runs: std, then the students.

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
    ['std', 'unguided', 'target+transfer']
    >>> len(runs(parse_args(["--full"])))
    11
    """
    names = student_run_names() if args.full else list(DEFAULT_RUNS)
    return mode_runs(names + list(args.runs or []), MIXER, args.transfer_steps, std_overrides(args, steps_per_epoch))


def common_args(args, data_folder, steps):
    """Overrides shared by every run (demo sizes; the YAML keeps the paper's).

    Training reads random crops, so the fixed teacher's outputs are not
    cached (each epoch reads other windows).

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
    shared = demo_overrides(args, data_folder, steps, SOURCE, r"^model\.classifier\.")
    return shared + ["--test_batch_size", 16, "--crop_seconds", args.crop_seconds]


COLUMNS = [
    Column("run", "run"),
    Column("start", "mixer start"),
    Column("test.ACC", "speaker acc % (95 % CI)", "percent", n_key="n_test"),
    Column("test.top5_ACC", "top-5 %", "percent"),
    Column("params", "params", "int"),
    Column("optimizer_steps", "steps", "int"),
    Column("train_time_s", "train", "seconds"),
]


def check_classify_file(spk, test_csv, data_folder, n=20):
    """Accuracy of ``classify_file`` on the first ``n`` test files (the packaged model's own path)."""
    with open(test_csv, newline="", encoding="utf-8") as fin:
        rows = list(csv.DictReader(fin))[:n]
    hits = 0
    for row in rows:
        _, _, _, names = spk.classify_file(row["wav"].replace("$data_root", data_folder))
        hits += names[0] == row["spk_id"]
    return hits / max(1, len(rows))


def evaluate(exp, out, test_csv, data_folder, test_seconds):
    """Packages std and the best student, loads them with EncoderClassifier, times them."""
    from speechbrain.inference.classifiers import EncoderClassifier

    from cald_brain.inference.package import offline_load_kwargs

    results = exp.results()
    models, file_checks = {}, {}
    for name, label, dest in package_std_and_best(out, results, "ACC"):
        # SpeechBrain's own class; offline_load_kwargs: no network, and fresh
        # copies in the savedir (a rerun never loads the previous model).
        spk = EncoderClassifier.from_hparams(source=dest, savedir=os.path.join(out, "packaged", name + ".loaded"),
                                             **offline_load_kwargs(dest, {}))
        models[label] = spk.classify_batch
        file_checks[name] = check_classify_file(spk, test_csv, data_folder)
    make_input = functools.partial(random_audio, with_lengths=True)
    timing = time_inference(models, make_input, test_seconds, unit=" s")
    return results, file_checks, timing


def parse_args(argv=None):
    """The demo's options (defaults: the measured configuration)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_folder", default=None, help="a VoxCeleb1-layout folder (default: generate the demo corpus)")
    p.add_argument("--crop_seconds", type=float, default=3.0, help="training crop length")
    # Layer loss: the paper's VoxCeleb1 weight, 30.
    add_demo_options(p, out="results/voxceleb_demo", epochs=6, std_epochs=4, transfer_steps=60, batch_seconds=30.0,
                     alpha_layer=30.0, seconds=[2, 5, 10, 20, 30])
    return p.parse_args(argv)


def main(argv=None):
    """Runs the demo; returns the report."""
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    plan = (["corpus"] if args.data_folder is None else []) + ["source", "prepare"]
    exp = Experiment(
        "VoxCeleb demo", os.path.join(RECIPE_DIR, "train.py"), os.path.join(RECIPE_DIR, "hparams"), out,
        runs(args), resume=not args.fresh, headline=("test", "ACC"), headline_label="speaker acc",
        headline_format="percent", plan=plan + ["evaluate"],
    )
    data_folder = args.data_folder
    if data_folder is None:
        from make_mini_voxceleb import ensure_corpus

        data_folder = exp.stage("corpus", ensure_corpus, os.path.join(out, "corpus"), preset="demo")
    data_folder = os.path.abspath(data_folder)
    from cald_brain.pretrained import resolve_source
    from voxceleb_prepare import prepare_voxceleb

    exp.stage("source", resolve_source, SOURCE)
    if args.data_folder is None:  # manifests of an older generated corpus go
        drop_if_older(os.path.join(out, "manifests"), os.path.join(out, "corpus", MARKER))
    prepared = exp.stage("prepare", prepare_voxceleb, data_folder, os.path.join(out, "manifests"), progress=False)
    # Batches are counted as train.py fills them: at most one crop per utterance.
    steps = batches_per_epoch(prepared["csv"]["train"], args.batch_seconds, args.num_buckets, args.seed,
                              max_duration=args.crop_seconds)
    exp.runs = runs(args, steps)
    exp.common_args = [str(a) for a in common_args(args, data_folder, steps)]
    exp.train_all()
    results, file_checks, timing = exp.stage(
        "evaluate", evaluate, exp, out, prepared["csv"]["test"], data_folder, args.seconds)
    return report(exp, results, file_checks, timing)


def report(exp, results, file_checks=None, timing=None):
    """Prints and writes the results table, the paper's numbers and the plot.

    Arguments
    ---------
    exp : cald_brain.experiment.Experiment
    results : dict
        Run name -> its results.json (``exp.results()``).
    file_checks : dict, optional
        Run name -> accuracy of the packaged model's ``classify_file`` on
        the first test files.
    timing : dict, optional
        From :func:`cald_brain.experiment.time_inference`.

    Returns
    -------
    dict
        Paths of ``results.md``, ``results.json``, ``results.png`` and the table.
    """
    rows = rows_from_results(results, extra=lambda name, res: {"start": start_of(name)})
    notes = [
        "Corpus: 20 synthetic espeak-ng speakers in VoxCeleb1's layout; each video its own room and level; "
        "every test utterance comes from a video never heard in training. Chance: 5 %.",
        "Paper: full VoxCeleb1 (1,251 speakers), wav2vec2-large-lv60 source, 90k GPU steps per run. Numbers "
        "are not comparable in size; what carries over is the comparison between modes.",
    ]
    if file_checks:
        notes.append("Packaged models loaded with SpeechBrain's EncoderClassifier.from_hparams; classify_file on "
                     "the first 20 test files: " + ", ".join(f"{k} {100 * v:.0f} %" for k, v in file_checks.items()))
    return exp.report(
        rows, COLUMNS, title="CALD on VoxCeleb1-style speaker identification, Whisper tiny.en source (CPU demo)",
        paper_rows=PAPER, timing=timing, curves={r: (v or {}).get("curve") for r, v in results.items()}, notes=notes,
    )


if __name__ == "__main__":
    main()
