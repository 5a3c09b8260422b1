"""What every recipe's ``train.py`` shares: the stage bookkeeping and ``main()``.

A recipe keeps only what is specific to its dataset:

* a :class:`RecipeBrain` subclass with ``forward_model`` and
  ``compute_task_loss`` (see :class:`cald_brain.distill.DistillBrain`) and
  its evaluation metrics (``init_metrics``, ``update_metrics``,
  ``summarize_metrics``);
* ``prepare(hparams)``, which calls its ``prepare_<dataset>`` (run on the
  main process only);
* ``dataio_prepare(hparams) -> (datasets, extras)``, its data pipelines.

:func:`run_recipe` does the rest, the same way for every recipe: parse the
command line, merge the mode file over ``base.yaml`` (with overrides), make
the experiment folder, prepare the data on the main process, build the
Brain, write the inference spec (:func:`cald_brain.inference.write_model_spec`),
train, evaluate the best checkpoint on test, and write ``results.json``::

    {"mode": ..., "test": {metric: value}, "n_test": ..., "params": ...,
     "train_time_s": ..., "optimizer_steps": ...,
     "curve": [{"epoch": e, "step": s, "valid": {metric: value}}, ...]}

which :mod:`cald_brain.experiment` reads.

Hparams read (besides DistillBrain's): ``mode``, ``output_folder``,
``save_folder``, ``modules``, ``opt_class``, ``checkpointer``,
``epoch_counter``, ``train_logger``, the dataloader options
``{train,valid,test}_dataloader_opts``, ``select_key`` (the validation
metric that picks the best checkpoint, default ``ACC``), ``select_mode``
(``max`` or ``min``), and, for packaging, ``mixer``, ``mixer_kwargs``.

Authors
 * cald-brain developers 2026
"""

import json
import logging
import math
import os
import shutil
import time

import speechbrain as sb
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process, run_on_main

from cald_brain.distill import DistillBrain
from cald_brain.hparams import load_recipe_hparams

logger = logging.getLogger(__name__)

SELECT_MODES = ("max", "min")


