"""What every recipe's demo shares: run the modes, collect, time, report.

A recipe's ``demo.py`` is a short list of stages for :class:`Experiment`:

* in-process stages (:meth:`Experiment.stage`): make or prepare the data,
  fetch the pretrained source, evaluate ...;
* training runs (:meth:`Experiment.train`, :meth:`Experiment.train_all`):
  one :class:`Run` per folder, each ``python train.py hparams/<mode>.yaml
  --output_folder <out>/<run>`` in a subprocess whose whole output goes to
  ``<out>/logs/<run>.log``; runs whose ``results.json`` is complete are
  reused, so a stopped demo picks up where it stopped;
* the report (:func:`write_report`): a Markdown table with 95 % Wilson
  intervals, the paper's numbers, inference time against input length
  (:func:`time_inference`), a JSON copy and a figure.

The console gets one line per stage (updated in place on a terminal) and
the final table, nothing else; details go through :mod:`logging` and into
the log files. Nothing here knows about a dataset, a task or a modality: a
recipe chooses the columns (:class:`Column`) and the headline metric.

Each run's ``results.json`` (written by :func:`cald_brain.recipe.run_recipe`)
is read defensively::

    {"mode": ..., "test": {metric: value}, "n_test": int, "params": int,
     "train_time_s": float, "optimizer_steps": int,
     "curve": [{"step": int, "valid": {metric: value}}, ...]}

Authors
 * cald-brain developers 2026
"""

import contextlib
import dataclasses
import json
import logging
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback

logger = logging.getLogger(__name__)

#: The mode whose run fine-tunes the transformer (the target, the waypoints).
STD_MODE = "std"
#: Modes that read the std run (``--std_folder``) unless a Run says otherwise.
NEEDS_STD = ("target", "waypoint", "hybrid")
#: Value formats of a :class:`Column`.
FORMATS = ("text", "percent", "int", "float", "seconds")
#: Lines of a failed run's log quoted in its :class:`StageError`.
TAIL_LINES = 20
#: The repository root: the working directory of the training subprocesses.
REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESERVED_NAMES = ("logs", ".", "..")


class StageError(RuntimeError):
    """A stage of an experiment failed; the message says which, why, and where its log is.

    Arguments
    ---------
    stage : str
        The stage (or run) name.
    message : str
        What went wrong.
    log_path : str, optional
        The stage's full log.
    returncode : int, optional
        A training subprocess's exit status.
    tail : str, optional
        The last lines of the log.
    """

    def __init__(self, stage, message, log_path=None, returncode=None, tail=None):
        self.stage = stage
        self.log_path = log_path
        self.returncode = returncode
        self.tail = tail
        text = f"Stage '{stage}' failed: {message}"
        if log_path:
            text += f"\nFull log: {log_path}"
        if tail:
            text += f"\nLast lines of the log:\n{tail}"
        super().__init__(text)


# ---------------------------------------------------------------------------
# Runs and columns
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a folder under the experiment output and a mode file.

    Arguments
    ---------
    name : str
        The run's folder under the experiment output (``std``, ``target``,
        ``target+transfer`` ...), also its log's name.
    mode : str
        Picks ``<hparams_dir>/<mode>.yaml``.
    args : sequence
        Extra command-line overrides of this run (after the common ones, so
        they win); converted to ``str``.
    needs_std : bool, optional
        Whether the run gets ``--std_folder <out>/<std run>``. Default: the
        modes in :data:`NEEDS_STD` (target, waypoint, hybrid) do.

    Example
    -------
    >>> run = Run("target+transfer", "target", ["--transfer_steps", 150])
    >>> run.args, run.requires_std
    (('--transfer_steps', '150'), True)
    >>> Run("unguided", "unguided").requires_std
    False
    """

    name: str
    mode: str
    args: tuple = ()
    needs_std: bool = None

    def __post_init__(self):
        name = str(self.name)
        if not name or name in RESERVED_NAMES or "/" in name or os.sep in name:
            raise ValueError(f"Run name {self.name!r} cannot be a folder name under the output (nor 'logs').")
        if not self.mode:
            raise ValueError(f"Run '{name}' has no mode.")
        if isinstance(self.args, (str, bytes)):
            raise TypeError(
                f"Run '{name}': args must be a sequence of arguments, not the string {self.args!r}."
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", tuple(str(a) for a in self.args))

    @property
    def requires_std(self):
        """Whether this run reads the std run's folder."""
        return self.mode in NEEDS_STD if self.needs_std is None else bool(self.needs_std)


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the results table.

    Arguments
    ---------
    key : str or tuple of str
        Where the value is in a row: a flat key (``"test.ACC"`` of
        :func:`rows_from_results`), a dotted path or a tuple of keys into
        nested dicts (``("test", "ACC")``).
    header : str, optional
        The column title (default: the key).
    format : str
        One of :data:`FORMATS`: ``text``; ``percent`` (a fraction, shown
        x100); ``int`` (thousands separators); ``float``; ``seconds``
        (``m:ss``).
    n_key : str or tuple, optional
        For a ``percent`` column of a proportion: where the number of trials
        is (``"n_test"``); the cell then carries its 95 % Wilson interval.

    Example
    -------
    >>> col = Column("test.ACC", "acc %", "percent", n_key="n_test")
    >>> col.cell({"test.ACC": 0.835, "n_test": 200})
    '83.5 (77.7-88.0)'
    >>> Column(("test", "ACC"), format="percent").cell({"test": {"ACC": 0.5}})
    '50.0'
    >>> Column("params", "params", "int").cell({"params": 1234567})
    '1,234,567'
    >>> Column("train_time_s", "train", "seconds").cell({})
    'n/a'
    """

    key: object
    header: str = None
    format: str = "text"
    n_key: object = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"Column {self.key!r}: format must be one of {FORMATS}, got {self.format!r}.")
        if self.n_key is not None and self.format != "percent":
            raise ValueError(f"Column {self.key!r}: n_key (an interval) needs the 'percent' format.")
        if isinstance(self.key, list):
            object.__setattr__(self, "key", tuple(self.key))
        if self.header is None:
            object.__setattr__(self, "header", _key_text(self.key))

    @classmethod
    def of(cls, spec):
        """A Column from a Column, a key, or a tuple ``(key, header, format, n_key)``.

        Example
        -------
        >>> Column.of(("n_test", "test items", "int")).header
        'test items'
        """
        if isinstance(spec, Column):
            return spec
        if isinstance(spec, (str, bytes)):
            return cls(spec)
        return cls(*spec)

    def value(self, row):
        """The raw value of this column in ``row`` (None when absent)."""
        return lookup(row, self.key)

    def interval(self, row):
        """The 95 % Wilson interval ``(low, high)`` of the cell, or None."""
        if self.n_key is None:
            return None
        value, n = _number(self.value(row)), _number(lookup(row, self.n_key))
        if value is None or n is None or n <= 0 or not 0.0 <= value <= 1.0:
            return None
        return wilson_interval(round(value * n), int(round(n)))

    def cell(self, row):
        """The formatted cell of this column for ``row`` ('n/a' when absent)."""
        value = self.value(row)
        if value is None:
            return "n/a"
        if self.format == "text":
            return str(value)
        number = _number(value)
        if number is None:
            return str(value)
        if self.format == "percent":
            text = f"{100 * number:.1f}"
            ci = self.interval(row)
            if ci is not None:
                text += f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})"
            return text
        if self.format == "int":
            return f"{int(round(number)):,}"
        if self.format == "seconds":
            return format_duration(number)
        return f"{number:.4g}"


def lookup(mapping, key):
    """The value at ``key`` in a (possibly nested) dict, or None.

    A string key is first looked up as it is (the flat keys of
    :func:`rows_from_results`), then as a dotted path; a tuple is a path.

    Arguments
    ---------
    mapping : dict
    key : str or tuple of str

    Returns
    -------
    object or None

    Example
    -------
    >>> row = {"test": {"ACC": 0.9}, "test.WER": 12.5}
    >>> lookup(row, "test.ACC"), lookup(row, ("test", "ACC")), lookup(row, "test.WER")
    (0.9, 0.9, 12.5)
    >>> lookup(row, "valid.ACC") is None
    True
    """
    if not isinstance(mapping, dict):
        return None
    if isinstance(key, str):
        if key in mapping:
            return mapping[key]
        parts = key.split(".")
    else:
        parts = list(key)
        flat = ".".join(parts)
        if flat in mapping:
            return mapping[flat]
    value = mapping
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _key_text(key):
    return key if isinstance(key, str) else ".".join(key)


def _number(value):
    """A finite float from ``value``, or None (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:  # numpy and torch scalars
            value = value.item()
        except (AttributeError, ValueError, TypeError):
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def format_duration(seconds):
    """``m:ss``, or ``h:mm:ss`` from an hour on.

    Example
    -------
    >>> format_duration(3.4), format_duration(754), format_duration(3725)
    ('0:03', '12:34', '1:02:05')
    """
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


#: The modes a student run can take (std is the transformer itself).
STUDENT_MODES = ("unguided", "target", "trajectory", "waypoint", "hybrid")
#: Run-name suffix of a student whose new mixers start by attention transfer.
TRANSFER_SUFFIX = "+transfer"


def student_run_names(modes=STUDENT_MODES):
    """Every student run name: each mode with the paper's plain start and with attention transfer.

    Arguments
    ---------
    modes : sequence of str

    Returns
    -------
    list of str

    Example
    -------
    >>> student_run_names(["target", "hybrid"])
    ['target', 'target+transfer', 'hybrid', 'hybrid+transfer']
    """
    return [name for mode in modes for name in (mode, mode + TRANSFER_SUFFIX)]


def mode_runs(names, mixer_kwargs, transfer_steps, std_args=(), modes=STUDENT_MODES, student_args=()):
    """The std run, then one student :class:`Run` per name.

    A name is a mode (the new mixers start at random, as the paper) or
    ``<mode>+transfer`` (they start by attention transfer for
    ``transfer_steps`` steps: ``--mixer_init attention_transfer``). Every
    student gets ``--mixer_kwargs`` (the std run keeps the transformer).

    Arguments
    ---------
    names : sequence of str
        Student run names, in order; repeats are dropped.
    mixer_kwargs : dict
        The students' mixer settings (``d_state``, ``headdim`` ...).
    transfer_steps : int
        Attention-transfer steps of the ``+transfer`` runs.
    std_args : sequence
        The std run's own overrides (its schedule, its waypoints).
    modes : sequence of str
        The modes the recipe has mode files for.
    student_args : sequence
        More overrides of every student run (not of the std run).

    Returns
    -------
    list of Run

    Example
    -------
    >>> runs = mode_runs(["unguided", "target+transfer"], {"d_state": 16}, 100)
    >>> [(r.name, r.mode) for r in runs]
    [('std', 'std'), ('unguided', 'unguided'), ('target+transfer', 'target')]
    >>> runs[2].args
    ('--mixer_kwargs', '{"d_state": 16}', '--mixer_init', 'attention_transfer', '--transfer_steps', '100')
    >>> mode_runs(["target+tranfer"], {}, 1)
    Traceback (most recent call last):
    ...
    ValueError: Unknown run(s) ['target+tranfer']: choose among hybrid, hybrid+transfer, ...
    """
    known = student_run_names(modes)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"Unknown run(s) {unknown}: choose among {', '.join(sorted(known))}.")
    mixer = ["--mixer_kwargs", json.dumps(mixer_kwargs), *student_args]
    transfer = ["--mixer_init", "attention_transfer", "--transfer_steps", transfer_steps]
    runs = [Run(STD_MODE, STD_MODE, list(std_args))]
    for name in dict.fromkeys(names):
        mode = name[: -len(TRANSFER_SUFFIX)] if name.endswith(TRANSFER_SUFFIX) else name
        runs.append(Run(name, mode, mixer + (transfer if name != mode else [])))
    return runs


