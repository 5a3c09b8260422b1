"""Student initialisation: from the source or from the target, then converted.

CALD's Fig. 1 (cald-reference sections 2 and 3.6): target and hybrid
students start from the *target* (the transformer fine-tuned by the std run,
heads included); unguided, trajectory and waypoint students start from the
*source* (pretrained) model. Either way every self-attention is then replaced
by a linear-time mixer with :func:`cald_brain.convert.convert`, which keeps
every other weight.

The target weights are loaded *before* conversion, strictly: a target
checkpoint from another architecture is refused with the offending keys,
instead of being half-loaded (the reference loads non-strictly after
conversion, which silently ignores any mismatch).

The new mixers start as ``mixer_init`` says (:mod:`cald_brain.distill.mixer_init`):
at their own random init (``default``, the paper), with zero output
projections (``zero``), or at random init with a frozen copy of the
unconverted model kept for the attention-transfer stage of
:class:`~cald_brain.distill.brain.DistillBrain` (``attention_transfer``).

Authors
 * cald-brain developers 2026
"""

import copy
import logging

import torch

from cald_brain.distill.checkpointing import load_state_dict_checked
from cald_brain.distill.mixer_init import (
    attach_transfer_teacher,
    check_mixer_init,
    zero_output_projections,
)

logger = logging.getLogger(__name__)

STUDENT_INITS = ("source", "target")


def build_student(
    model,
    init="source",
    target_checkpoint=None,
    mixer=None,
    mixer_kwargs=None,
    mixer_init="default",
):
    """Builds a student: source or target weights, attention converted.

    Meant for YAML::

        model: !apply:cald_brain.distill.build_student
            model: !new:transformers.Wav2Vec2ForCTC ...
            init: target
            target_checkpoint: !ref <target_checkpoint>
            mixer: bimamba2
            mixer_kwargs: {d_state: 128, expand: 1}
            mixer_init: !ref <mixer_init>   # default | zero | attention_transfer

    Arguments
    ---------
    model : torch.nn.Module or callable
        The source (pretrained) transformer, or a zero-argument factory
        returning it.
    init : str
        ``"source"``: keep the weights ``model`` has; ``"target"``: load
        ``target_checkpoint`` into it first.
    target_checkpoint : str or os.PathLike, optional
        The std run's (best) checkpoint: a state-dict file or a SpeechBrain
        ``CKPT+...`` folder (its ``model.ckpt``). Required by, and only used
        with, ``init="target"``.
    mixer : str, optional
        Mixer replacing every self-attention (``"bimamba2"``, ``"linformer"``,
        ``"mamba"`` ...); None keeps the transformer (std mode).
    mixer_kwargs : dict, optional
        Keyword arguments of the mixer (``d_model`` is taken from the model).
    mixer_init : str
        How the new mixers start: ``"default"`` (their own random init, the
        paper), ``"zero"`` (output projections at zero: each converted layer
        starts as the pretrained layer without its attention contribution),
        ``"attention_transfer"`` (random init; a frozen deep copy of the
        unconverted model, source or target weights, is kept as an
        unregistered attribute for DistillBrain's transfer stage, see
        :class:`~cald_brain.distill.mixer_init.AttentionTransfer`). Anything
        but ``"default"`` needs a ``mixer``.

    Returns
    -------
    model : torch.nn.Module
        The student (converted in place).

    Example
    -------
    >>> student = build_student(lambda: torch.nn.Linear(2, 2))
    >>> type(student).__name__
    'Linear'
    """
    if init not in STUDENT_INITS:
        raise ValueError(
            f"Student init must be one of {STUDENT_INITS}, got '{init}'."
        )
    if init == "target" and target_checkpoint is None:
        raise ValueError(
            "Student init 'target' needs `target_checkpoint` (the std run's "
            "best checkpoint, e.g. via cald_brain.distill.find_checkpoint)."
        )
    if init == "source" and target_checkpoint is not None:
        raise ValueError(
            "`target_checkpoint` is given but the student init is 'source'; "
            "set init: target to start from it, or drop target_checkpoint."
        )
    if mixer_kwargs is not None and mixer is None:
        raise ValueError("`mixer_kwargs` is given but no `mixer` to build.")
    check_mixer_init(mixer_init, "build_student: mixer_init")
    if mixer_init != "default" and mixer is None:
        raise ValueError(
            f"build_student: mixer_init '{mixer_init}' needs a `mixer`: without "
            "one the model keeps its attention and has no new mixer to start."
        )

    if not isinstance(model, torch.nn.Module):
        if not callable(model):
            raise TypeError(
                "build_student: model must be a torch.nn.Module or a factory "
                f"returning one, got {type(model).__name__}."
            )
        model = model()
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                "build_student: the model factory returned a "
                f"{type(model).__name__}, not a torch.nn.Module."
            )

    if init == "target":
        load_state_dict_checked(model, target_checkpoint)
        logger.info("Student initialised from the target %s", target_checkpoint)

    if mixer is not None:
        from cald_brain.convert import convert

        # Copied before conversion: the attention-transfer teacher is the
        # very model the student is converted from.
        teacher = copy.deepcopy(model) if mixer_init == "attention_transfer" else None
        report = convert(model, mixer, **(mixer_kwargs or {}))
        logger.info("Student converted to %s:\n%s", mixer, report)
        if mixer_init == "zero":
            zeroed = zero_output_projections(model)
            logger.info("mixer_init zero: %d output projections zeroed", len(zeroed))
        elif teacher is not None:
            attach_transfer_teacher(model, teacher)
            logger.info("mixer_init attention_transfer: unconverted copy kept")
    return model