class RecipeBrain(DistillBrain):
    """A DistillBrain with the stage bookkeeping of every recipe.

    Subclasses implement ``forward_model`` and ``compute_task_loss`` (see
    :class:`~cald_brain.distill.DistillBrain`) and, for evaluation:

    * ``init_metrics(stage)``: reset the metric accumulators;
    * ``update_metrics(predictions, batch, stage)``: add one batch
      (``predictions`` is the student's :class:`~cald_brain.distill.ModelOutputs`);
    * ``summarize_metrics(stage) -> dict``: the stage's numbers, the
      ``select_key`` one included.

    At the end of each validation this class logs the losses and metrics,
    records them in ``self.curve`` (saved with the checkpoints, so a resumed
    run keeps its curve) and keeps the best checkpoint by ``select_key``; at
    the end of the test stage the numbers are in ``self.test_stats``.
    """

    def init_metrics(self, stage):
        """Resets the metric accumulators (no metrics by default).

        Arguments
        ---------
        stage : speechbrain.Stage
        """

    def update_metrics(self, predictions, batch, stage):
        """Adds one evaluation batch to the metrics (nothing by default).

        Arguments
        ---------
        predictions : cald_brain.distill.ModelOutputs
            The student's outputs.
        batch : Any
        stage : speechbrain.Stage
        """

    def summarize_metrics(self, stage):
        """The stage's metrics (none by default).

        Arguments
        ---------
        stage : speechbrain.Stage

        Returns
        -------
        dict of str to float
        """
        return {}

    @property
    def select_key(self):
        """The validation metric that selects the best checkpoint."""
        return getattr(self.hparams, "select_key", "ACC")

    @property
    def select_mode(self):
        """``max`` or ``min``: which way ``select_key`` improves."""
        mode = getattr(self.hparams, "select_mode", "max")
        if mode not in SELECT_MODES:
            raise ValueError(f"select_mode must be one of {SELECT_MODES}, got '{mode}'.")
        return mode

    def compute_objectives(self, predictions, batch, stage):
        """The training loss; in VALID/TEST also feeds the metrics."""
        loss = super().compute_objectives(predictions, batch, stage)
        if stage != sb.Stage.TRAIN:
            self.update_metrics(predictions.student, batch, stage)
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Resets the metrics of an evaluation stage."""
        super().on_stage_start(stage, epoch)
        if stage != sb.Stage.TRAIN:
            self.init_metrics(stage)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the stage; records the curve; keeps the best checkpoint."""
        stats = self.stage_stats(stage_loss, stage)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats.update(self.summarize_metrics(stage))
        if stage == sb.Stage.VALID:
            if self.select_key not in stats:
                raise KeyError(
                    f"select_key '{self.select_key}' is not among the validation metrics "
                    f"({', '.join(sorted(stats))}); set --select_key to one of them."
                )
            meta = {"epoch": epoch, "step": self.optimizer_step}
            self.hparams.train_logger.log_stats(
                stats_meta=dict(meta, lr=self.optimizer.param_groups[0]["lr"]),
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            self.curve.append(dict(meta, valid={k: _plain(v) for k, v in stats.items()}))
            keys = {"max_keys" if self.select_mode == "max" else "min_keys": [self.select_key]}
            self.checkpointer.save_and_keep_only(
                meta={self.select_key: stats[self.select_key], "step": self.optimizer_step},
                **keys,
            )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            self.test_stats = {k: _plain(v) for k, v in stats.items()}

    def init_optimizers(self):
        """As SpeechBrain's, with per-pattern rate scales (hparam ``lr_scales``).

        ``lr_scales: {"\\.mixer\\.": 10}`` trains the new mixers at 10x
        ``lr``; pair it with :class:`cald_brain.schedulers.GroupScaledSchedule`
        so the schedule keeps the ratio.
        """
        super().init_optimizers()
        scales = getattr(self.hparams, "lr_scales", None)
        if not scales or self.opt_class is None:
            return
        from cald_brain.schedulers import scaled_param_groups

        self.optimizer = self.opt_class(scaled_param_groups(self.modules, self.hparams.lr, scales))
        self.optimizers_dict["opt_class"] = self.optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.curve = ValidationCurve()
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("validation_curve", self.curve, optional_load=True)


@register_checkpoint_hooks
class ValidationCurve(list):
    """The validation numbers of every epoch so far (checkpointable).

    Example
    -------
    >>> curve = ValidationCurve()
    >>> curve.append({"epoch": 1, "step": 10, "valid": {"ACC": 0.5}})
    >>> path = str(getfixture("tmpdir").join("curve.json"))
    >>> curve._save(path); restored = ValidationCurve(); restored._load(path, True)
    >>> restored
    [{'epoch': 1, 'step': 10, 'valid': {'ACC': 0.5}}]
    """

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fo:
            json.dump(list(self), fo)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch
        with open(path, encoding="utf-8") as fi:
            self[:] = json.load(fi)


def _plain(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return value
    return None if math.isnan(value) else value


def run_recipe(argv, recipe_dir, brain_class, dataio_prepare, prepare=None, interface=None, setup=None):
    """Trains one mode of a recipe, evaluates it on test, writes results.json.

    Arguments
    ---------
    argv : list of str
        Command-line arguments (``hparams_file``, then options and overrides).
    recipe_dir : str
        The recipe's folder (``hparams/...`` paths are also looked up there).
    brain_class : type
        The recipe's :class:`RecipeBrain` subclass.
    dataio_prepare : callable
        ``dataio_prepare(hparams) -> (datasets, extras)``: ``datasets`` has
        ``train``, ``valid`` and ``test``; ``extras`` is handed to ``setup``.
    prepare : callable, optional
        ``prepare(hparams)``: the data preparation, run on the main process.
    interface : type or callable, optional
        The SpeechBrain interface that loads the packaged model (written to
        ``model_spec.json``; None: the run is not packageable), or a function
        ``interface(hparams) -> type`` when it depends on the hparams (e.g.
        the kind of ASR targets).
    setup : callable, optional
        ``setup(brain, extras)``: anything the Brain needs from the data
        (label lookups ...), called before training.

    Returns
    -------
    brain : RecipeBrain
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams, merged_file = load_recipe_hparams(hparams_file, overrides, recipe_dir)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=merged_file,
        overrides=overrides,
    )
    # Saved as <output_folder>/hyperparams.yaml now: drop the temporary copy.
    shutil.rmtree(os.path.dirname(merged_file), ignore_errors=True)

    if prepare is not None:
        run_on_main(prepare, kwargs={"hparams": hparams})
    datasets, extras = dataio_prepare(hparams)

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    if setup is not None:
        setup(brain, extras)
    model = hparams["modules"][hparams.get("student_module", "model")]
    n_params = sum(p.numel() for p in model.parameters())
    if interface is not None and not isinstance(interface, type):
        interface = interface(hparams)
    if interface is not None and if_main_process():
        from cald_brain.inference import write_model_spec

        write_model_spec(
            model,
            hparams["save_folder"],
            interface,
            mixer=hparams.get("mixer"),
            mixer_kwargs=hparams.get("mixer_kwargs"),
            mode=hparams.get("mode"),
            hparams=dict(
                hparams.get("inference_hparams") or {},
                select_key=brain.select_key,
                select_mode=brain.select_mode,
            ),
        )
    logger.info("%s model: %.2fM parameters", hparams.get("mode"), n_params / 1e6)

    start = time.time()
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    train_time = time.time() - start
    # Taken now: evaluate() restores the best checkpoint, and its curve and
    # step counter with it.
    curve = list(brain.curve)
    steps = brain.optimizer_step

    key = {"max_key" if brain.select_mode == "max" else "min_key": brain.select_key}
    brain.evaluate(datasets["test"], test_loader_kwargs=hparams["test_dataloader_opts"], **key)
    results = {
        "mode": hparams.get("mode"),
        "test": brain.test_stats,
        "n_test": len(datasets["test"]),
        "params": n_params,
        "train_time_s": train_time,
        "optimizer_steps": steps,
        "select_key": brain.select_key,
        "curve": curve,
    }
    if if_main_process():
        path = os.path.join(hparams["output_folder"], "results.json")
        with open(path + ".tmp", "w", encoding="utf-8") as fo:
            json.dump(results, fo, indent=2)
        os.replace(path + ".tmp", path)
    logger.info("Test results: %s", results["test"])
    return brain
