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

Authors
 * cald-brain developers 2026
"""

import logging

import torch

from cald_brain.distill.checkpointing import load_state_dict_checked

logger = logging.getLogger(__name__)

STUDENT_INITS = ("source", "target")


def build_student(
    model,
    init="source",
    target_checkpoint=None,
    mixer=None,
    mixer_kwargs=None,
):
    """Builds a student: source or target weights, attention converted.

    Meant for YAML::

        model: !apply:cald_brain.distill.build_student
            model: !new:transformers.Wav2Vec2ForCTC ...
            init: target
            target_checkpoint: !ref <target_checkpoint>
            mixer: bimamba2
            mixer_kwargs: {d_state: 128, expand: 1}

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

        report = convert(model, mixer, **(mixer_kwargs or {}))
        logger.info("Student converted to %s:\n%s", mixer, report)
    return model
