"""DistillBrain: a SpeechBrain Brain that adds CALD's teacher and losses.

A recipe gets every guiding mode by subclassing :class:`DistillBrain` and
implementing two hooks (plus ``on_stage_end`` as usual):

* ``forward_model(model, batch, stage) -> ModelOutputs``: run one model (the
  student, or a teacher through the default ``teacher_forward``) on a batch
  and return its predictions, hidden states, frame mask and logits;
* ``compute_task_loss(predictions, batch, stage) -> loss``: the recipe's loss
  (CTC, CE ...), also used to train a trajectory teacher.

The mode is chosen by the ``guide`` hparam (see :mod:`cald_brain.distill.guides`),
never by subclassing. The loss is (CALD eq. 7, cald-reference section 2)::

    L = alpha_task * L_task + alpha_layer * L_layer + alpha_kd * L_kd

with ``L_layer`` and ``L_kd`` from :mod:`cald_brain.distill.losses` (frame
averages, see there for the relation to the reference's normalisation).

SpeechBrain's ``fit_batch`` is kept as is, so ``--precision``,
``--grad_accumulation_factor``, DDP ``no_sync``, gradient clipping and
non-finite checks work unchanged: the teacher runs inside
``compute_forward`` (under the training autocast, without gradients), and
a trajectory teacher steps inside ``optimizers_step``, just before the
student. Teachers live in the guide, not in ``modules``, so they are neither
optimised with the student nor wrapped in DDP (a trajectory teacher, which
trains, is wrapped by its guide).

Exact resume: besides SpeechBrain's own recoverables (modules, optimizer,
epoch counter, the Brain's step counters and the training DataLoader's
position), the checkpointer gets the guide, the global random generators and
the running loss averages; intra-epoch checkpoints are only written between
accumulation groups (mid-group gradients are not saved), and checkpoints a
killed run left half written are skipped at recovery.

Mixer-aware starts (:mod:`cald_brain.distill.mixer_init`): with
``mixer_init: attention_transfer`` the first ``transfer_steps`` optimizer
steps are an attention-transfer stage: only the new mixers train, each layer
teacher-forced on the unconverted model's attention (see
:class:`~cald_brain.distill.mixer_init.AttentionTransfer`), with their own
optimizer (``transfer_opt_class``, checkpointed as ``transfer_optimizer``);
the guide's teacher does not run and the LR schedule does not advance. The
steps count in ``optimizer_step``, so waypoint selection and a hybrid
cut-off see them. Then training goes on with the main optimizer and the
mode's guide. (``zero`` and ``default`` act in ``build_student`` only.)

LR schedule: when the hparam ``lr_annealing`` is set, a fresh run calls
``lr_annealing(optimizer)`` once before the first optimizer step (so that
step takes the schedule's first rate, not the optimizer's peak one), and the
default :meth:`DistillBrain.on_fit_batch_end` calls it after every optimizer
step outside the transfer stage. A recipe overriding ``on_fit_batch_end``
calls ``super().on_fit_batch_end(...)`` to keep it.

Gradient clipping: ``max_grad_norm`` bounds the norm of all of an
optimizer's gradients together, over every parameter group (SpeechBrain's
own step clips only the first group, which left per-group ``lr_scales``
groups unclipped).

Hparams read (all optional)::

    guide: !new:cald_brain.distill.TargetGuide ...   # default: NoGuide
    waypoint_saver: !new:cald_brain.distill.WaypointSaver ...  # std mode
    student_module: model          # key of the student in `modules`
    alpha_task: 1.0
    alpha_layer: 1.0               # layerwise loss weight
    alpha_kd: 0.0                  # output distillation weight
    kd_temperature: 2.0            # beta
    layer_map: null                # [[student_idx, teacher_idx], ...]; null = one to one
    layer_norm: layernorm          # or none
    teacher_mode: eval             # or train (the reference's choice)
    cache_teacher: False           # cache a fixed (target) teacher's outputs per item id
    mixer_init: default            # default | zero | attention_transfer (= build_student's)
    transfer_steps: null           # attention_transfer: steps of the transfer stage (required)
    transfer_opt_class: !name:torch.optim.AdamW {lr: 0.002}  # the default
    lr_annealing: null             # a SpeechBrain schedule called as lr_annealing(optimizer)

Authors
 * cald-brain developers 2026
"""