def start_of(run_name):
    """The mixer start a run name stands for (a column of the demos' tables).

    Example
    -------
    >>> start_of("target+transfer"), start_of("target"), start_of("std")
    ('attention transfer', 'plain (paper)', '-')
    """
    if run_name == STD_MODE:
        return "-"
    return "attention transfer" if run_name.endswith(TRANSFER_SUFFIX) else "plain (paper)"


def best_run(results, metric, lower_is_better=False, exclude=(STD_MODE,)):
    """The run with the best test ``metric`` among the finished ones (None if none).

    Arguments
    ---------
    results : dict
        Run name -> its results.json (:meth:`Experiment.results`).
    metric : str
        A key of the runs' ``test`` results (``ACC``, ``WER`` ...).
    lower_is_better : bool
    exclude : sequence of str
        Runs left out (the std run, baselines ...).

    Returns
    -------
    str or None

    Example
    -------
    >>> res = {"std": {"test": {"WER": 5}}, "a": {"test": {"WER": 30}}, "b": {"test": {"WER": 20}}, "c": None}
    >>> best_run(res, "WER", lower_is_better=True), best_run(res, "WER")
    ('b', 'a')
    """
    scores = {
        name: res["test"][metric] for name, res in results.items()
        if name not in exclude and res and metric in (res.get("test") or {})
    }
    if not scores:
        return None
    pick = min if lower_is_better else max
    return pick(scores, key=scores.get)


def package_std_and_best(out, results, metric, lower_is_better=False, exclude=(STD_MODE,),
                         labels=("Whisper transformer", "BiMamba2")):
    """Packages the std run and the best student for inference (``<out>/packaged/<run>``).

    Arguments
    ---------
    out : str
        The experiment folder (``<out>/<run>`` holds each run).
    results : dict
        Run name -> its results.json (:meth:`Experiment.results`).
    metric, lower_is_better, exclude
        How the best student is picked (:func:`best_run`).
    labels : tuple of str
        What the transformer and the student are called in the tables.

    Returns
    -------
    list of (str, str, str)
        ``(run, label, packaged folder)``: std first, then the best student
        (none when no student finished).
    """
    from cald_brain.inference import package_model

    best = best_run(results, metric, lower_is_better=lower_is_better, exclude=exclude)
    packaged = []
    for name in [STD_MODE] + ([best] if best else []):
        label = f"{name} ({labels[0] if name == STD_MODE else labels[1]})"
        packaged.append((name, label, package_model(os.path.join(out, name), os.path.join(out, "packaged", name))))
    return packaged


