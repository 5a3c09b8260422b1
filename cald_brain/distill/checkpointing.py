"""Checkpoint helpers for exact resume and for loading teachers safely.

* :class:`RandomState` saves the Python, NumPy and torch (CPU and CUDA) random
  generators, so that a resumed run draws the same dropout masks, SpecAugment
  masks and LayerDrop decisions as an uninterrupted one.
* :class:`CompletionMarker` is saved last in every checkpoint. SpeechBrain's
  checkpointer writes ``CKPT.yaml`` *before* the parameter files, so a run
  killed while saving leaves a checkpoint that looks valid but is not; the
  marker lets :class:`~cald_brain.distill.brain.DistillBrain` skip it.
* :func:`load_state_dict_checked` loads a teacher (or target) state dict and
  refuses, with the file name and the first offending keys, one saved from
  another architecture.
* :func:`find_checkpoint` returns the parameter file of the best checkpoint of
  a finished run (e.g. the std run's best ``model.ckpt``, the target).

Authors
 * cald-brain developers 2026
"""

import logging
import os
import pathlib
import random

import numpy as np
import torch
from speechbrain.utils.checkpoints import (
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)

logger = logging.getLogger(__name__)

COMPLETION_MARKER_NAME = "distill-complete"


@register_checkpoint_hooks
class RandomState:
    """Checkpointable state of every global random generator.

    SpeechBrain's own ``SaveableGenerator`` covers torch only; HF models also
    draw SpecAugment masks from NumPy, and data pipelines often use
    ``random``.

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> rng = RandomState()
    >>> ckpt = Checkpointer(tmpdir, {"rng": rng})
    >>> _ = ckpt.save_checkpoint()
    >>> a = torch.rand(1), np.random.rand(), random.random()
    >>> _ = ckpt.recover_if_possible()
    >>> b = torch.rand(1), np.random.rand(), random.random()
    >>> a[0].item() == b[0].item() and a[1] == b[1] and a[2] == b[2]
    True
    """

    @mark_as_saver
    def _save(self, path):
        state = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del end_of_epoch
        state = torch.load(path, weights_only=False)
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state:
            if torch.cuda.is_available() and torch.cuda.device_count() == len(
                state["cuda"]
            ):
                torch.cuda.set_rng_state_all(state["cuda"])
            else:
                logger.warning(
                    "Checkpoint %s holds CUDA random states for %d devices; "
                    "this machine differs, CUDA random state not restored.",
                    path,
                    len(state["cuda"]),
                )


@register_checkpoint_hooks
class CompletionMarker:
    """A recoverable saved last, proving that a checkpoint was fully written.

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> ckpt = Checkpointer(tmpdir, {"marker": CompletionMarker()})
    >>> saved = ckpt.save_checkpoint()
    >>> is_complete_checkpoint(saved, "marker")
    True
    """

    @mark_as_saver
    def _save(self, path):
        with open(path, "w", encoding="utf-8") as fo:
            fo.write("complete\n")

    @mark_as_loader
    def _load(self, path, end_of_epoch):
        del path, end_of_epoch


def is_complete_checkpoint(checkpoint, marker_name=COMPLETION_MARKER_NAME):
    """Whether a SpeechBrain checkpoint holds its completion marker.

    Arguments
    ---------
    checkpoint : speechbrain.utils.checkpoints.Checkpoint
        A checkpoint namedtuple (has ``paramfiles``).
    marker_name : str
        Name of the :class:`CompletionMarker` recoverable.

    Returns
    -------
    complete : bool
    """
    path = checkpoint.paramfiles.get(marker_name)
    return path is not None and pathlib.Path(path).exists()