import contextlib
import json
import logging
import os
import random

import numpy as np
import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from torch.utils.data import DataLoader, IterableDataset
from torch.utils.data.dataloader import default_collate, default_convert

from cald_brain.distill.checkpointing import (
    COMPLETION_MARKER_NAME,
    CompletionMarker,
    RandomState,
    usable_checkpoint_predicate,
)
from cald_brain.distill.guides import TEACHER_MODES, Guide, NoGuide
from cald_brain.distill.losses import (
    LayerwiseDistillationLoss,
    OutputDistillationLoss,
)
from cald_brain.distill.mixer_init import (
    AttentionTransfer,
    check_mixer_init,
    get_transfer_teacher,
)
from cald_brain.distill.outputs import DistillForward, ModelOutputs

logger = logging.getLogger(__name__)

#: Key of the attention-transfer optimizer in ``Brain.optimizers_dict``.
TRANSFER_OPTIMIZER = "mixer_transfer"


@register_checkpoint_hooks
class LossStats:
    """Running means of the loss terms over a training epoch (checkpointable).

    Example
    -------
    >>> stats = LossStats()
    >>> stats.update({"task": torch.tensor(1.0), "layer": torch.tensor(3.0)})
    >>> stats.update({"task": torch.tensor(2.0)})
    >>> stats.averages()
    {'loss_task': 1.5, 'loss_layer': 3.0}
    """

    def __init__(self):
        self.sums = {}
        self.counts = {}

    def update(self, terms):
        """Adds one batch's terms.

        Arguments
        ---------
        terms : dict of str to torch.Tensor
            Detached scalar terms.
        """
        for name, value in terms.items():
            value = float(value)
            if not np.isfinite(value):
                continue
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1

    def averages(self):
        """Means so far, keyed ``loss_<term>``.

        Returns
        -------
        averages : dict of str to float
        """
        return {f"loss_{k}": self.sums[k] / self.counts[k] for k in self.sums}

    def reset(self):
        """Forgets everything (at the end of each training epoch)."""
        self.sums, self.counts = {}, {}

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fo:
            # json writes floats with repr(): they round-trip exactly.
            json.dump({"sums": self.sums, "counts": self.counts}, fo)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch
        with open(path, encoding="utf-8") as fi:
            state = json.load(fi)
        self.sums, self.counts = state["sums"], state["counts"]


@contextlib.contextmanager
def _preserved_rng():
    """Runs a block without changing any global random generator."""
    py_state = random.getstate()
    np_state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        yield
    random.setstate(py_state)
    np.random.set_state(np_state)