def random_audio(seconds, sample_rate=16000, with_lengths=False, seed=0):
    """A reproducible batch of one noise waveform (for timing models against length).

    Example
    -------
    >>> wavs, lens = random_audio(0.5, with_lengths=True)
    >>> wavs.shape, lens.tolist()
    (torch.Size([1, 8000]), [1.0])
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    wavs = 0.1 * torch.randn(1, int(seconds * sample_rate), generator=g)
    return (wavs, torch.ones(1)) if with_lengths else (wavs,)


def batches_per_epoch(train_csv, max_batch_length, num_buckets, seed, max_duration=None):
    """Optimizer steps in one epoch of dynamic batches over a manifest.

    What a demo needs to set step-counted schedules (warm-up, decay,
    waypoints, the hybrid switch) before the runs start.

    Arguments
    ---------
    train_csv : str
        A manifest with a ``duration`` column.
    max_batch_length : float
        Seconds of audio per batch.
    num_buckets : int
    seed : int
    max_duration : float, optional
        Seconds an utterance counts for at most (training on random crops).

    Returns
    -------
    int
    """
    from cald_brain.dataio import cap_durations, manifest_datasets, use_dynamic_batching

    train = manifest_datasets({"train": train_csv}, "")["train"]
    if max_duration:
        cap_durations(train, max_duration)
    return len(use_dynamic_batching(train, {}, max_batch_length, num_buckets, seed=seed))


def schedule_args(total_steps, warmup_fraction=0.05, distill_fraction=0.6):
    """Step-counted overrides for a run of ``total_steps`` optimizer steps.

    Linear warm-up over ``warmup_fraction`` of the steps, the decay reaching
    its floor at the end, and the hybrid switch after ``distill_fraction``
    (the paper: 40k of 90k, about 0.44; waypoint and trajectory ignore it).

    Arguments
    ---------
    total_steps : int
    warmup_fraction : float
    distill_fraction : float

    Returns
    -------
    list

    Example
    -------
    >>> schedule_args(200)
    ['--warmup_steps', 10, '--decay_total_steps', 200, '--distill_until', 120]
    """
    if total_steps < 1:
        raise ValueError(f"A run needs at least one optimizer step, got {total_steps}.")
    return [
        "--warmup_steps", max(1, int(total_steps * warmup_fraction)),
        "--decay_total_steps", total_steps,
        "--distill_until", int(total_steps * distill_fraction),
    ]


def drop_if_older(folder, than):
    """Removes ``folder`` when it is older than the path ``than`` (e.g. manifests of a rebuilt corpus).

    Data preparations skip when their options are unchanged; after the corpus
    itself was rebuilt, its old manifests must go first.

    Arguments
    ---------
    folder : str
    than : str
        A file or folder; nothing happens when either is missing.

    Returns
    -------
    bool
        Whether ``folder`` was removed.

    Example
    -------
    >>> tmp = getfixture("tmpdir")
    >>> old = tmp.mkdir("manifests"); new = tmp.join("marker"); _ = new.write("x")
    >>> os.utime(str(old), (0, 0))
    >>> drop_if_older(str(old), str(new)), os.path.exists(str(old))
    (True, False)
    """
    if not (os.path.isdir(folder) and os.path.exists(than)):
        return False
    if os.path.getmtime(folder) >= os.path.getmtime(than):
        return False
    logger.info("Removing %s: it is older than %s.", folder, than)
    shutil.rmtree(folder)
    return True


def add_demo_options(parser, out, epochs, std_epochs, transfer_steps, batch_seconds, alpha_layer, seconds,
                     lr=1e-4, new_lr_scale=10.0, decay_factor=0.25, seed=1986):
    """Adds the options every recipe demo has to an ``argparse`` parser (the defaults given).

    Arguments
    ---------
    parser : argparse.ArgumentParser
    out : str
        Default output folder.
    epochs, std_epochs : int
        Student and std epochs.
    transfer_steps : int
        Attention-transfer steps of the ``+transfer`` runs.
    batch_seconds : float
        Seconds of audio per dynamic batch.
    alpha_layer : float
        Layer-loss weight.
    seconds : list of float
        Timed input lengths.
    lr, new_lr_scale, decay_factor : float
        Rate of the pretrained weights, the new parts' multiple of it, the
        decay of the rate over a run.
    seed : int

    Returns
    -------
    argparse.ArgumentParser

    Example
    -------
    >>> import argparse
    >>> p = add_demo_options(argparse.ArgumentParser(), "results/x", 5, 4, 60, 30.0, 15.0, [2, 5])
    >>> args = p.parse_args(["--runs", "hybrid"])
    >>> args.runs, args.epochs, args.full, args.lr
    (['hybrid'], 5, False, 0.0001)
    """
    p = parser
    p.add_argument("--out", default=out, help="output folder")
    p.add_argument("--full", action="store_true", help="every mode with both starts (see the README for its time)")
    p.add_argument("--runs", nargs="+", default=None, metavar="NAME",
                   help="more students on top of the default ones (e.g. hybrid target+transfer); "
                        "finished runs in --out are reused")
    p.add_argument("--fresh", action="store_true", help="rerun runs whose results exist")
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--epochs", type=int, default=epochs, help="student epochs")
    p.add_argument("--std_epochs", type=int, default=std_epochs)
    p.add_argument("--transfer_steps", type=int, default=transfer_steps)
    p.add_argument("--batch_seconds", type=float, default=batch_seconds, help="seconds of audio per (dynamic) batch")
    p.add_argument("--num_buckets", type=int, default=20)
    p.add_argument("--lr", type=float, default=lr, help="pretrained weights' rate")
    p.add_argument("--new_lr_scale", type=float, default=new_lr_scale, help="new mixers' and head's rate / lr")
    p.add_argument("--decay_factor", type=float, default=decay_factor,
                   help="exponential decay of the rate over a run (its mean ~ a cosine schedule's)")
    p.add_argument("--alpha_layer", type=float, default=alpha_layer, help="layer-loss weight")
    p.add_argument("--seconds", type=float, nargs="+", default=list(seconds), help="timed input lengths")
    return p


def demo_overrides(args, data_folder, steps, source, head_pattern):
    """The ``train.py`` overrides every run of a demo shares (its sizes; the YAML keeps the paper's).

    Arguments
    ---------
    args : argparse.Namespace
        From a parser with :func:`add_demo_options`.
    data_folder : str
    steps : int
        Optimizer steps per epoch (:func:`batches_per_epoch`).
    source : str
        The pretrained source.
    head_pattern : str
        Regular expression of the task head's parameter names (trained,
        with the new mixers, at ``new_lr_scale`` times the rate).

    Returns
    -------
    list

    Example
    -------
    >>> import argparse
    >>> args = add_demo_options(argparse.ArgumentParser(), "o", 2, 2, 10, 30.0, 1.0, [1]).parse_args([])
    >>> ov = demo_overrides(args, "/data", 50, "whisper-tiny.en", r"^model\\.head\\.")
    >>> ov[ov.index("--decay_total_steps") + 1], ov[ov.index("--max_batch_length") + 1]
    (100, 30.0)
    """
    scales = {r"\.mixer\.": args.new_lr_scale, head_pattern: args.new_lr_scale}
    return [
        "--data_folder", data_folder,
        "--source", source,
        "--seed", args.seed,
        "--number_of_epochs", args.epochs,
        "--dynamic_batching", True,
        "--max_batch_length", args.batch_seconds,
        "--num_buckets", args.num_buckets,
        "--grad_accumulation_factor", 1,
        "--num_workers", 0,
        "--lr", args.lr,
        "--lr_scales", json.dumps(scales),
        *schedule_args(steps * args.epochs),
        "--decay_factor", args.decay_factor,
        "--alpha_layer", args.alpha_layer,
        "--noprogressbar",
    ]


def std_overrides(args, steps):
    """The std run's own overrides: its epochs, its schedule, four waypoints.

    Example
    -------
    >>> import argparse
    >>> args = add_demo_options(argparse.ArgumentParser(), "o", 2, 4, 10, 30.0, 1.0, [1]).parse_args([])
    >>> std_overrides(args, 50)
    ['--number_of_epochs', 4, '--warmup_steps', 10, '--decay_total_steps', 200, '--distill_until', 120, \
'--waypoint_interval', 50]
    """
    total = steps * args.std_epochs
    return ["--number_of_epochs", args.std_epochs, *schedule_args(total), "--waypoint_interval", max(1, total // 4)]


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------


def wilson_interval(correct, n, z=1.96):
    """The Wilson score interval of a binomial proportion.

    Better than the normal approximation for small ``n`` and for
    proportions near 0 or 1 (it never leaves [0, 1]).

    Arguments
    ---------
    correct : int
        Successes (correct predictions).
    n : int
        Trials (test items).
    z : float
        The normal quantile (1.96: a 95 % interval).

    Returns
    -------
    low, high : float
        Fractions; ``(0.0, 1.0)`` when ``n`` is 0.

    Example
    -------
    >>> ["%.4f" % v for v in wilson_interval(5, 10)]
    ['0.2366', '0.7634']
    >>> ["%.4f" % v for v in wilson_interval(0, 10)]
    ['0.0000', '0.2775']
    >>> ["%.3f" % v for v in wilson_interval(167, 200)]
    ['0.777', '0.880']
    """
    if n < 0 or not 0 <= correct <= n:
        raise ValueError(f"wilson_interval needs 0 <= correct <= n, got correct={correct}, n={n}.")
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------------------
# Results files
# ---------------------------------------------------------------------------


def read_results(path):
    """A run's ``results.json``, parsed, or None if missing, unreadable or incomplete.

    Complete means: a JSON object with a ``test`` dict (the run got as far
    as its test evaluation).

    Arguments
    ---------
    path : str

    Returns
    -------
    dict or None
    """
    try:
        with open(path, encoding="utf-8") as fin:
            data = json.load(fin)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        logger.warning("Cannot read %s: %s", path, err)
        return None
    if not isinstance(data, dict) or not isinstance(data.get("test"), dict):
        logger.warning("%s is incomplete (no 'test' results).", path)
        return None
    return data


def rows_from_results(results, extra=None):
    """Table rows from runs' results: one flat dict per run, in order.

    Nested dicts are flattened with dots (``test.ACC``); lists (the
    validation ``curve``) are left out. Every row has ``run`` and
    ``missing`` (True when the run has no results).

    Arguments
    ---------
    results : dict
        run name -> parsed results.json or None (:meth:`Experiment.results`).
    extra : dict or callable, optional
        More fields per row: run name -> dict, or ``extra(name, result)``
        returning a dict (``result`` may be None).

    Returns
    -------
    list of dict

    Example
    -------
    >>> res = {"std": {"test": {"ACC": 0.9}, "n_test": 50, "curve": [{"step": 1}]}, "hybrid": None}
    >>> rows = rows_from_results(res, extra=lambda name, r: {"model": name.upper()})
    >>> rows[0]
    {'run': 'std', 'missing': False, 'test.ACC': 0.9, 'n_test': 50, 'model': 'STD'}
    >>> rows[1]
    {'run': 'hybrid', 'missing': True, 'model': 'HYBRID'}
    """
    rows = []
    for name, result in results.items():
        row = {"run": name, "missing": not isinstance(result, dict)}
        if isinstance(result, dict):
            row.update(_flatten(result))
        if callable(extra):
            row.update(extra(name, result) or {})
        elif extra is not None:
            row.update(extra.get(name) or {})
        rows.append(row)
    return rows


def _flatten(mapping, prefix=""):
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        elif not isinstance(value, (list, tuple)):
            flat[name] = value
    return flat


# ---------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------


class Experiment:
    """Runs a recipe's stages in order: in-process stages and training runs.

    Arguments
    ---------
    name : str
        What the experiment is (the report's default title).
    train_script : str
        The recipe's ``train.py``.
    hparams_dir : str
        Holds ``<mode>.yaml`` of every run's mode.
    out : str
        The output folder: ``<out>/<run>/`` per run, ``<out>/logs/`` for the logs.
    runs : sequence of Run
        The training runs, in order; the std run (mode ``std``, the first
        if several) must come before the runs that read it.
    common_args : sequence
        Overrides given to every run, before the run's own ``args``
        (converted to ``str``; may also be set later as an attribute).
    env : dict, optional
        Environment variables of the training subprocesses, on top of this
        process's (``PYTHONPATH`` is put after the repository root).
    resume : bool
        Reuse runs whose ``results.json`` is complete (and let an
        interrupted run resume from its checkpoints). False: every run is
        trained again from scratch (its old folder is removed first).
    headline : Column, str or tuple, optional
        The metric shown on a run's done line: a :class:`Column`, or a key
        path into results.json (``("test", "ACC")``) with
        ``headline_label`` and ``headline_format``.
    headline_label : str, optional
        The headline's label (default: the last key).
    headline_format : str
        One of :data:`FORMATS` (``percent`` for accuracies as fractions).
    plan : sequence of str
        Names of the in-process stages to come, for the ``[i/n]`` counter
        (the runs are counted anyway).
    console : callable, optional
        Takes each console line (default: ``print``; on a terminal the
        running stage's line is then updated in place).

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> script = tmpdir.join("train.py")
    >>> script.write('''import json, os, sys
    ... out = sys.argv[sys.argv.index("--output_folder") + 1]
    ... os.makedirs(out, exist_ok=True)
    ... json.dump({"test": {"ACC": 0.75}, "n_test": 8}, open(os.path.join(out, "results.json"), "w"))
    ... ''')
    >>> _ = tmpdir.mkdir("hparams").join("std.yaml").write("")
    >>> lines = []
    >>> exp = Experiment("toy", str(script), str(tmpdir.join("hparams")), str(tmpdir.join("out")),
    ...                  [Run("std", "std")], headline=("test", "ACC"), headline_label="acc",
    ...                  headline_format="percent", plan=["prepare"], console=lines.append)
    >>> exp.stage("prepare", sum, [1, 2])
    3
    >>> exp.train_all()["std"]["test"]
    {'ACC': 0.75}
    >>> print("\\n".join(lines))  # doctest: +ELLIPSIS
    [1/2] prepare ......... running
    [1/2] prepare ......... done in 0:00
    [2/2] std ............. running (log: .../out/logs/std.log)
    [2/2] std ............. done in 0:0..., acc 75.0 %
    """

    def __init__(
        self,
        name,
        train_script,
        hparams_dir,
        out,
        runs,
        common_args=(),
        env=None,
        resume=True,
        headline=None,
        headline_label=None,
        headline_format="float",
        plan=(),
        console=None,
    ):
        self.name = name
        self.train_script = os.path.abspath(train_script)
        self.hparams_dir = os.path.abspath(hparams_dir)
        self.out = os.path.abspath(out)
        self.log_dir = os.path.join(self.out, "logs")
        self.runs = list(runs)
        self.common_args = list(common_args)
        self.env = dict(env or {})
        self.resume = resume
        self.headline = _headline_column(headline, headline_label, headline_format)
        self.plan = list(plan)
        self.console = console or print
        # Lines are rewritten in place only on a terminal, with the default console.
        self._live = console is None and _isatty(sys.stdout)
        self.stage_times = {}
        self.start_time = time.time()
        self._started = []
        self._check_runs()

    # -- bookkeeping ---------------------------------------------------------

    @property
    def total_time(self):
        """Seconds since the experiment was created."""
        return time.time() - self.start_time

    @property
    def std_run(self):
        """The run of mode ``std`` (the first if several), or None."""
        return next((run for run in self.runs if run.mode == STD_MODE), None)

    @property
    def std_folder(self):
        """Where the std-dependent runs find the std run (``<out>/std`` when it is not a Run here)."""
        return os.path.join(self.out, self.std_run.name if self.std_run else STD_MODE)

    def run_folder(self, run):
        """``<out>/<run name>``."""
        return os.path.join(self.out, _run_name(run))

    def log_path(self, name):
        """``<out>/logs/<name>.log``."""
        return os.path.join(self.log_dir, f"{name}.log")

    def _check_runs(self):
        names = [run.name for run in self.runs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Experiment '{self.name}': run names must be unique; repeated: {duplicates}.")
        std = self.std_run
        if std is not None:
            early = [run.name for run in self.runs[: self.runs.index(std)] if run.requires_std]
            if early:
                raise ValueError(
                    f"Experiment '{self.name}': runs {early} read the std run '{std.name}', "
                    "so they must come after it in runs."
                )

    def _begin(self, name):
        """Numbers a stage; returns its console line's prefix (``[i/n] name ....``)."""
        self._started.append(name)
        index = len(self._started)
        known = list(dict.fromkeys(self.plan + [run.name for run in self.runs] + self._started))
        total = max(len(known), index)
        width = max([len(n) for n in known] + [12]) + 4
        return f"[{index}/{total}] {name} " + "." * (width - len(name))

    def _show(self, prefix, status, final):
        line = f"{prefix} {status}"
        if self._live:
            if not final:  # a wrapped line could not be rewritten in place
                line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            sys.stdout.write("\r\033[K" + line + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or status.startswith("running"):
            self.console(line)

    # -- in-process stages ---------------------------------------------------

    def stage(self, name, fn, *args, **kwargs):
        """Runs ``fn(*args, **kwargs)`` as the stage ``name``; returns its result.

        What ``fn`` prints and logs (``logging`` at INFO and above) goes to
        ``<out>/logs/<name>.log``, not to the console.

        Arguments
        ---------
        name : str
            The stage's name (console line, log file, ``stage_times``).
        fn : callable
        *args, **kwargs
            Passed to ``fn``.

        Returns
        -------
        Whatever ``fn`` returns.

        Raises
        ------
        StageError
            When ``fn`` raises (the original exception is its cause).
        """
        prefix = self._begin(name)
        self._show(prefix, "running", final=False)
        log_path = self.log_path(name)
        start = time.time()
        try:
            with _capture_to(log_path) as log:
                try:
                    result = fn(*args, **kwargs)
                except BaseException:
                    log.write(traceback.format_exc())  # the traceback goes to the file, not the console
                    raise
        except KeyboardInterrupt:
            self.stage_times[name] = time.time() - start
            self._show(prefix, f"interrupted after {format_duration(self.stage_times[name])}", final=True)
            raise
        except Exception as err:
            self.stage_times[name] = time.time() - start
            self._show(prefix, f"FAILED after {format_duration(self.stage_times[name])}", final=True)
            raise StageError(name, f"{type(err).__name__}: {err}", log_path=log_path) from err
        self.stage_times[name] = time.time() - start
        self._show(prefix, f"done in {format_duration(self.stage_times[name])}", final=True)
        return result

    # -- training runs -------------------------------------------------------

    def command(self, run):
        """The command line of ``run`` (a list of str).

        Example
        -------
        >>> runs = [Run("std", "std"), Run("t", "target", ["--a", 1])]
        >>> exp = Experiment("x", "/r/train.py", "/r/hparams", "/o", runs, common_args=["--seed", 3])
        >>> exp.command(runs[1])[1:]  # doctest: +NORMALIZE_WHITESPACE
        ['/r/train.py', '/r/hparams/target.yaml', '--output_folder', '/o/t',
         '--std_folder', '/o/std', '--seed', '3', '--a', '1']
        """
        cmd = [sys.executable, self.train_script, os.path.join(self.hparams_dir, f"{run.mode}.yaml")]
        cmd += ["--output_folder", self.run_folder(run)]
        extra = merge_options([str(a) for a in self.common_args], [str(a) for a in run.args])
        if run.requires_std and "--std_folder" not in extra:
            cmd += ["--std_folder", self.std_folder]
        return cmd + extra

    def subprocess_env(self):
        """The training subprocesses' environment: this one's, ``env``, the repository on ``PYTHONPATH``."""
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.env.items()})
        env.setdefault("PYTHONUNBUFFERED", "1")
        paths = [REPO_DIR] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != REPO_DIR]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def train(self, run):
        """Trains one run in a subprocess (or reuses its finished results).

        Arguments
        ---------
        run : Run

        Returns
        -------
        dict
            The run's parsed ``results.json``.

        Raises
        ------
        StageError
            The std run it needs has no results, the mode file or the script
            is missing, the subprocess fails (the message quotes the end of
            its log), or it writes no complete ``results.json``.
        """
        prefix = self._begin(run.name)
        folder = self.run_folder(run)
        results_path = os.path.join(folder, "results.json")
        log_path = self.log_path(run.name)
        if self.resume:
            results = read_results(results_path)
            if results is not None:
                self.stage_times[run.name] = 0.0
                trained = _number(results.get("train_time_s"))
                status = "reused" + (f" (trained in {format_duration(trained)})" if trained is not None else "")
                self._show(prefix, status + self._headline_text(results), final=True)
                return results
        try:
            self._check_can_train(run)
        except StageError:
            self._show(prefix, "refused", final=True)
            raise
        if not self.resume and os.path.isdir(folder):
            logger.info("Removing %s to train it again from scratch.", folder)
            shutil.rmtree(folder)

        cmd = self.command(run)
        os.makedirs(self.log_dir, exist_ok=True)
        self._show(prefix, f"running (log: {log_path})", final=False)
        start = time.time()
        with open(log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"==== {stamp} run '{run.name}' (cwd {REPO_DIR})\n$ {shlex.join(cmd)}\n\n".encode())
            log.flush()
            proc = subprocess.Popen(
                cmd, cwd=REPO_DIR, env=self.subprocess_env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                while True:
                    try:
                        code = proc.wait(timeout=1.0)
                        break
                    except subprocess.TimeoutExpired:
                        if self._live:
                            ticker = format_duration(time.time() - start)
                            self._show(prefix, f"running {ticker} (log: {log_path})", final=False)
            except BaseException:  # KeyboardInterrupt included: never leave the child behind
                _stop(proc)
                elapsed = self.stage_times[run.name] = time.time() - start
                self._show(prefix, f"interrupted after {format_duration(elapsed)}", final=True)
                raise
        elapsed = self.stage_times[run.name] = time.time() - start
        if code != 0:
            self._show(prefix, f"FAILED after {format_duration(elapsed)} (exit status {code})", final=True)
            raise StageError(
                run.name,
                f"{os.path.basename(self.train_script)} exited with status {code} after "
                f"{format_duration(elapsed)}.\nCommand: {shlex.join(cmd)}",
                log_path=log_path,
                returncode=code,
                tail=_tail(log_path, TAIL_LINES),
            )
        results = read_results(results_path)
        if results is None:
            self._show(prefix, f"FAILED after {format_duration(elapsed)} (no results)", final=True)
            raise StageError(
                run.name,
                f"{os.path.basename(self.train_script)} finished but wrote no complete {results_path} "
                "(a JSON object with a 'test' entry).",
                log_path=log_path,
                returncode=code,
                tail=_tail(log_path, TAIL_LINES),
            )
        self._show(prefix, f"done in {format_duration(elapsed)}" + self._headline_text(results), final=True)
        return results

    def train_all(self):
        """Trains (or reuses) every run in order; see :meth:`train`.

        Returns
        -------
        dict
            run name -> parsed results.json.
        """
        return {run.name: self.train(run) for run in self.runs}

    def _check_can_train(self, run):
        mode_file = os.path.join(self.hparams_dir, f"{run.mode}.yaml")
        for path, what in ((self.train_script, "training script"), (mode_file, f"mode file of '{run.mode}'")):
            if not os.path.isfile(path):
                raise StageError(run.name, f"the {what} {path} does not exist.")
        if not run.requires_std or "--std_folder" in run.args:
            return
        if read_results(os.path.join(self.std_folder, "results.json")) is not None:
            return
        std = self.std_run
        if std is None:
            why = (f"no run of mode '{STD_MODE}' is in this experiment and {self.std_folder} holds no "
                   "finished std run (results.json); add Run('std', 'std') before it")
        else:
            why = (f"the std run '{std.name}' has not finished (no complete "
                   f"{self.std_folder}/results.json); train it first")
        raise StageError(run.name, f"mode '{run.mode}' needs the std run: {why}.")

    def _headline_text(self, results):
        if self.headline is None or self.headline.value(results) is None:
            return ""
        unit = " %" if self.headline.format == "percent" and self.headline.n_key is None else ""
        return f", {self.headline.header} {self.headline.cell(results)}{unit}"

    # -- results -------------------------------------------------------------

    def results(self):
        """Every run's parsed results.json, in run order.

        Returns
        -------
        dict
            run name -> dict, or None (with a warning) when the file is
            missing, unreadable or incomplete.
        """
        results = {}
        for run in self.runs:
            path = os.path.join(self.run_folder(run), "results.json")
            results[run.name] = read_results(path)
            if results[run.name] is None:
                logger.warning("Run '%s' has no usable results (%s).", run.name, path)
        return results

    def report(self, rows, columns, **kwargs):
        """Writes the report (:func:`write_report`) with the stage times; shows the table.

        Arguments
        ---------
        rows : list of dict
        columns : list
        **kwargs
            More arguments of :func:`write_report` (``title`` defaults to the
            experiment's name).

        Returns
        -------
        dict
            What :func:`write_report` returns.
        """
        kwargs.setdefault("title", self.name)
        kwargs.setdefault("stage_times", self.stage_times)
        kwargs.setdefault("total_s", self.total_time)
        report = write_report(self.out, rows, columns, **kwargs)
        self.console("")
        self.console(report["table"])
        if report.get("timing_table"):
            self.console("")
            self.console(report["timing_table"])
        for heading, text in kwargs.get("sections", ()):
            self.console(f"\n{heading}:\n{text.strip()}")
        total = format_duration(kwargs["total_s"])
        self.console(f"\nreport: {report['md']} (plot {report['png']}); total time {total}")
        return report


def _run_name(run):
    return run.name if isinstance(run, Run) else str(run)


def _headline_column(headline, label, fmt):
    if headline is None or isinstance(headline, Column):
        return headline
    key = headline if isinstance(headline, str) else tuple(headline)
    parts = key.split(".") if isinstance(key, str) else key
    return Column(key, label or parts[-1], fmt)


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _stop(proc, grace=10.0):
    """Terminates a child process (then kills it if it does not stop)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _tail(path, n):
    """The last ``n`` lines of a text file, indented (empty if unreadable)."""
    try:
        with open(path, "rb") as fin:
            fin.seek(0, os.SEEK_END)
            size = fin.tell()
            fin.seek(max(0, size - 64 * 1024))
            lines = fin.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in lines[-n:])


def merge_options(*arg_lists):
    """Joins command-line option lists; a later ``--key value`` replaces an earlier one.

    SpeechBrain refuses an option given twice, so a run's own options must
    replace the common ones rather than follow them. A ``--key`` followed by
    another ``--key`` (or by nothing) is a flag.

    Arguments
    ---------
    *arg_lists : list of str

    Returns
    -------
    list of str

    Example
    -------
    >>> merge_options(["--lr", "1", "--noprogressbar", "--seed", "3"], ["--lr", "2"])
    ['--lr', '2', '--noprogressbar', '--seed', '3']
    """
    merged = {}
    for args in arg_lists:
        i = 0
        while i < len(args):
            key = args[i]
            if not key.startswith("--"):
                raise ValueError(f"Expected an option (--key) in {args}, got '{key}' at position {i}.")
            if i + 1 < len(args) and not args[i + 1].startswith("--"):
                merged[key] = [args[i + 1]]
                i += 2
            else:
                merged[key] = []
                i += 1
    return [item for key, value in merged.items() for item in [key, *value]]


@contextlib.contextmanager
def _capture_to(log_path):
    """Sends ``print`` output, progress bars and INFO+ log records to ``log_path`` for the duration.

    Console handlers already on the root logger keep the level they had, so
    lowering the root level to INFO (for the file) shows nothing new on screen.
    """
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    root = logging.getLogger()
    old_level = root.level
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"==== {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        log.flush()
        handler = logging.StreamHandler(log)
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        raised = []
        if old_level > logging.INFO or old_level == logging.NOTSET:
            effective = old_level or logging.WARNING
            for h in root.handlers:
                if h.level < effective:
                    raised.append((h, h.level))
                    h.setLevel(effective)
            root.setLevel(logging.INFO)
        root.addHandler(handler)
        try:
            # Progress bars (tqdm writes to sys.stderr) go to the log too.
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield log
        finally:
            root.removeHandler(handler)
            root.setLevel(old_level)
            for h, level in raised:
                h.setLevel(level)


# ---------------------------------------------------------------------------
# Inference timing
# ---------------------------------------------------------------------------


def time_inference(models, make_input, lengths, repeats=3, warmup=1, unit="", reference=None):
    """Median forward time of each model against input length.

    Every model sees the same inputs (``make_input`` is called once per
    length); models are timed length by length, in turn, so a slow drift of
    the machine affects them alike. On CUDA inputs the device is
    synchronised around each call and the forward's peak memory (beyond
    what was allocated before it) is recorded too.

    Arguments
    ---------
    models : dict
        name -> callable (a model in eval mode, a ``classify_batch`` ...).
    make_input : callable
        ``make_input(length)`` -> tuple of positional arguments (a single
        value is wrapped).
    lengths : sequence of float
        Input lengths (seconds of audio, tokens ...).
    repeats : int
        Timed calls per (model, length); the median is kept.
    warmup : int
        Untimed calls first.
    unit : str
        The lengths' unit, for the report ("s", "tokens").
    reference : str, optional
        The model others' speed-up is measured against (default: the first).

    Returns
    -------
    dict
        ``lengths``, ``unit``, ``reference``, ``ms`` (name -> list of median
        ms, one per length), ``repeats``, ``device``, ``threads``, and
        ``peak_mib`` (name -> list) on CUDA.

    Example
    -------
    >>> import torch
    >>> models = {"big": torch.nn.Linear(8, 8), "small": torch.nn.Linear(8, 2)}
    >>> t = time_inference(models, lambda n: (torch.randn(n, 8),), [4, 16], repeats=2, unit="rows")
    >>> t["reference"], len(t["ms"]["small"]), all(v > 0 for v in t["ms"]["big"])
    ('big', 2, True)
    """
    import torch
    from tqdm import tqdm

    names = list(models)
    lengths = list(lengths)
    if not names or not lengths:
        raise ValueError("time_inference needs at least one model and one length.")
    if repeats < 1 or warmup < 0:
        raise ValueError(f"time_inference needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    reference = names[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models {names}.")
    for name in names:
        if isinstance(models[name], torch.nn.Module) and models[name].training:
            logger.warning("Timing model '%s' in training mode (dropout on); call .eval() first.", name)

    ms = {name: [] for name in names}
    peak = {name: [] for name in names}
    device = "cpu"
    bar = tqdm(total=len(names) * len(lengths), desc="timing", file=sys.stderr, leave=False,
               disable=not _isatty(sys.stderr))
    try:
        with torch.inference_mode():
            for length in lengths:
                inputs = make_input(length)
                inputs = inputs if isinstance(inputs, tuple) else (inputs,)
                cuda = next((a.device for a in inputs if torch.is_tensor(a) and a.is_cuda), None)
                device = str(cuda) if cuda is not None else device
                for name in names:
                    ms[name].append(_median_ms(models[name], inputs, repeats, warmup, cuda))
                    if cuda is not None:
                        peak[name].append(_peak_mib(models[name], inputs, cuda))
                    bar.set_postfix_str(f"{name} @ {length}{unit}", refresh=False)
                    bar.update(1)
    finally:
        bar.close()
    timing = {
        "lengths": lengths,
        "unit": unit,
        "reference": reference,
        "ms": ms,
        "repeats": repeats,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if any(peak.values()):
        timing["peak_mib"] = peak
    return timing


def _median_ms(model, inputs, repeats, warmup, cuda):
    import torch

    for _ in range(warmup):
        model(*inputs)
    times = []
    for _ in range(repeats):
        if cuda is not None:
            torch.cuda.synchronize(cuda)
        start = time.perf_counter()
        model(*inputs)
        if cuda is not None:
            torch.cuda.synchronize(cuda)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _peak_mib(model, inputs, cuda):
    import torch

    torch.cuda.synchronize(cuda)
    before = torch.cuda.memory_allocated(cuda)
    torch.cuda.reset_peak_memory_stats(cuda)
    model(*inputs)
    torch.cuda.synchronize(cuda)
    return (torch.cuda.max_memory_allocated(cuda) - before) / 2**20


def _proc_status_kib(field):
    """A ``/proc/self/status`` field in KiB (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as fin:
            for line in fin:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def measure_call(fn, *args, **kwargs):
    """Calls ``fn`` once; its result, wall time and peak memory.

    Peak memory is what the call needed beyond what was in use before it:
    on CUDA (when a GPU is in use) the allocator's peak; on the CPU the
    resident set's high-water mark, reset before the call (Linux
    ``/proc/self/clear_refs``; elsewhere None). On the CPU the figure
    counts every allocation of the process during the call, so measure in
    a fresh process (:func:`measure_isolated`) for figures that earlier
    work cannot blur.

    Arguments
    ---------
    fn : callable
    *args, **kwargs
        Its arguments.

    Returns
    -------
    dict
        ``result``, ``seconds``, ``peak_mib`` (or None), ``device``
        (``cpu`` or ``cuda``).

    Example
    -------
    >>> import torch
    >>> out = measure_call(lambda n: torch.ones(n).sum().item(), 32 * 2**20)  # 128 MiB of float32
    >>> out["result"], out["seconds"] > 0
    (33554432.0, True)
    >>> out["peak_mib"] is None or out["peak_mib"] > 100
    True
    """
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    before_rss = None
    if cuda:
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fout:
                fout.write("5")  # resets VmHWM to the current resident set
            before_rss = _proc_status_kib("VmRSS")
        except OSError:
            before_rss = None
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = None
    if cuda:
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    elif before_rss is not None:
        high = _proc_status_kib("VmHWM")
        peak = None if high is None else max(0, high - before_rss) / 1024
    return {"result": result, "seconds": seconds, "peak_mib": peak, "device": "cuda" if cuda else "cpu"}


def _measure_in_child(fn, args, kwargs, setup):
    import torch

    torch.set_grad_enabled(False)
    if setup is not None:
        args = (setup(), *args)
    return measure_call(fn, *args, **kwargs)


def measure_isolated(fn, *args, setup=None, timeout=None, **kwargs):
    """:func:`measure_call` in a fresh process, so earlier work cannot blur the peak.

    Arguments
    ---------
    fn : callable
        Picklable: a module-level function (or a ``functools.partial`` of one).
    *args, **kwargs
        Its arguments (picklable).
    setup : callable, optional
        Picklable; called in the child first, not measured (e.g. loading a
        model), its result passed to ``fn`` as the first argument.
    timeout : float, optional
        Seconds before the child is stopped (a ``TimeoutError``).

    Returns
    -------
    dict
        As :func:`measure_call`.

    Example
    -------
    >>> measure_isolated(sum, [1, 2, 3])["result"]
    6
    >>> import functools
    >>> measure_isolated(max, 5, setup=functools.partial(int, "7"))["result"]
    7
    """
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        future = pool.submit(_measure_in_child, fn, args, kwargs, setup)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()
            raise TimeoutError(f"{getattr(fn, '__name__', fn)} took more than {timeout} s.") from None


# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------


def format_markdown_table(header, rows, align=None):
    """A Markdown table, its columns padded so it also reads as plain text.

    Arguments
    ---------
    header : sequence of str
    rows : sequence of sequences
        Cells (converted with ``str``; ``|`` is escaped).
    align : sequence of str, optional
        ``"left"`` or ``"right"`` per column. Default: right for columns
        whose cells all look like numbers, left otherwise.

    Returns
    -------
    str

    Example
    -------
    >>> print(format_markdown_table(["run", "acc %"], [["std", "91.7"], ["hybrid", "n/a"]]))
    | run    | acc % |
    |:-------|------:|
    | std    |  91.7 |
    | hybrid |   n/a |
    """
    header = [_md_cell(h) for h in header]
    body = [[_md_cell(c) for c in row] + [""] * (len(header) - len(row)) for row in rows]
    if align is None:
        numeric = [bool(body) and all(_looks_numeric(r[i]) for r in body) for i in range(len(header))]
        align = ["right" if n else "left" for n in numeric]
    widths = [max([len(header[i]), 3] + [len(r[i]) for r in body]) for i in range(len(header))]

    def line(cells):
        padded = [c.rjust(w) if a == "right" else c.ljust(w) for c, w, a in zip(cells, widths, align)]
        return "| " + " | ".join(padded) + " |"

    rule = "|".join(":" + "-" * (w + 1) if a == "left" else "-" * (w + 1) + ":" for w, a in zip(widths, align))
    rule = f"|{rule}|"
    return "\n".join([line(header), rule] + [line(r) for r in body])


def _md_cell(value):
    return str(value).replace("|", "\\|").replace("\n", " ")


def _looks_numeric(cell):
    text = cell.strip()
    return text in ("n/a", "-", "") or text[:1].isdigit() or (text[:1] == "-" and text[1:2].isdigit())


def _ms_text(value):
    if value is None:
        return "n/a"
    return f"{value:.0f}" if value >= 100 else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def _length_text(length, unit):
    text = f"{length:g}" if isinstance(length, (int, float)) else str(length)
    return f"{text} {unit}".strip()


def timing_table(timing):
    """The timing of :func:`time_inference` as a Markdown table (ms, speed-up vs the reference).

    Arguments
    ---------
    timing : dict

    Returns
    -------
    str

    Example
    -------
    >>> t = {"lengths": [2, 30], "unit": "s", "reference": "teacher",
    ...      "ms": {"teacher": [10.0, 400.0], "student": [12.0, 80.0]}}
    >>> print(timing_table(t))
    | model   |    ms @ 2 s |   ms @ 30 s |
    |:--------|------------:|------------:|
    | teacher | 10.0 (1.0x) |  400 (1.0x) |
    | student | 12.0 (0.8x) | 80.0 (5.0x) |
    """
    lengths = list(timing.get("lengths") or [])
    unit = timing.get("unit", "")
    ms = timing.get("ms") or {}
    reference = ms.get(timing.get("reference")) or next(iter(ms.values()), [])
    peak = timing.get("peak_mib") or {}
    header = ["model"] + [f"ms @ {_length_text(n, unit)}" for n in lengths]
    if peak:
        header.append(f"peak MiB @ {_length_text(lengths[-1], unit)}")
    rows = []
    for name, values in ms.items():
        cells = [name]
        for i in range(len(lengths)):
            value = _number(values[i]) if i < len(values) else None
            ref = _number(reference[i]) if i < len(reference) else None
            cell = _ms_text(value)
            if value and ref:
                cell += f" ({ref / value:.1f}x)"
            cells.append(cell)
        if peak:
            cells.append(_ms_text(_number((peak.get(name) or [None])[-1])))
        rows.append(cells)
    return format_markdown_table(header, rows)


def write_report(out, rows, columns, title=None, paper_rows=None, notes=(), timing=None, curves=None,
                 stage_times=None, total_s=None, plot_column=None, sections=()):
    """Writes ``results.md``, ``results.json`` and ``results.png`` into ``out``.

    Arguments
    ---------
    out : str
        The folder to write into.
    rows : list of dict
        One per run (:func:`rows_from_results`, plus the recipe's own
        fields); a row with ``missing`` true is marked "(no results)".
    columns : list
        :class:`Column` objects (or what :meth:`Column.of` takes); the
        first is usually ``Column("run", "run")``.
    title : str, optional
        The report's heading.
    paper_rows : list of dict, optional
        The paper's numbers, a second table (its headers: the dicts' keys).
    notes : sequence of str
        Bullet points under the tables.
    timing : dict, optional
        From :func:`time_inference`: a table and a panel.
    curves : dict, optional
        run name -> the ``curve`` of its results.json (validation metric
        per step): a panel.
    stage_times : dict, optional
        Stage name -> seconds (:attr:`Experiment.stage_times`).
    total_s : float, optional
        The whole experiment's wall time.
    plot_column : Column or key, optional
        The column drawn as bars (default: the first with an interval, else
        the first percent column, else the first numeric one).
    sections : sequence of (str, str)
        More sections of the recipe's own (heading, Markdown text), after
        the inference times.

    Returns
    -------
    dict
        ``md``, ``json``, ``png`` (paths), ``table`` (the results table as
        Markdown text), ``timing_table`` (or None).

    Example
    -------
    >>> out = str(getfixture("tmpdir"))
    >>> rows = [{"run": "std", "test.ACC": 0.9, "n_test": 100}, {"run": "hybrid", "missing": True}]
    >>> rep = write_report(out, rows, [Column("run"), Column("test.ACC", "acc %", "percent", n_key="n_test")])
    >>> print(rep["table"])
    | run                 |            acc % |
    |:--------------------|-----------------:|
    | std                 | 90.0 (82.6-94.5) |
    | hybrid (no results) |              n/a |
    >>> sorted(os.path.basename(p) for k, p in rep.items() if k in ("md", "json", "png"))
    ['results.json', 'results.md', 'results.png']
    """
    columns = [Column.of(c) for c in columns]
    os.makedirs(out, exist_ok=True)
    body = []
    for row in rows:
        cells = [col.cell(row) for col in columns]
        if row.get("missing") and cells:
            cells[0] += " (no results)" if cells[0] != "n/a" else ""
        body.append(cells)
    table = format_markdown_table([c.header for c in columns], body)
    timing_text = timing_table(timing) if timing and timing.get("ms") else None

    parts = [f"# {title}", ""] if title else []
    parts += [table, ""]
    intervals = [c.header for c in columns if c.n_key is not None]
    if intervals:
        parts += [f"In brackets ({'; '.join(intervals)}): the 95 % Wilson score interval of the proportion "
                  "over the run's test items.", ""]
    if paper_rows:
        keys = list(dict.fromkeys(k for r in paper_rows for k in r))
        paper = format_markdown_table(keys, [[r.get(k, "") for k in keys] for r in paper_rows])
        parts += ["## Paper", "", paper, ""]
    if timing_text:
        device = timing.get("device", "cpu")
        where = f"{device}, {timing.get('threads')} threads" if device == "cpu" else device
        parts += [
            "## Inference time",
            "",
            f"Median of {timing.get('repeats', '?')} forward passes ({where}); in brackets the speed-up "
            f"over {timing.get('reference')}.",
            "",
            timing_text,
            "",
        ]
    for heading, text in sections:
        parts += [f"## {heading}", "", text.strip(), ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if stage_times:
        stage_rows = [[name, format_duration(s)] for name, s in stage_times.items()]
        if total_s is not None:
            stage_rows.append(["total", format_duration(total_s)])
        parts += ["## Stage times", "", format_markdown_table(["stage", "time"], stage_rows), ""]

    paths = {name: os.path.join(out, f"results.{name}") for name in ("md", "json", "png")}
    _write_text(paths["md"], "\n".join(parts))
    summary = {
        "title": title,
        "columns": [dataclasses.asdict(c) for c in columns],
        "rows": [dict(row, ci95=_intervals(row, columns)) for row in rows],
        "table": table,
        "paper_rows": paper_rows,
        "notes": list(notes),
        "sections": [list(section) for section in sections],
        "timing": timing,
        "curves": curves,
        "stage_times_s": stage_times,
        "total_s": total_s,
    }
    _write_text(paths["json"], json.dumps(_plain(summary), indent=2, allow_nan=False))
    bar_column = Column.of(plot_column) if plot_column is not None else _default_plot_column(columns)
    plot_results(paths["png"], rows, bar_column, timing, curves, title)
    return dict(paths, table=table, timing_table=timing_text)


def _write_text(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as fout:
        fout.write(text if text.endswith("\n") else text + "\n")
    os.replace(path + ".tmp", path)


def _plain(value):
    """JSON-safe: NaN/inf -> None, tuples -> lists, unknown objects -> str."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    number = _number(value)
    return number if number is not None else str(value)


def _intervals(row, columns):
    """key -> [low, high] of the row's cells that have an interval."""
    found = {_key_text(c.key): c.interval(row) for c in columns}
    return {key: list(ci) for key, ci in found.items() if ci is not None}


def _default_plot_column(columns):
    tests = (lambda c: c.n_key is not None, lambda c: c.format == "percent", lambda c: c.format == "float")
    for test in tests:
        found = next((c for c in columns if test(c)), None)
        if found is not None:
            return found
    return None


def plot_results(path, rows, column, timing=None, curves=None, title=None):
    """Draws the report's figure: metric per run, time vs length, validation curves.

    Panels are drawn for what is there: bars of ``column`` per run (with
    their intervals), forward time against input length per model (log-log
    over a wide range), the validation metric per run over training steps.

    Arguments
    ---------
    path : str
        The PNG to write.
    rows : list of dict
    column : Column or None
        The metric of the bars.
    timing : dict, optional
        From :func:`time_inference`.
    curves : dict, optional
        run name -> list of ``{"step": s, "valid": {metric: value}}``.
    title : str, optional

    Returns
    -------
    str
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = ["bars"]
    if timing and timing.get("ms") and timing.get("lengths"):
        panels.append("timing")
    metric, series = _curve_series(curves or {}, column)
    if series:
        panels.append("curves")
    fig = Figure(figsize=(5.2 * len(panels), 4.4))
    FigureCanvasAgg(fig)  # no pyplot: the caller's backend is left alone
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, panel in zip(axes, panels):
        if panel == "bars":
            _draw_bars(ax, rows, column)
        elif panel == "timing":
            _draw_timing(ax, timing)
        else:
            percent = column is not None and column.format == "percent"
            _draw_curves(ax, metric, series, scale=100.0 if percent else 1.0)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _draw_bars(ax, rows, column):
    if column is None or not rows:
        ax.text(0.5, 0.5, "no metric to plot", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    scale = 100.0 if column.format == "percent" else 1.0
    labels, values, low, high = [], [], [], []
    for row in rows:
        value = _number(column.value(row))
        labels.append(str(row.get("run", "?")) + ("" if value is not None else "\n(no results)"))
        values.append(0.0 if value is None else scale * value)
        ci = column.interval(row)
        low.append(0.0 if ci is None else scale * (value - ci[0]))
        high.append(0.0 if ci is None else scale * (ci[1] - value))
    xs = list(range(len(rows)))
    ax.bar(xs, values, color="#4c72b0")
    with_ci = [i for i, row in enumerate(rows) if column.interval(row) is not None]
    if with_ci:
        ax.errorbar([xs[i] for i in with_ci], [values[i] for i in with_ci],
                    yerr=[[low[i] for i in with_ci], [high[i] for i in with_ci]],
                    fmt="none", ecolor="black", capsize=4, lw=1)
    for i, row in enumerate(rows):
        if _number(column.value(row)) is not None:
            text = f"{values[i]:.1f}" if scale != 1.0 else f"{values[i]:.3g}"
            ax.annotate(text, (xs[i], values[i] + high[i]), ha="center", va="bottom", fontsize=8,
                        xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(column.header)
    if column.format == "percent":
        ax.set_ylim(0, 105)
    ax.set_title(f"{column.header} per run", fontsize=10)
    if with_ci:
        ax.set_xlabel("error bars: 95 % Wilson interval", fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _draw_timing(ax, timing):
    lengths = list(timing["lengths"])
    unit = timing.get("unit", "")
    numeric = [_number(n) for n in lengths]
    for name, values in timing["ms"].items():
        points = [(x, _number(v)) for x, v in zip(numeric, values)]
        points = [(x, y) for x, y in points if x is not None and y is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
    positive = [x for x in numeric if x and x > 0]
    if positive and max(positive) / min(positive) >= 8:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(f"input length ({unit})" if unit else "input length")
    ax.set_ylabel(f"forward time (ms, {timing.get('device', 'cpu')})")
    ax.set_title("inference time vs input length", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")


def _curve_series(curves, column):
    """The validation metric to draw and its (x, y) points per run."""
    lists = [curve for curve in curves.values() if isinstance(curve, list)]
    entries = [entry for curve in lists for entry in curve if isinstance(entry, dict)]
    valid_keys = [k for e in entries if isinstance(e.get("valid"), dict) for k in e["valid"]]
    if not valid_keys:
        return None, {}
    wanted = None
    if column is not None:
        wanted = (column.key.split(".") if isinstance(column.key, str) else list(column.key))[-1]
    metric = wanted if wanted in valid_keys else next((k for k in valid_keys if k != "loss"), valid_keys[0])
    series = {}
    for run, curve in curves.items():
        points = []
        for i, entry in enumerate(curve if isinstance(curve, list) else []):
            valid = entry.get("valid") if isinstance(entry, dict) else None
            y = _number(valid.get(metric)) if isinstance(valid, dict) else None
            x = _number(entry.get("step", entry.get("epoch", i + 1))) if y is not None else None
            if x is not None:
                points.append((x, y))
        if points:
            series[run] = points
    return metric, series


def _draw_curves(ax, metric, series, scale):
    scale = scale if all(0 <= y <= 1 for pts in series.values() for _, y in pts) else 1.0
    for run, points in series.items():
        ax.plot([p[0] for p in points], [scale * p[1] for p in points], ".-", label=run)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"validation {metric}" + (" (%)" if scale != 1.0 else ""))
    ax.set_title(f"validation {metric} during training", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
