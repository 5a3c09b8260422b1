"""Guides: where the teacher of each CALD guiding mode comes from.

One guide object, built in the YAML with ``!new:``, selects the mode (CALD
Fig. 1; cald-reference section 2):

========== ====================================== ===================================
mode       guide                                  teacher
========== ====================================== ===================================
std        :class:`NoGuide` + ``waypoint_saver``  none; the model is the transformer
unguided   :class:`NoGuide`                       none (no teacher forward at all)
target     :class:`TargetGuide`                   the fine-tuned transformer, fixed
waypoint   :class:`WaypointGuide`                 the std run's checkpoint at or ahead
trajectory :class:`TrajectoryGuide`               a transformer fine-tuned alongside
hybrid     :class:`HybridCutoff` (around any)     the inner guide's, until a step
========== ====================================== ===================================

A guide knows nothing of datasets: it runs the teacher through the brain's
``teacher_forward`` hook and, for trajectory, the brain's
``compute_task_loss``. Every guide is a SpeechBrain recoverable
(:class:`~cald_brain.distill.brain.DistillBrain` registers it with the
checkpointer as ``guide``), so a killed run resumes with the same teacher.

Step convention: ``step`` is the student's *current* step, 1-based: the
optimizer step the batch contributes to, ``brain.optimizer_step + 1``.

Teacher-output cache: a :class:`TargetGuide` (fixed teacher, eval mode) can
keep its teacher's outputs per batch item (``cache_teacher``, see
:mod:`cald_brain.distill.teacher_cache`); a batch whose items are all cached
is then served by :meth:`Guide.cached_outputs` without running the teacher.
Waypoint and trajectory teachers change during training and never cache.

Authors
 * cald-brain developers 2026
"""

import contextlib
import logging