class DistillBrain(sb.core.Brain):
    """A ``speechbrain.core.Brain`` for Cross-Architecture Layerwise Distillation.

    Arguments
    ---------
    modules : dict of str to torch.nn.Module
        As for ``Brain``; must hold the student under ``student_module``
        (default ``model``) and must not hold the teacher.
    opt_class : callable
        As for ``Brain``.
    hparams : dict
        As for ``Brain``, plus the keys listed in the module docstring.
    run_opts : dict or RunOptions
        As for ``Brain``.
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        As for ``Brain``; the guide, the random state and the loss averages are
        added to it.

    Example
    -------
    >>> import torch
    >>> from cald_brain.distill import TargetGuide, ModelOutputs
    >>> class Net(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(2))
    ...         self.out = torch.nn.Linear(4, 3)
    ...     def forward(self, x):
    ...         hidden = []
    ...         for layer in self.layers:
    ...             x = torch.tanh(layer(x))
    ...             hidden.append(x)
    ...         return self.out(x.mean(1)), hidden
    >>> class ToyBrain(DistillBrain):
    ...     def forward_model(self, model, batch, stage):
    ...         logits, hidden = model(batch[0])
    ...         return ModelOutputs(logits, hidden, logits=logits)
    ...     def compute_task_loss(self, predictions, batch, stage):
    ...         return torch.nn.functional.cross_entropy(predictions, batch[1])
    >>> brain = ToyBrain(
    ...     modules={"model": Net()},
    ...     opt_class=lambda params: torch.optim.SGD(params, lr=0.1),
    ...     hparams={"guide": TargetGuide(Net()), "alpha_kd": 1.0},
    ...     run_opts={"device": "cpu"},
    ... )
    >>> data = [(torch.randn(2, 5, 4), torch.tensor([0, 2]))] * 3
    >>> brain.fit(range(1), data, train_loader_kwargs={"batch_size": None})
    >>> brain.guide.n_teacher_forwards, brain.optimizer_step
    (3, 3)
    >>> sorted(brain.last_loss_terms)
    ['kd', 'layer', 'task']
    """

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
    ):
        super().__init__(
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        hp = dict(hparams or {})
        self.guide = hp.get("guide") or NoGuide()
        if not isinstance(self.guide, Guide):
            raise TypeError(
                "hparam `guide` must be a cald_brain.distill Guide (NoGuide, "
                "TargetGuide, WaypointGuide, TrajectoryGuide, HybridCutoff), "
                f"got {type(self.guide).__name__}."
            )
        self.waypoint_saver = hp.get("waypoint_saver")
        self.student_module = hp.get("student_module", "model")
        if self.student_module not in self.modules:
            raise ValueError(
                f"hparam `student_module` is '{self.student_module}' but "
                f"`modules` holds only {', '.join(self.modules.keys()) or 'nothing'}."
            )
        self.alpha_task = self._weight(hp, "alpha_task", 1.0)
        self.alpha_layer = self._weight(hp, "alpha_layer", 1.0)
        self.alpha_kd = self._weight(hp, "alpha_kd", 0.0)
        self.teacher_mode = hp.get("teacher_mode", "eval")
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(
                f"hparam `teacher_mode` must be one of {TEACHER_MODES}, got "
                f"'{self.teacher_mode}'."
            )
        self.layer_loss = LayerwiseDistillationLoss(
            layer_map=hp.get("layer_map"),
            normalization=hp.get("layer_norm", "layernorm"),
        )
        self.kd_loss = OutputDistillationLoss(hp.get("kd_temperature", 2.0))
        self.distill_enabled = self.guide.uses_teacher and (
            self.alpha_layer > 0 or self.alpha_kd > 0
        )
        if self.guide.uses_teacher and not self.distill_enabled:
            logger.warning(
                "alpha_layer and alpha_kd are both 0: the %s's teacher will "
                "never run.",
                type(self.guide).__name__,
            )
        self._check_teacher_not_in_modules()
        cache = hp.get("cache_teacher", False)
        if not isinstance(cache, bool):
            raise ValueError(f"hparam `cache_teacher` must be True or False, got {cache!r}.")
        self.cache_teacher = cache
        self.mixer_init = hp.get("mixer_init", "default")
        check_mixer_init(self.mixer_init, "hparam `mixer_init`")
        self.mixer_transfer = self._build_mixer_transfer(hp)
        self.transfer_optimizer = None
        self._fit_batch_end_called = False
        self._warned_lr_annealing = False

        self.loss_stats = LossStats()
        self.last_loss_terms = {}
        self.distill_epoch = None
        self._fit_source = None
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("guide", self.guide)
            self.checkpointer.add_recoverable(
                "distill_rng", RandomState(), optional_load=True
            )
            self.checkpointer.add_recoverable(
                "distill_stats", self.loss_stats, optional_load=True
            )

    def _build_mixer_transfer(self, hp):
        student = self.modules[self.student_module]
        steps = hp.get("transfer_steps")
        if self.mixer_init != "attention_transfer":
            if get_transfer_teacher(student) is not None:
                raise ValueError(
                    "The student was built with mixer_init 'attention_transfer' "
                    f"but the hparam `mixer_init` is '{self.mixer_init}': set "
                    "mixer_init: attention_transfer (and transfer_steps) for "
                    "DistillBrain too, or build the student with the same "
                    "mixer_init."
                )
            if steps:
                logger.warning(
                    "hparam transfer_steps is %s but mixer_init is '%s': there "
                    "is no attention-transfer stage.",
                    steps,
                    self.mixer_init,
                )
            return None
        if steps is None:
            raise ValueError(
                "hparam `mixer_init` is 'attention_transfer' but `transfer_steps` "
                "(the number of optimizer steps of the transfer stage) is not set."
            )
        transfer = AttentionTransfer(student, steps, hp.get("transfer_opt_class"))
        if steps == 0:
            logger.info("transfer_steps is 0: no attention-transfer stage.")
            return None
        return transfer

    @staticmethod
    def _weight(hp, key, default):
        value = float(hp.get(key, default))
        if not value >= 0:
            raise ValueError(f"hparam `{key}` must be >= 0, got {value}.")
        return value

    def _check_teacher_not_in_modules(self):
        student_params = {id(p) for p in self.modules.parameters()}
        for teacher in self.guide.teacher_modules():
            if any(id(p) in student_params for p in teacher.parameters()):
                raise ValueError(
                    "The guide's teacher is also listed in `modules`: it would "
                    "be optimised with the student. Keep the teacher only in "
                    "the guide."
                )

    # ------------------------------------------------------------------
    # Hooks a recipe implements
    # ------------------------------------------------------------------
    def forward_model(self, model, batch, stage):
        """Runs ``model`` (student or teacher) on ``batch``.

        Arguments
        ---------
        model : torch.nn.Module
            The student (``modules[student_module]``), or a teacher.
        batch : Any
            A batch of the recipe's data.
        stage : speechbrain.Stage
            Current stage.

        Returns
        -------
        outputs : ModelOutputs
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement forward_model(model, batch, "
            "stage) returning cald_brain.distill.ModelOutputs."
        )

    def teacher_forward(self, teacher, batch, stage):
        """Runs a teacher; by default the same code path as the student.

        Override when the teacher needs other inputs or returns other
        layers. Guides call it under ``torch.no_grad()`` (except a trajectory
        teacher's update forward).

        Arguments
        ---------
        teacher : torch.nn.Module
            The teacher.
        batch : Any
            A batch.
        stage : speechbrain.Stage
            Current stage.

        Returns
        -------
        outputs : ModelOutputs
        """
        return self.forward_model(teacher, batch, stage)

    def compute_task_loss(self, predictions, batch, stage):
        """The recipe's task loss (also trains a trajectory teacher).

        Arguments
        ---------
        predictions : Any
            ``ModelOutputs.predictions`` of the student (or teacher).
        batch : Any
            The batch.
        stage : speechbrain.Stage
            Current stage.

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement compute_task_loss("
            "predictions, batch, stage)."
        )

    # ------------------------------------------------------------------
    # Brain overrides
    # ------------------------------------------------------------------
    @property
    def current_step(self):
        """The student's current step, 1-based: the optimizer step the batch
        being processed contributes to."""
        return self.optimizer_step + 1

    def in_transfer_stage(self):
        """Whether the current training step belongs to the attention-transfer
        stage (``mixer_init: attention_transfer``, first ``transfer_steps``
        optimizer steps).

        Returns
        -------
        bool
        """
        return (
            self.mixer_transfer is not None
            and self.optimizer_step < self.mixer_transfer.steps
        )

    def distilling(self):
        """Whether the teacher runs for the current training batch.

        Returns
        -------
        bool
        """
        return (
            self.distill_enabled
            and not self.in_transfer_stage()
            and self.guide.is_active(self.current_step)
        )

    def compute_forward(self, batch, stage):
        """Student forward, plus the teacher's when distilling (TRAIN only).

        Arguments
        ---------
        batch : Any
            The batch.
        stage : speechbrain.Stage
            Current stage.

        In the attention-transfer stage, only the teacher-forced mixers run
        (``student`` is None, ``transfer`` holds the loss).

        Returns
        -------
        forward : DistillForward
        """
        if stage == sb.Stage.TRAIN and self.in_transfer_stage():
            return DistillForward(
                student=None, transfer=self.mixer_transfer(self, batch, stage)
            )
        teacher = None
        distilling = stage == sb.Stage.TRAIN and self.distilling()
        if distilling and not self.guide.has_cached(batch):
            # Teacher first: a trajectory teacher's backward then frees its
            # graph before the student's is built (lower peak memory).
            teacher = self.guide.teacher_outputs(self, batch, stage)
        student = self.forward_model(self.modules[self.student_module], batch, stage)
        if not isinstance(student, ModelOutputs):
            raise TypeError(
                "forward_model must return cald_brain.distill.ModelOutputs, got "
                f"{type(student).__name__}."
            )
        if distilling and teacher is None:
            # Cached teacher outputs, padded like the student's.
            teacher = self.guide.cached_outputs(self, batch, student)
        return DistillForward(student=student, teacher=teacher)

    def distillation_terms(self, student, teacher):
        """The distillation terms of one batch (before weighting).

        Arguments
        ---------
        student : ModelOutputs
            Student outputs.
        teacher : ModelOutputs
            Teacher outputs.

        Returns
        -------
        terms : dict of str to torch.Tensor
            ``layer`` and/or ``kd`` (unweighted), for the terms whose weight
            is positive.
        """
        mask = student.mask if student.mask is not None else teacher.mask
        terms = {}
        if self.alpha_layer > 0:
            terms["layer"] = self.layer_loss(
                student.hidden_states, teacher.hidden_states, mask
            )
        if self.alpha_kd > 0:
            terms["kd"] = self.kd_loss(student.logits, teacher.logits, mask)
        return terms

    def compute_objectives(self, predictions, batch, stage):
        """Task loss plus the distillation terms; records each term.

        Arguments
        ---------
        predictions : DistillForward
            Output of :meth:`compute_forward`.
        batch : Any
            The batch.
        stage : speechbrain.Stage
            Current stage.

        Returns
        -------
        loss : torch.Tensor
            Scalar.
        """
        if predictions.transfer is not None:
            return self._transfer_objective(predictions.transfer, stage)
        task = self.compute_task_loss(predictions.student.predictions, batch, stage)
        loss = self.alpha_task * task
        terms = {"task": task.detach()}
        if predictions.teacher is not None:
            distill = self.distillation_terms(predictions.student, predictions.teacher)
            weights = {"layer": self.alpha_layer, "kd": self.alpha_kd}
            for name, value in distill.items():
                loss = loss + weights[name] * value
                terms[name] = value.detach()
        if stage == sb.Stage.TRAIN:
            self.loss_stats.update(terms)
            self.last_loss_terms = {k: float(v) for k, v in terms.items()}
        return loss

    def _transfer_objective(self, transfer, stage):
        """Loss of an attention-transfer batch; records and logs each layer's
        relative error (terms ``transfer`` and ``transfer_<layer index>``)."""
        terms = {"transfer": transfer.loss.detach()}
        for index, error in enumerate(transfer.layer_errors):
            terms[f"transfer_{index}"] = error
        if stage == sb.Stage.TRAIN:
            self.loss_stats.update(terms)
            self.last_loss_terms = {k: float(v) for k, v in terms.items()}
            step, total = self.current_step, self.mixer_transfer.steps
            last_micro_batch = self.step % self.grad_accumulation_factor == 0
            if last_micro_batch and (
                step in (1, total) or step % max(1, total // 10) == 0
            ):
                logger.info(
                    "Attention transfer step %d/%d: relative error per layer %s",
                    step,
                    total,
                    ", ".join(
                        f"{path}={float(e):.3f}"
                        for path, e in zip(transfer.paths, transfer.layer_errors)
                    ),
                )
        return transfer.loss

    def stage_stats(self, stage_loss, stage):
        """``{"loss": stage_loss}`` plus, for TRAIN, each term's epoch mean.

        Use it in ``on_stage_end`` so that every term is logged on its own::

            stats = self.stage_stats(stage_loss, stage)

        Arguments
        ---------
        stage_loss : float
            The stage's average loss.
        stage : speechbrain.Stage
            The stage.

        Returns
        -------
        stats : dict of str to float
        """
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            stats.update(self.loss_stats.averages())
        return stats

    def optimizers_step(self):
        """Steps a trajectory teacher, then the student; saves waypoints.

        In the attention-transfer stage only the transfer optimizer steps
        (see :meth:`freeze_optimizers`); the stage ends after its last step.
        """
        transferring = self.in_transfer_stage()
        if transferring:
            self._average_mixer_gradients()
        self.guide.before_student_step(self)
        self._step_optimizers()
        if self.waypoint_saver is not None:
            self.waypoint_saver.on_optimizer_step(self)
        if transferring and not self.in_transfer_stage():
            logger.info(
                "Attention transfer done after %d steps: training goes on with "
                "the main optimizer and the %s.",
                self.optimizer_step,
                type(self.guide).__name__,
            )
            self._release_transfer()

    def _step_optimizers(self):
        """``Brain.optimizers_step`` with the clipping over *every* group.

        SpeechBrain clips only ``param_groups[0]`` of each optimizer; with
        per-group rates (``lr_scales``) that left the new mixers and the
        head unclipped. Here each optimizer's gradients are clipped together,
        over all its groups, to ``max_grad_norm`` (as the reference's single
        ``clip_grad_norm_``).
        """
        if self.optimizers_dict is not None:
            optimizers = self.freeze_optimizers(self.optimizers_dict)
        elif getattr(self, "optimizer", None) is not None:
            optimizers = {"optimizer": self.optimizer}
        else:
            return
        for opt in optimizers.values():
            self.scaler.unscale_(opt)
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        if not self.scaler.is_enabled() and self.skip_nonfinite_grads:
            self.check_gradients()
        for opt in optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.optimizer_step += 1

    def _average_mixer_gradients(self):
        # The transfer stage calls the adapters directly, not through the
        # DDP wrapper, so DDP does not reduce their gradients: average them.
        if not (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1
        ):
            return
        world = torch.distributed.get_world_size()
        for param in self.mixer_transfer.mixer_parameters():
            if param.grad is None:
                param.grad = torch.zeros_like(param)
            torch.distributed.all_reduce(param.grad)
            param.grad.div_(world)

    def _release_transfer(self):
        """Frees what only the transfer stage needs: the unconverted teacher
        goes back to the CPU, the transfer optimizer's moments are dropped."""
        if self.mixer_transfer is None:
            return
        self.mixer_transfer.to("cpu")
        if self.transfer_optimizer is not None:
            self.transfer_optimizer.state.clear()

    def init_optimizers(self):
        """As ``Brain.init_optimizers``, plus the attention-transfer optimizer.

        The transfer optimizer (hparam ``transfer_opt_class``, over the new
        mixers' parameters) is ``optimizers_dict["mixer_transfer"]`` and the
        checkpointer's ``transfer_optimizer``.
        """
        super().init_optimizers()
        if self.mixer_transfer is None:
            return
        self.transfer_optimizer = self.mixer_transfer.build_optimizer()
        if self.optimizers_dict is None:
            self.optimizers_dict = {}
        self.optimizers_dict[TRANSFER_OPTIMIZER] = self.transfer_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("transfer_optimizer", self.transfer_optimizer)

    def freeze_optimizers(self, optimizers):
        """Only the transfer optimizer in the transfer stage, all others after.

        Arguments
        ---------
        optimizers : dict of str to torch.optim.Optimizer

        Returns
        -------
        dict of str to torch.optim.Optimizer
        """
        optimizers = super().freeze_optimizers(optimizers)
        if self.mixer_transfer is None:
            return optimizers
        transferring = self.in_transfer_stage()
        return {
            name: opt
            for name, opt in optimizers.items()
            if (name == TRANSFER_OPTIMIZER) == transferring
        }

    def fit_batch(self, batch):
        """As ``Brain.fit_batch``; warns once if an ``on_fit_batch_end``
        override keeps DistillBrain's from stepping ``lr_annealing``.

        Arguments
        ---------
        batch : Any
            The batch.

        Returns
        -------
        loss : torch.Tensor
            Detached.
        """
        self._fit_batch_end_called = False
        loss = super().fit_batch(batch)
        if (
            not self._fit_batch_end_called
            and not self._warned_lr_annealing
            and getattr(self.hparams, "lr_annealing", None) is not None
        ):
            self._warned_lr_annealing = True
            logger.warning(
                "%s.on_fit_batch_end does not call super().on_fit_batch_end(...): "
                "DistillBrain does not step the `lr_annealing` schedule (fine if "
                "the recipe steps it itself; it should then skip the "
                "attention-transfer stage).",
                type(self).__name__,
            )
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Steps ``lr_annealing(optimizer)`` after each optimizer step, except
        in the attention-transfer stage (the schedule starts after it).

        Arguments
        ---------
        batch : Any
            The batch.
        outputs : DistillForward
            Output of :meth:`compute_forward`.
        loss : torch.Tensor
            Output of :meth:`compute_objectives`.
        should_step : bool
            Whether the optimizers stepped.
        """
        self._fit_batch_end_called = True
        schedule = getattr(self.hparams, "lr_annealing", None)
        if schedule is None or not should_step:
            return
        if isinstance(outputs, DistillForward) and outputs.transfer is not None:
            return
        schedule(self.optimizer)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """As ``Brain.make_dataloader``; the TRAIN loader gets its own generator.

        Creating a DataLoader iterator draws a base seed from the global torch
        generator unless the loader has its own. A resumed run creates its
        iterator *after* the random state is restored, so that draw would
        shift every later dropout mask; a dedicated generator keeps the global
        stream identical to an uninterrupted run's.

        Arguments
        ---------
        dataset : Dataset
            As for ``Brain.make_dataloader``.
        stage : speechbrain.Stage
            As for ``Brain.make_dataloader``.
        ckpt_prefix : str
            As for ``Brain.make_dataloader``.
        **loader_kwargs : dict
            As for ``Brain.make_dataloader``.

        Returns
        -------
        DataLoader
        """
        if stage == sb.Stage.TRAIN and "generator" not in loader_kwargs:
            seed = int(os.environ.get("SB_GLOBAL_SEED", 563375142))
            loader_kwargs["generator"] = torch.Generator().manual_seed(seed)
        return super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)

    def fit(
        self,
        epoch_counter,
        train_set,
        valid_set=None,
        progressbar=None,
        train_loader_kwargs={},
        valid_loader_kwargs={},
    ):
        """As ``Brain.fit``; remembers the training set for the start-up checks.

        Arguments
        ---------
        epoch_counter : iterable
            As for ``Brain.fit``.
        train_set : Dataset or DataLoader
            As for ``Brain.fit``.
        valid_set : Dataset or DataLoader
            As for ``Brain.fit``.
        progressbar : bool
            As for ``Brain.fit``.
        train_loader_kwargs : dict
            As for ``Brain.fit``.
        valid_loader_kwargs : dict
            As for ``Brain.fit``.
        """
        self._fit_source = (train_set, dict(train_loader_kwargs))
        try:
            super().fit(
                epoch_counter,
                train_set,
                valid_set=valid_set,
                progressbar=progressbar,
                train_loader_kwargs=train_loader_kwargs,
                valid_loader_kwargs=valid_loader_kwargs,
            )
        finally:
            self._fit_source = None

    def on_fit_start(self):
        """Sets up the guide, checks the distillation, then resumes.

        Same steps as ``Brain.on_fit_start`` (compile, DDP wrap, optimizers,
        recovery), preceded by the guide's setup (teacher on the device, files
        and architectures checked, trajectory optimizer built so that it can
        be restored) and by one student and teacher forward on two training
        examples that checks hidden states, layer map and logits. Recovery
        skips checkpoints that a killed run left half written.
        """
        self.guide.setup(self)
        if self.mixer_transfer is not None:
            self.mixer_transfer.to(self.device)
            self.check_transfer()
        self.check_distillation()
        self._compile()
        self._wrap_distributed()
        self.init_optimizers()
        if self.checkpointer is not None:
            # Last recoverable, so that its file proves all others were saved.
            self.checkpointer.recoverables.pop(COMPLETION_MARKER_NAME, None)
            self.checkpointer.add_recoverable(
                COMPLETION_MARKER_NAME, CompletionMarker(), optional_load=True
            )
            self.checkpointer.recover_if_possible(
                ckpt_predicate=usable_checkpoint_predicate(self.checkpointer)
            )
        if self.mixer_transfer is not None and not self.in_transfer_stage():
            self._release_transfer()  # resumed after the transfer stage
        self._prime_lr_annealing()

    def _prime_lr_annealing(self):
        """Sets the schedule's first rate before the first optimizer step.

        SpeechBrain steps ``lr_annealing`` after each optimizer step, so the
        very first step would run at the optimizer's initial rate (the peak),
        skipping the warm-up: with AdamW that first step moves every weight
        by the full rate at once, which scrambled the converted students (an
        unguided Whisper -> BiMamba2 student then stayed near chance, and the
        first end-to-end step after attention transfer undid it). A fresh run
        therefore calls the schedule once here; a resumed run has the rate in
        its restored optimizer state.
        """
        schedule = getattr(self.hparams, "lr_annealing", None)
        if schedule is None or getattr(self, "optimizer", None) is None or self.optimizer_step > 0:
            return
        schedule(self.optimizer)

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Loads the best complete checkpoint (see ``Brain.on_evaluate_start``).

        Arguments
        ---------
        max_key : str
            Meta key to maximise.
        min_key : str
            Meta key to minimise.
        """
        if self.checkpointer is not None:
            self.checkpointer.recover_if_possible(
                max_key=max_key,
                min_key=min_key,
                ckpt_predicate=usable_checkpoint_predicate(self.checkpointer),
            )

    def _should_save_intra_epoch_ckpt(self, last_ckpt_time, steps_since_ckpt):
        # Mid-group gradients are not checkpointed: save only between groups,
        # where they are zero, so that a resumed run is exact.
        if self.step % self.grad_accumulation_factor != 0:
            return False
        return super()._should_save_intra_epoch_ckpt(last_ckpt_time, steps_since_ckpt)

    def _fit_train(self, train_set, epoch, enable):
        self.distill_epoch = epoch
        super()._fit_train(train_set, epoch, enable)
        if self.waypoint_saver is not None:
            self.waypoint_saver.on_epoch_end(self, epoch)
        # Reset after on_stage_end has read them; not at the start of an epoch,
        # where a resumed run has just restored them.
        self.loss_stats.reset()

    # ------------------------------------------------------------------
    # Start-up checks
    # ------------------------------------------------------------------
    def check_transfer(self):
        """Runs the attention-transfer loss on two training examples (no
        update) and raises a ``ValueError`` naming the problem (attention not
        called, mask not fitting, shapes). Random states are left untouched.
        """
        batch = self._probe_batch()
        if batch is None:
            return
        modes = {m: m.training for m in self.modules.modules()}
        try:
            with _preserved_rng(), torch.no_grad(), self.training_ctx:
                self.modules.eval()
                self.mixer_transfer(self, batch, sb.Stage.TRAIN)
        except ValueError as err:
            raise ValueError(f"Attention-transfer check before training: {err}") from err
        finally:
            for module, training in modes.items():
                module.training = training

    def check_distillation(self):
        """Runs student and teacher on two training examples, computes the
        distillation terms, and raises a ``ValueError`` naming the problem
        (missing hidden states, layer counts without a ``layer_map``, shape
        mismatches, missing logits). Global random states are left untouched.
        """
        if not self.distill_enabled:
            return
        batch = self._probe_batch()
        if batch is None:
            logger.info(
                "Training set is not indexable: distillation is checked on "
                "the first training batch instead of before training."
            )
            return
        modes = {m: m.training for m in self.modules.modules()}
        try:
            with _preserved_rng(), torch.no_grad(), self.training_ctx:
                self.modules.eval()
                student = self.forward_model(
                    self.modules[self.student_module], batch, sb.Stage.TRAIN
                )
                teacher = self.guide.probe(self, batch, sb.Stage.TRAIN)
                self.distillation_terms(student, teacher)
        except ValueError as err:
            raise ValueError(
                f"Distillation check before training ({type(self.guide).__name__}): {err}"
            ) from err
        finally:
            for module, training in modes.items():
                module.training = training

    def _probe_batch(self):
        if self._fit_source is None:
            return None
        train_set, loader_kwargs = self._fit_source
        if hasattr(train_set, "loader"):  # LoopedLoader
            train_set = train_set.loader
        if isinstance(train_set, DataLoader):
            dataset, collate = train_set.dataset, train_set.collate_fn
            batched = train_set.batch_sampler is not None
        else:
            dataset = train_set
            batched = loader_kwargs.get("batch_size", 1) is not None or (
                loader_kwargs.get("batch_sampler") is not None
            )
            collate = loader_kwargs.get("collate_fn")
            if collate is None and not batched:
                collate = default_convert
            elif collate is None:
                collate = (
                    PaddedBatch
                    if isinstance(dataset, DynamicItemDataset)
                    else default_collate
                )
        if isinstance(dataset, IterableDataset) or not (
            hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
        ):
            return None
        if len(dataset) == 0:
            return None
        if not batched:  # each item already is a batch
            return collate(dataset[0])
        # Two examples, so that padding is part of the check.
        return collate([dataset[i] for i in range(min(2, len(dataset)))])