def usable_checkpoint_predicate(checkpointer, recoverable=None):
    """A ``ckpt_predicate`` that skips checkpoints a killed run left half written.

    When any checkpoint of the folder carries a :class:`CompletionMarker`, the
    folder was written by a :class:`~cald_brain.distill.brain.DistillBrain` and
    checkpoints without the marker are incomplete; otherwise (a folder written
    by a plain ``Brain``) every checkpoint is accepted.

    Arguments
    ---------
    checkpointer : speechbrain.utils.checkpoints.Checkpointer
        Checkpointer of the folder.
    recoverable : str, optional
        Also require this recoverable's parameter file.

    Returns
    -------
    predicate : callable
        Takes a ``Checkpoint``, returns bool.
    """
    uses_markers = any(
        is_complete_checkpoint(c) for c in checkpointer.list_checkpoints()
    )

    def predicate(ckpt):
        if recoverable is not None and recoverable not in ckpt.paramfiles:
            return False
        return is_complete_checkpoint(ckpt) or not uses_markers

    return predicate


def unwrap_module(module):
    """Returns the module inside DDP / DataParallel / torch.compile wrappers.

    Arguments
    ---------
    module : torch.nn.Module

    Returns
    -------
    module : torch.nn.Module

    Example
    -------
    >>> lin = torch.nn.Linear(2, 2)
    >>> unwrap_module(torch.nn.DataParallel(lin)) is lin
    True
    """
    while True:
        if isinstance(
            module,
            (
                torch.nn.parallel.DistributedDataParallel,
                torch.nn.DataParallel,
            ),
        ):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def resolve_state_dict_path(path, recoverable="model"):
    """Finds the parameter file behind ``path``.

    Arguments
    ---------
    path : str or os.PathLike
        A state-dict file (``.ckpt``, ``.pt``, ``.bin``), or a SpeechBrain
        checkpoint directory (``CKPT+...`` holding ``CKPT.yaml``), in which case
        ``<path>/<recoverable>.ckpt`` is used.
    recoverable : str
        Recoverable name inside a checkpoint directory.

    Returns
    -------
    path : pathlib.Path

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> ckpt = Checkpointer(tmpdir, {"model": torch.nn.Linear(2, 2)}).save_checkpoint()
    >>> resolve_state_dict_path(ckpt.path).name
    'model.ckpt'
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Checkpoint '{path}' does not exist.")
    if path.is_dir():
        if not (path / "CKPT.yaml").exists():
            raise ValueError(
                f"'{path}' is a folder but not a SpeechBrain checkpoint (no "
                "CKPT.yaml); give the parameter file itself, or use "
                "find_checkpoint(save_folder) to pick one from a save folder."
            )
        param = path / f"{recoverable}.ckpt"
        if not param.exists():
            found = sorted(p.name for p in path.glob("*.ckpt"))
            raise FileNotFoundError(
                f"Checkpoint '{path}' has no '{recoverable}.ckpt' (it holds "
                f"{', '.join(found) or 'no parameter files'})."
            )
        return param
    return path


def load_state_dict_file(path, recoverable="model"):
    """Loads a state dict with ``weights_only`` and memory mapping.

    Memory mapping keeps a single copy of the weights in RAM while they are
    copied into a module, which matters for waypoint teachers of 300M+
    parameters.

    Arguments
    ---------
    path : str or os.PathLike
        See :func:`resolve_state_dict_path`.
    recoverable : str
        Recoverable name inside a checkpoint directory.

    Returns
    -------
    state_dict : dict
    """
    path = resolve_state_dict_path(path, recoverable)
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            # Legacy (non-zip) files cannot be memory mapped.
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"Cannot read checkpoint '{path}': {err}") from err
    if not isinstance(state, dict):
        raise ValueError(
            f"Checkpoint '{path}' holds a {type(state).__name__}, not a state dict."
        )
    return state


def check_state_dict(module, state_dict, source, max_listed=5):
    """Raises if ``state_dict`` does not fit ``module`` key for key, shape for shape.

    Arguments
    ---------
    module : torch.nn.Module
        The module the weights are meant for.
    state_dict : dict
        Candidate weights.
    source : str
        Where they come from (used in the message).
    max_listed : int
        How many offending keys the message lists.

    Example
    -------
    >>> check_state_dict(torch.nn.Linear(2, 3), torch.nn.Linear(2, 3).state_dict(), "x")
    >>> check_state_dict(torch.nn.Linear(2, 3), torch.nn.Linear(2, 4).state_dict(), "x")
    Traceback (most recent call last):
    ...
    ValueError: Checkpoint 'x' was saved from another architecture than Linear: shape mismatch: weight: [4, 2] in the checkpoint vs [3, 2] in the model; bias: [4] in the checkpoint vs [3] in the model.
    """
    expected = unwrap_module(module).state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: {list(state_dict[k].shape)} in the checkpoint vs "
        f"{list(v.shape)} in the model"
        for k, v in expected.items()
        if k in state_dict
        and torch.is_tensor(state_dict[k])
        and state_dict[k].shape != v.shape
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    for label, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatch", mismatched),
    ):
        if items:
            more = f" (+{len(items) - max_listed} more)" if len(items) > max_listed else ""
            parts.append(f"{label}: {'; '.join(items[:max_listed])}{more}")
    raise ValueError(
        f"Checkpoint '{source}' was saved from another architecture than "
        f"{type(unwrap_module(module)).__name__}: {', '.join(parts)}."
    )


def load_state_dict_checked(module, path, recoverable="model"):
    """Loads the weights at ``path`` into ``module``, strictly, with a clear error.

    Arguments
    ---------
    module : torch.nn.Module
        Destination (weights are copied in place, on the module's device).
    path : str or os.PathLike
        See :func:`resolve_state_dict_path`.
    recoverable : str
        Recoverable name inside a checkpoint directory.

    Returns
    -------
    module : torch.nn.Module

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> src = torch.nn.Linear(2, 2)
    >>> torch.save(src.state_dict(), f"{tmpdir}/w.ckpt")
    >>> dst = load_state_dict_checked(torch.nn.Linear(2, 2), f"{tmpdir}/w.ckpt")
    >>> torch.equal(dst.weight, src.weight)
    True
    """
    path = resolve_state_dict_path(path, recoverable)
    state = load_state_dict_file(path)
    check_state_dict(module, state, str(path))
    unwrap_module(module).load_state_dict(state)
    return module


def find_checkpoint(save_folder, recoverable="model", min_key=None, max_key=None):
    """Parameter file of the best (or latest) checkpoint in a save folder.

    Meant for YAML, to point a target guide or a target-initialised student at
    the std run's best checkpoint::

        target_checkpoint: !apply:cald_brain.distill.find_checkpoint
            save_folder: !ref <std_folder>/save
            max_key: ACC

    Arguments
    ---------
    save_folder : str or os.PathLike
        The checkpointer's folder (holding ``CKPT+...`` directories).
    recoverable : str
        Which recoverable's file to return.
    min_key : str, optional
        Pick the checkpoint with the lowest value of this meta key.
    max_key : str, optional
        Pick the checkpoint with the highest value of this meta key.

    Returns
    -------
    path : str

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> ckpt = Checkpointer(tmpdir, {"model": torch.nn.Linear(2, 2)})
    >>> _ = ckpt.save_checkpoint(meta={"ACC": 0.5})
    >>> os.path.basename(find_checkpoint(tmpdir, max_key="ACC"))
    'model.ckpt'
    """
    folder = pathlib.Path(save_folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Save folder '{folder}' does not exist.")
    checkpointer = Checkpointer(folder)
    ckpt = checkpointer.find_checkpoint(
        min_key=min_key,
        max_key=max_key,
        ckpt_predicate=usable_checkpoint_predicate(checkpointer, recoverable),
    )
    if ckpt is None:
        key = min_key or max_key
        extra = f" with the meta key '{key}'" if key else ""
        raise FileNotFoundError(
            f"No checkpoint holding '{recoverable}.ckpt'{extra} in '{folder}'."
        )
    return os.fspath(ckpt.paramfiles[recoverable])