import torch
from speechbrain.utils.checkpoints import (
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

from cald_brain.distill.checkpointing import (
    check_state_dict,
    load_state_dict_checked,
    load_state_dict_file,
    unwrap_module,
)
from cald_brain.distill.teacher_cache import TeacherOutputCache, batch_ids
from cald_brain.distill.waypoints import read_waypoint_manifest, waypoint_for_step

logger = logging.getLogger(__name__)

TEACHER_MODES = ("eval", "train")


@register_checkpoint_hooks
class Guide:
    """Base class of the guides.

    Subclasses override :meth:`teacher_outputs` and, when they hold state,
    :meth:`state_dict` / :meth:`load_state_dict`; the checkpoint hooks of this
    class save and load that dict.

    Arguments
    ---------
    teacher_mode : str or None
        ``"eval"`` (dropout off, the default) or ``"train"`` (dropout,
        SpecAugment and LayerDrop on, as in the reference code, cald-reference
        section 8.5) for the teacher's no-grad forward. None: take the
        brain's ``teacher_mode`` hparam.
    """

    #: Whether this guide ever runs a teacher.
    uses_teacher = True

    def __init__(self, teacher_mode=None):
        if teacher_mode is not None and teacher_mode not in TEACHER_MODES:
            raise ValueError(
                f"teacher_mode must be one of {TEACHER_MODES}, got '{teacher_mode}'."
            )
        self.teacher_mode = teacher_mode
        self.device = "cpu"
        self.n_teacher_forwards = 0

    def setup(self, brain):
        """Prepares the teacher; called in ``on_fit_start`` before recovery.

        Validates every input (files, architectures) so that bad input is
        refused before the first training step.

        Arguments
        ---------
        brain : DistillBrain
            The training brain (gives the device, run options, hparams).
        """
        self.device = brain.device
        if self.teacher_mode is None:
            self.teacher_mode = brain.teacher_mode
        self._setup_cache(brain)

    def _setup_cache(self, brain):
        """Guides whose teacher changes ignore the brain's ``cache_teacher``."""
        if getattr(brain, "cache_teacher", False) and self.uses_teacher:
            logger.warning(
                "cache_teacher is ignored by the %s: its teacher changes during "
                "training, so its outputs cannot be reused.",
                type(self).__name__,
            )

    def has_cached(self, batch):
        """Whether :meth:`cached_outputs` can serve ``batch`` without the teacher.

        Arguments
        ---------
        batch : Any
            The training batch.

        Returns
        -------
        bool
        """
        del batch
        return False

    def cached_outputs(self, brain, batch, student):
        """The teacher's cached outputs for ``batch``, padded like ``student``.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        batch : Any
            A batch for which :meth:`has_cached` is True.
        student : ModelOutputs
            The student's outputs on the batch (their padded lengths).

        Returns
        -------
        outputs : ModelOutputs
        """
        raise RuntimeError(f"{type(self).__name__} caches no teacher outputs.")

    def clear_cache(self):
        """Frees cached teacher outputs (none by default)."""

    def is_active(self, step):
        """Whether the teacher runs at this student step.

        Arguments
        ---------
        step : int
            The student's current step, 1-based.

        Returns
        -------
        active : bool
        """
        del step
        return self.uses_teacher

    def teacher_outputs(self, brain, batch, stage):
        """Runs the teacher on ``batch``; returns its (detached) outputs.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        batch : Any
            The training batch.
        stage : speechbrain.Stage
            Always ``Stage.TRAIN``.

        Returns
        -------
        outputs : ModelOutputs
        """
        raise NotImplementedError

    def probe(self, brain, batch, stage):
        """Teacher forward used by the pre-training checks (counts nothing).

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        batch : Any
            A small batch.
        stage : speechbrain.Stage
            ``Stage.TRAIN``.

        Returns
        -------
        outputs : ModelOutputs
        """
        raise NotImplementedError

    def teacher_modules(self):
        """The teacher modules this guide holds (none for :class:`NoGuide`).

        Returns
        -------
        modules : list of torch.nn.Module
        """
        return []

    def before_student_step(self, brain):
        """Called just before the student's optimizer step.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """

    def state_dict(self):
        """State saved in checkpoints.

        Returns
        -------
        state : dict
        """
        return {"n_teacher_forwards": self.n_teacher_forwards}

    def load_state_dict(self, state):
        """Restores :meth:`state_dict`.

        Arguments
        ---------
        state : dict
        """
        self.n_teacher_forwards = state["n_teacher_forwards"]

    def _frozen_forward(self, brain, teacher, batch, stage, count=True):
        """No-grad teacher forward in the configured mode."""
        teacher.train(self.teacher_mode == "train")
        with torch.no_grad():
            outputs = brain.teacher_forward(teacher, batch, stage)
        if count:
            self.n_teacher_forwards += 1
        return outputs.detach()

    @mark_as_saver
    def _save(self, path):
        torch.save(self.state_dict(), path)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch
        # Our own file (counters, optimizer state): not an untrusted download.
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.load_state_dict(state)


class NoGuide(Guide):
    """No teacher: std and unguided modes. The teacher is never run.

    Example
    -------
    >>> NoGuide().is_active(1)
    False
    """

    uses_teacher = False

    def teacher_outputs(self, brain, batch, stage):
        """Never called: there is no teacher."""
        raise RuntimeError("NoGuide has no teacher.")

    def probe(self, brain, batch, stage):
        """Never called: there is no teacher."""
        raise RuntimeError("NoGuide has no teacher.")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _freeze(module):
    for param in module.parameters():
        param.requires_grad_(False)
    return module


class _FixedTeacherGuide(Guide):
    """Shared code of the guides whose teacher never trains."""

    def __init__(self, teacher, teacher_mode=None):
        super().__init__(teacher_mode)
        if not isinstance(teacher, torch.nn.Module):
            raise TypeError(
                f"{type(self).__name__}: teacher must be a torch.nn.Module, got "
                f"{type(teacher).__name__}."
            )
        # Frozen so that no optimizer, DDP wrapper or grad ever touches it.
        self.teacher = _freeze(teacher)

    def teacher_modules(self):
        """The frozen teacher."""
        return [self.teacher]

    def setup(self, brain):
        """Moves the frozen teacher to the brain's device.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """
        super().setup(brain)
        self.teacher.to(self.device)

    def teacher_outputs(self, brain, batch, stage):
        """No-grad teacher forward (see :class:`Guide`)."""
        return self._frozen_forward(brain, self.teacher, batch, stage)

    def probe(self, brain, batch, stage):
        """No-grad teacher forward that counts nothing."""
        return self._frozen_forward(brain, self.teacher, batch, stage, count=False)


class TargetGuide(_FixedTeacherGuide):
    """Target guidance: a fixed, already fine-tuned transformer teacher.

    Its weights are not saved in checkpoints (they never change and are read
    again from ``checkpoint`` on resume); only the forward count is.

    With ``cache_teacher`` the teacher's detached outputs are kept per batch
    item id on the CPU (:class:`~cald_brain.distill.teacher_cache.TeacherOutputCache`):
    a batch whose items were all seen is served from the cache, re-padded to
    the student's lengths, and the teacher is not run (after the first epoch
    a guided step costs about what an unguided one does); a batch with a new
    item runs the teacher on the whole batch and caches the new items. The
    cache lives in memory only: a resumed run fills it again. Refused with
    ``teacher_mode: train`` (dropout makes the outputs vary).

    Arguments
    ---------
    teacher : torch.nn.Module
        The transformer (same architecture as the std run's model).
    checkpoint : str or os.PathLike, optional
        The fine-tuned weights: a state-dict file, or a SpeechBrain
        ``CKPT+...`` folder (its ``model.ckpt``; see also
        :func:`~cald_brain.distill.checkpointing.find_checkpoint`). Loaded
        strictly in :meth:`setup`; a checkpoint of another architecture is
        refused. None: ``teacher`` already holds them.
    teacher_mode : str, optional
        See :class:`Guide`.
    cache_teacher : bool, optional
        Cache the teacher's outputs per item (see above). None: take the
        brain's ``cache_teacher`` hparam (default False).

    Example
    -------
    >>> guide = TargetGuide(torch.nn.Linear(2, 2))
    >>> guide.is_active(1), any(p.requires_grad for p in guide.teacher.parameters())
    (True, False)
    """

    def __init__(self, teacher, checkpoint=None, teacher_mode=None, cache_teacher=None):
        super().__init__(teacher, teacher_mode)
        self.checkpoint = checkpoint
        self._loaded = False
        if cache_teacher is not None and not isinstance(cache_teacher, bool):
            raise TypeError(
                f"TargetGuide: cache_teacher must be a bool, got {cache_teacher!r}."
            )
        self.cache_teacher = cache_teacher
        self._check_cache_mode()
        self.cache = TeacherOutputCache()

    def _check_cache_mode(self):
        if self.cache_teacher and self.teacher_mode == "train":
            raise ValueError(
                "cache_teacher cannot be used with teacher_mode: train: dropout "
                "makes the teacher's outputs vary from one epoch to the next. "
                "Use teacher_mode: eval, or cache_teacher: False."
            )

    def _setup_cache(self, brain):
        if self.cache_teacher is None:
            self.cache_teacher = bool(getattr(brain, "cache_teacher", False))
        self._check_cache_mode()

    def teacher_outputs(self, brain, batch, stage):
        """No-grad teacher forward; with the cache on, stores the new items."""
        outputs = super().teacher_outputs(brain, batch, stage)
        if self.cache_teacher:
            self.cache.store(batch_ids(batch), outputs)
        return outputs

    def has_cached(self, batch):
        """Whether every item of ``batch`` is cached (always False when off)."""
        return bool(self.cache_teacher) and self.cache.has(batch_ids(batch))

    def cached_outputs(self, brain, batch, student):
        """The cached outputs of ``batch``, re-padded like ``student``."""
        del brain
        return self.cache.lookup(batch_ids(batch), student, self.device)

    def clear_cache(self):
        """Frees the cached outputs."""
        self.cache.clear()

    def setup(self, brain):
        """Moves the teacher to the device and loads the target weights.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """
        super().setup(brain)
        if self.checkpoint is not None and not self._loaded:
            load_state_dict_checked(self.teacher, self.checkpoint)
            self._loaded = True
            logger.info("Target teacher loaded from %s", self.checkpoint)


class WaypointGuide(_FixedTeacherGuide):
    """Waypoint guidance: the std run's checkpoints, one after the other.

    At student step ``s`` (1-based, the optimizer step the batch contributes
    to) the teacher is the first waypoint whose step is ``>= s``; after the
    last waypoint it stays on the last. With ``s = optimizer_step + 1`` this
    is exactly the reference's rule "the smallest snapshot step strictly
    greater than the number of steps done" (cald-reference section 3.9): the
    student moving from 9 999 to 10 000 steps done still learns from the
    10 000-step waypoint, and switches right after reaching it.

    Waypoints are loaded lazily, when the rule first asks for them, into the
    one teacher module (one teacher in memory). All of them are checked
    against the teacher's architecture in :meth:`setup` (memory-mapped, no
    copy). Checkpoints record the loaded waypoint, which is loaded again on
    resume.

    Arguments
    ---------
    teacher : torch.nn.Module
        The transformer, same architecture as the std run's model.
    folder : str or os.PathLike
        The std run's waypoint folder (holding ``waypoints.json``).
    teacher_mode : str, optional
        See :class:`Guide`.

    Example
    -------
    >>> guide = WaypointGuide(torch.nn.Linear(2, 2), "no/such/folder")
    >>> guide.current_waypoint is None
    True
    """

    def __init__(self, teacher, folder, teacher_mode=None):
        super().__init__(teacher, teacher_mode)
        self.folder = folder
        self.waypoints = None
        self.current_waypoint = None
        self.n_loads = 0

    def setup(self, brain):
        """Reads the manifest, checks every waypoint, moves the teacher.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """
        super().setup(brain)
        self.waypoints = read_waypoint_manifest(self.folder)
        for waypoint in self.waypoints:
            check_state_dict(
                self.teacher, load_state_dict_file(waypoint.path), str(waypoint.path)
            )
        logger.info(
            "Waypoint guide: %d waypoints at steps %s",
            len(self.waypoints),
            [w.step for w in self.waypoints],
        )

    def select(self, step):
        """Loads the waypoint the rule asks for at ``step`` (if not loaded).

        Arguments
        ---------
        step : int
            The student's current step, 1-based.

        Returns
        -------
        waypoint_step : int
            Step of the loaded waypoint.
        """
        if self.waypoints is None:
            raise RuntimeError("WaypointGuide.setup() was not called.")
        waypoint = waypoint_for_step(self.waypoints, step)
        if waypoint.step != self.current_waypoint:
            self._load_waypoint(waypoint)
            self.n_loads += 1
            logger.info(
                "Student step %d: teacher is now the waypoint of step %d",
                step,
                waypoint.step,
            )
        return self.current_waypoint

    def _load_waypoint(self, waypoint):
        state = load_state_dict_file(waypoint.path)
        self.teacher.load_state_dict(state)
        self.current_waypoint = waypoint.step

    def teacher_outputs(self, brain, batch, stage):
        """Selects the waypoint for the current step, then runs it."""
        self.select(brain.optimizer_step + 1)
        return super().teacher_outputs(brain, batch, stage)

    def probe(self, brain, batch, stage):
        """Selects the waypoint for the current step, then runs it (uncounted)."""
        self.select(brain.optimizer_step + 1)
        return super().probe(brain, batch, stage)

    def state_dict(self):
        """Counters and the step of the loaded waypoint.

        Returns
        -------
        state : dict
        """
        state = super().state_dict()
        state.update(current_waypoint=self.current_waypoint, n_loads=self.n_loads)
        return state

    def load_state_dict(self, state):
        """Restores the counters and loads the recorded waypoint again.

        Arguments
        ---------
        state : dict
        """
        super().load_state_dict(state)
        self.n_loads = state["n_loads"]
        wanted = state["current_waypoint"]
        if wanted is None or self.waypoints is None:
            self.current_waypoint = None
            return
        for waypoint in self.waypoints:
            if waypoint.step == wanted:
                if wanted != self.current_waypoint:
                    self._load_waypoint(waypoint)
                return
        logger.warning(
            "The checkpoint's waypoint (step %d) is no longer in %s; the "
            "teacher will be chosen again from the manifest.",
            wanted,
            self.folder,
        )
        self.current_waypoint = None


class TrajectoryGuide(Guide):
    """Trajectory guidance: a transformer teacher fine-tuned alongside.

    The teacher starts from the source (pretrained) model, like the student,
    and has its own optimizer and LR schedule. Once every ``update_interval``
    (T_u) student steps (steps ``s`` with ``s % T_u == 0``) it learns from
    the same batches with the recipe's task loss, through the brain's
    gradient accumulation and precision, and its optimizer steps just before
    the student's (cald-reference section 4.2). The hidden targets are always
    computed *before* that update. Its LR schedule is stepped once per
    teacher update.

    Targets come from a no-grad forward in the configured ``teacher_mode``;
    on update steps a second, train-mode forward with gradients feeds the
    teacher's loss. With ``teacher_mode: train`` (the reference's setting) one
    forward serves both.

    Checkpoints hold the teacher's weights, optimizer, scheduler and counters.
    Under DDP the teacher is wrapped in DistributedDataParallel (it trains);
    its no-grad forwards bypass the wrapper.

    Arguments
    ---------
    teacher : torch.nn.Module
        The source transformer.
    opt_class : callable
        Builds the teacher's optimizer from its parameters, e.g.
        ``!name:torch.optim.AdamW`` with ``lr: <teacher_lr>``.
    update_interval : int
        T_u: the teacher learns on one student step out of T_u.
    lr_scheduler : callable, optional
        Builds a ``torch.optim.lr_scheduler.LRScheduler`` from the optimizer,
        e.g. ``!name:torch.optim.lr_scheduler.LinearLR``; stepped once per
        teacher update.
    max_grad_norm : float, optional
        Gradient clipping of the teacher; default: the brain's
        ``max_grad_norm``.
    teacher_mode : str, optional
        See :class:`Guide`.

    Example
    -------
    >>> from functools import partial
    >>> guide = TrajectoryGuide(torch.nn.Linear(2, 2),
    ...     partial(torch.optim.SGD, lr=0.1), update_interval=4)
    >>> [s for s in range(1, 13) if guide.is_update_step(s)]
    [4, 8, 12]
    """

    def __init__(
        self,
        teacher,
        opt_class,
        update_interval=1,
        lr_scheduler=None,
        max_grad_norm=None,
        teacher_mode=None,
    ):
        super().__init__(teacher_mode)
        if not isinstance(teacher, torch.nn.Module):
            raise TypeError(
                "TrajectoryGuide: teacher must be a torch.nn.Module, got "
                f"{type(teacher).__name__}."
            )
        if not _is_int(update_interval) or update_interval < 1:
            raise ValueError(
                f"TrajectoryGuide: update_interval (T_u) must be an integer >= 1, "
                f"got {update_interval!r}."
            )
        self.teacher = teacher
        self.opt_class = opt_class
        self.update_interval = update_interval
        self.lr_scheduler_class = lr_scheduler
        self.max_grad_norm = max_grad_norm
        self.optimizer = None
        self.lr_scheduler = None
        self.train_module = teacher
        self.n_updates = 0
        self.last_update_step = 0
        self.last_teacher_loss = None
        self._pending_update = False
        self._deferred_state = None

    def setup(self, brain):
        """Moves the teacher, builds its optimizer and schedule, wraps DDP.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """
        super().setup(brain)
        self.teacher.to(self.device)
        if self.optimizer is None:
            params = [p for p in self.teacher.parameters() if p.requires_grad]
            if not params:
                raise ValueError(
                    "TrajectoryGuide: the teacher has no trainable parameter; "
                    "a trajectory teacher must be fine-tuned."
                )
            self.optimizer = self.opt_class(params)
            if self.lr_scheduler_class is not None:
                self.lr_scheduler = self.lr_scheduler_class(self.optimizer)
            if self._deferred_state is not None:
                self._load_optimizer_state(self._deferred_state)
                self._deferred_state = None
        if self.max_grad_norm is None:
            self.max_grad_norm = brain.max_grad_norm
        if brain.distributed_launch and not isinstance(
            self.train_module, torch.nn.parallel.DistributedDataParallel
        ):
            # The only teacher that is ever DDP-wrapped: it receives gradients.
            device_ids = [brain.device] if brain.device_type == "cuda" else None
            self.train_module = torch.nn.parallel.DistributedDataParallel(
                self.teacher,
                device_ids=device_ids,
                find_unused_parameters=brain.find_unused_parameters,
            )

    def teacher_modules(self):
        """The trained teacher."""
        return [self.teacher]

    def is_update_step(self, step):
        """Whether the teacher learns at student step ``step`` (1-based).

        Arguments
        ---------
        step : int

        Returns
        -------
        bool
        """
        return step % self.update_interval == 0

    def teacher_outputs(self, brain, batch, stage):
        """Targets for this batch; on update steps also the teacher's backward."""
        step = brain.optimizer_step + 1
        if not self.is_update_step(step):
            return self._frozen_forward(brain, self.teacher, batch, stage)

        # Same accumulation logic as Brain.fit_batch: only the last micro-batch
        # of a group synchronises DDP gradients.
        should_step = brain.step % brain.grad_accumulation_factor == 0
        sync = contextlib.nullcontext()
        if not should_step and hasattr(self.train_module, "no_sync"):
            sync = self.train_module.no_sync()
        with sync:
            if self.teacher_mode == "train":
                self.teacher.train()
                outputs = brain.teacher_forward(self.train_module, batch, stage)
                self.n_teacher_forwards += 1
                targets = outputs.detach()
            else:
                targets = self._frozen_forward(brain, self.teacher, batch, stage)
                self.teacher.train()
                outputs = brain.teacher_forward(self.train_module, batch, stage)
                self.n_teacher_forwards += 1
            loss = brain.compute_task_loss(outputs.predictions, batch, stage)
            brain.scaler.scale(loss / brain.grad_accumulation_factor).backward()
        self.last_teacher_loss = loss.detach()
        self._pending_update = True
        return targets

    def probe(self, brain, batch, stage):
        """No-grad teacher forward that counts nothing."""
        return self._frozen_forward(brain, self.teacher, batch, stage, count=False)

    def before_student_step(self, brain):
        """Steps the teacher's optimizer (and schedule) after an update group.

        Arguments
        ---------
        brain : DistillBrain
            The training brain (its GradScaler is shared, as PyTorch
            recommends for several optimizers).
        """
        if not self._pending_update:
            return
        brain.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(
            [p for group in self.optimizer.param_groups for p in group["params"]],
            self.max_grad_norm,
        )
        brain.scaler.step(self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        self.n_updates += 1
        self.last_update_step = brain.optimizer_step + 1
        self._pending_update = False

    def state_dict(self):
        """Teacher weights, optimizer, scheduler and counters.

        Returns
        -------
        state : dict
        """
        if self._pending_update:
            logger.warning(
                "Trajectory teacher saved in the middle of an accumulation "
                "group: its accumulated gradients are not saved."
            )
        state = super().state_dict()
        state.update(
            teacher=unwrap_module(self.teacher).state_dict(),
            optimizer=None if self.optimizer is None else self.optimizer.state_dict(),
            lr_scheduler=None
            if self.lr_scheduler is None
            else self.lr_scheduler.state_dict(),
            n_updates=self.n_updates,
            last_update_step=self.last_update_step,
        )
        return state

    def load_state_dict(self, state):
        """Restores the teacher, its optimizer, scheduler and counters.

        Arguments
        ---------
        state : dict
        """
        super().load_state_dict(state)
        unwrap_module(self.teacher).load_state_dict(state["teacher"])
        if self.optimizer is None:
            # Loaded before setup (e.g. evaluate() without fit()): the
            # optimizer does not exist yet; setup() applies its state.
            self._deferred_state = state
        else:
            self._load_optimizer_state(state)
        self.n_updates = state["n_updates"]
        self.last_update_step = state["last_update_step"]
        self._pending_update = False

    def _load_optimizer_state(self, state):
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        if state["lr_scheduler"] is not None and self.lr_scheduler is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])


