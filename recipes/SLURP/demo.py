#!/usr/bin/env python3
"""SLURP main job: CALD on the real Whisper tiny.en encoder, offline, on a CPU.

Stages (one console line each; full logs in ``<out>/logs/``):

1. **corpus**: a synthetic corpus in SLURP's release layout, made by
   ``make_mini_slurp.py --preset demo`` (espeak-ng voices; about 800 train /
   100 devel / 200 test recordings of 10 intents; test voices disjoint from
   train; some test phrasings never seen in training).
2. **source**: the pretrained Whisper tiny.en encoder from its registry
   package, converted once to an HF folder (:mod:`cald_brain.pretrained`).
3. **prepare**: SLURP manifests (``slurp_prepare.py``).
4. **std**, then the students (``train.py hparams/<mode>.yaml``): each CALD
   mode with the paper's plain start (new mixers at random) and, beyond the
   paper, with a mixer-aware start (attention transfer: the new mixers first
   learn, layer by layer, to reproduce the attention they replace).
5. **evaluate**: packages std and the best student for inference, loads them
   through ``IntentClassifier.from_hparams`` (offline) and times them against
   audio length; writes ``results.md``, ``results.json`` and ``results.png``.

Usage (from the repository root)::

    python recipes/SLURP/demo.py             # the default runs, about 20 minutes on 2 cores
    python recipes/SLURP/demo.py --full      # every mode with both starts

Authors
 * cald-brain developers 2026
"""

import argparse
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
# Paper, Table 3 (cald-reference section 9): full SLURP, wav2vec2-large-lv60,
# 90k GPU steps per run; "IC accuracy" = mean of scenario and action accuracy.
PAPER = [
    {"run": "std (Wav2Vec2-large)", "IC acc %": "91.70"},
    {"run": "hybrid CALD (BiMamba2)", "IC acc %": "91.23"},
    {"run": "unguided / target / waypoint", "IC acc %": "not reported"},
]


def runs(args, steps_per_epoch=50):
    """The demo's runs: std, then students with the plain and the transfer start.

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
    >>> [r.name for r in runs(parse_args(["--runs", "target", "unguided+transfer"]))]
    ['std', 'unguided', 'target+transfer', 'target', 'unguided+transfer']
    """
    # The default: the comparison the paper's claim rests on, within ~20 minutes.
    names = student_run_names() if args.full else ["unguided", "target+transfer"]
    return mode_runs(names + list(args.runs or []), MIXER, args.transfer_steps, std_overrides(args, steps_per_epoch))


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
    shared = demo_overrides(args, data_folder, steps, SOURCE, r"^model\.classifier\.")
    return shared + ["--test_batch_size", 32, "--cache_teacher", True]


COLUMNS = [
    Column("run", "run"),
    Column("start", "mixer start"),
    Column("test.ACC", "intent acc % (95 % CI)", "percent", n_key="n_test"),
    Column("test.seen_phrasing_acc", "seen phrasings %", "percent"),
    Column("test.unseen_phrasing_acc", "unseen phrasings % (95 % CI)", "percent", n_key="test.n_unseen_phrasing"),
    Column("test.mean_scenario_action_acc", "scen/act %", "percent"),
    Column("params", "params", "int"),
    Column("train_time_s", "train", "seconds"),
]


def evaluate(exp, out, test_seconds):
    """Packages std and the best student, loads them offline, times them."""
    from cald_brain.inference import IntentClassifier

    results = exp.results()
    models = {}
    for name, label, dest in package_std_and_best(out, results, "ACC"):
        clf = IntentClassifier.from_hparams(source=dest, savedir=os.path.join(out, "packaged", name + ".loaded"))
        models[label] = clf.classify_batch
    make_input = functools.partial(random_audio, with_lengths=True)
    timing = time_inference(models, make_input, test_seconds)
    return results, timing


def parse_args(argv=None):
    """The demo's options (defaults: the measured configuration)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_folder", default=None, help="a SLURP-layout corpus (default: generate the demo corpus)")
    add_demo_options(p, out="results/slurp_demo", epochs=6, std_epochs=4, transfer_steps=150, batch_seconds=30.0,
                     alpha_layer=1.0, seconds=[2, 5, 10, 20, 30])
    return p.parse_args(argv)


def main(argv=None):
    """Runs the demo; returns the report."""
    args = parse_args(argv)
    out = os.path.abspath(args.out)
    plan = (["corpus"] if args.data_folder is None else []) + ["source", "prepare"]
    exp = Experiment(
        "SLURP demo", os.path.join(RECIPE_DIR, "train.py"), os.path.join(RECIPE_DIR, "hparams"), out,
        runs(args), resume=not args.fresh, headline=("test", "ACC"), headline_label="intent acc",
        headline_format="percent", plan=plan + ["evaluate"],
    )
    data_folder = args.data_folder
    if data_folder is None:
        from make_mini_slurp import ensure_corpus

        data_folder = exp.stage("corpus", ensure_corpus, os.path.join(out, "corpus"), preset="demo")
    from cald_brain.pretrained import resolve_source
    from slurp_prepare import prepare_slurp

    exp.stage("source", resolve_source, SOURCE)
    if args.data_folder is None:  # manifests of an older generated corpus go
        drop_if_older(os.path.join(out, "manifests"), os.path.join(out, "corpus", MARKER))
    prepared = exp.stage("prepare", prepare_slurp, data_folder, os.path.join(out, "manifests"))
    steps = batches_per_epoch(prepared["csv"]["train"], args.batch_seconds, args.num_buckets, args.seed)
    exp.runs = runs(args, steps)
    exp.common_args = [str(a) for a in common_args(args, os.path.abspath(data_folder), steps)]
    exp.train_all()
    results, timing = exp.stage("evaluate", evaluate, exp, out, args.seconds)
    return report(exp, results, timing)


def report(exp, results, timing=None):
    """Prints and writes the results table, the paper's numbers and the plot.

    Arguments
    ---------
    exp : cald_brain.experiment.Experiment
    results : dict
        Run name -> its results.json (``exp.results()``).
    timing : dict, optional
        From :func:`cald_brain.experiment.time_inference`.

    Returns
    -------
    dict
        Paths of ``results.md``, ``results.json``, ``results.png`` and the table.
    """
    rows = rows_from_results(results, extra=lambda name, res: {"start": start_of(name)})
    return exp.report(
        rows, COLUMNS, title="CALD on SLURP-style intents, Whisper tiny.en source (CPU demo)",
        paper_rows=PAPER, timing=timing, curves={r: (v or {}).get("curve") for r, v in results.items()},
        notes=[
            "Corpus: synthetic espeak-ng speech in SLURP's layout; test voices never heard in training; "
            "'unseen phrasings' are test sentences whose template no training sentence uses.",
            "Paper: full SLURP, wav2vec2-large-lv60 source, 90k GPU steps per run. Numbers are not comparable "
            "in size; what carries over is the comparison between modes.",
        ],
    )




if __name__ == "__main__":
    main()