class HybridCutoff(Guide):
    """Hybrid guidance: any guide until ``distill_until`` steps, then none.

    Student steps ``1 .. distill_until`` are distilled; from step
    ``distill_until + 1`` on the loss is the task loss alone and the teacher
    is never run again (cald-reference sections 3.9 and 4.2: target guided,
    then distillation off). With a :class:`TargetGuide` this is the paper's
    hybrid mode; it composes with any other guide.

    Arguments
    ---------
    guide : Guide
        The guide used before the cut-off.
    distill_until : int
        Last distilled student step.

    Example
    -------
    >>> hybrid = HybridCutoff(TargetGuide(torch.nn.Linear(2, 2)), distill_until=3)
    >>> [hybrid.is_active(s) for s in (1, 3, 4)]
    [True, True, False]
    """

    def __init__(self, guide, distill_until):
        super().__init__(None)
        if not isinstance(guide, Guide):
            raise TypeError(
                f"HybridCutoff wraps a Guide, got {type(guide).__name__}."
            )
        if not _is_int(distill_until) or distill_until < 0:
            raise ValueError(
                f"HybridCutoff: distill_until must be an integer >= 0, got "
                f"{distill_until!r}."
            )
        self.guide = guide
        self.distill_until = distill_until
        self.uses_teacher = guide.uses_teacher
        self._announced = False

    @property
    def n_teacher_forwards(self):
        """Teacher forwards of the inner guide."""
        return self.guide.n_teacher_forwards

    @n_teacher_forwards.setter
    def n_teacher_forwards(self, value):
        # Set by Guide.__init__ before the inner guide exists.
        if "guide" in self.__dict__:
            self.guide.n_teacher_forwards = value

    def setup(self, brain):
        """Sets up the inner guide.

        Arguments
        ---------
        brain : DistillBrain
            The training brain.
        """
        super().setup(brain)
        self.guide.setup(brain)

    def is_active(self, step):
        """Active while ``step <= distill_until`` and the inner guide is."""
        active = step <= self.distill_until and self.guide.is_active(step)
        if step > self.distill_until and not self._announced:
            self._announced = True
            self.guide.clear_cache()  # never needed again
            logger.info(
                "Hybrid guidance: distillation off from student step %d on "
                "(distill_until=%d).",
                step,
                self.distill_until,
            )
        return active

    def teacher_modules(self):
        """The inner guide's teachers."""
        return self.guide.teacher_modules()

    def _setup_cache(self, brain):
        # The inner guide decides (its own setup runs next).
        del brain

    def has_cached(self, batch):
        """Delegates to the inner guide."""
        return self.guide.has_cached(batch)

    def cached_outputs(self, brain, batch, student):
        """Delegates to the inner guide."""
        return self.guide.cached_outputs(brain, batch, student)

    def clear_cache(self):
        """Delegates to the inner guide."""
        self.guide.clear_cache()

    def teacher_outputs(self, brain, batch, stage):
        """Delegates to the inner guide."""
        return self.guide.teacher_outputs(brain, batch, stage)

    def probe(self, brain, batch, stage):
        """Delegates to the inner guide."""
        return self.guide.probe(brain, batch, stage)

    def before_student_step(self, brain):
        """Delegates to the inner guide."""
        self.guide.before_student_step(brain)

    def state_dict(self):
        """The inner guide's state.

        Returns
        -------
        state : dict
        """
        return {"guide": self.guide.state_dict()}

    def load_state_dict(self, state):
        """Restores the inner guide's state.

        Arguments
        ---------
        state : dict
        """
        self.guide.load_state_dict(state["guide"])
