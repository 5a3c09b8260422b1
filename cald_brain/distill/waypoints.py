"""Waypoints: the teacher states a std run leaves behind for waypoint guidance.

A std run (the transformer fine-tuned alone) given a :class:`WaypointSaver`
writes the weights of its model every ``interval_steps`` optimizer steps
and/or at the end of every epoch::

    <folder>/step_<N>/<module>.ckpt   # a plain state dict (torch.save)
    <folder>/waypoints.json           # {"waypoints": [{"step": N, "path": ..., "epoch": e}, ...]}

The step of a waypoint is the number of optimizer steps done when it was
saved. Every file is written to a temporary name and renamed, and the
manifest is rewritten (atomically) only after the file it lists exists, so a
run killed at any point leaves a consistent folder.

Authors
 * cald-brain developers 2026
"""

import dataclasses
import json
import logging
import os
import pathlib

import torch
from speechbrain.utils.distributed import if_main_process

from cald_brain.distill.checkpointing import unwrap_module

logger = logging.getLogger(__name__)

MANIFEST_NAME = "waypoints.json"
MANIFEST_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class Waypoint:
    """One saved teacher state.

    Arguments
    ---------
    step : int
        Optimizer steps done by the std run when it was saved.
    path : pathlib.Path
        Absolute path of the state-dict file.
    epoch : int or None
        Epoch during (or at the end of) which it was saved.
    """

    step: int
    path: pathlib.Path
    epoch: int = None


def read_waypoint_manifest(folder):
    """Reads and validates ``<folder>/waypoints.json``.

    Arguments
    ---------
    folder : str or os.PathLike
        Waypoint folder of a std run.

    Returns
    -------
    waypoints : list of Waypoint
        Sorted by step; every file exists.

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> read_waypoint_manifest(tmpdir)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Waypoint folder '...' has no waypoints.json: it is empty. Run the std mode with a `waypoint_saver` first.
    """
    folder = pathlib.Path(folder)
    if not folder.exists():
        raise ValueError(
            f"Waypoint folder '{folder}' does not exist. Run the std mode with "
            "a `waypoint_saver` writing there first, or fix `waypoint_folder`."
        )
    if not folder.is_dir():
        raise ValueError(f"Waypoint folder '{folder}' is not a folder.")
    manifest = folder / MANIFEST_NAME
    if not manifest.exists():
        content = sorted(p.name for p in folder.iterdir())
        what = (
            "it is empty"
            if not content
            else f"it holds {', '.join(content[:5])}"
            + (" ..." if len(content) > 5 else "")
        )
        raise ValueError(
            f"Waypoint folder '{folder}' has no {MANIFEST_NAME}: {what}. Run "
            "the std mode with a `waypoint_saver` first."
        )
    try:
        with open(manifest, encoding="utf-8") as fi:
            data = json.load(fi)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"Waypoint manifest '{manifest}' is not valid JSON (line "
            f"{err.lineno}, column {err.colno}): {err.msg}."
        ) from None
    entries = data.get("waypoints") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(
            f"Waypoint manifest '{manifest}' has no 'waypoints' list."
        )
    if not entries:
        raise ValueError(
            f"Waypoint manifest '{manifest}' lists no waypoints: the std run "
            "stopped before saving any."
        )
    waypoints = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "step" not in entry or "path" not in entry:
            raise ValueError(
                f"Waypoint manifest '{manifest}': entry {i} ({entry!r}) needs "
                "'step' and 'path'."
            )
        step = entry["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(
                f"Waypoint manifest '{manifest}': entry {i} has step "
                f"{step!r}; steps are non-negative integers."
            )
        path = folder / entry["path"]
        if not path.exists():
            raise ValueError(
                f"Waypoint manifest '{manifest}' lists step {step} at "
                f"'{path}', which does not exist."
            )
        waypoints.append(Waypoint(step, path, entry.get("epoch")))
    waypoints.sort(key=lambda w: w.step)
    steps = [w.step for w in waypoints]
    if len(set(steps)) != len(steps):
        raise ValueError(
            f"Waypoint manifest '{manifest}' lists a step twice: {steps}."
        )
    return waypoints


def waypoint_for_step(waypoints, step):
    """The first waypoint at or ahead of ``step``; the last one past the end.

    Arguments
    ---------
    waypoints : list of Waypoint
        Sorted by step.
    step : int
        The student's current step, 1-based (the optimizer step the batch
        contributes to, i.e. ``brain.optimizer_step + 1``).

    Returns
    -------
    waypoint : Waypoint

    Example
    -------
    >>> wps = [Waypoint(s, pathlib.Path(f"step_{s}")) for s in (10, 20)]
    >>> [waypoint_for_step(wps, s).step for s in (1, 10, 11, 20, 21)]
    [10, 10, 20, 20, 20]
    """
    for waypoint in waypoints:
        if waypoint.step >= step:
            return waypoint
    return waypoints[-1]


class WaypointSaver:
    """Saves waypoints during a std run (every N steps and/or every epoch).

    :class:`~cald_brain.distill.brain.DistillBrain` calls it after each
    optimizer step and at the end of each training epoch when the hparams
    hold ``waypoint_saver``. Saving the same step twice (a resumed run redoing
    a step, or a step that is also an epoch end) overwrites the same entry.

    Arguments
    ---------
    folder : str or os.PathLike
        Where the waypoints and ``waypoints.json`` go.
    interval_steps : int
        Save every this many optimizer steps (0: never by steps).
    every_epoch : bool
        Save at the end of every training epoch.
    module : str
        Key of the module to save in ``brain.modules``.

    Example
    -------
    >>> import types
    >>> tmpdir = getfixture("tmpdir")
    >>> saver = WaypointSaver(tmpdir, interval_steps=2)
    >>> brain = types.SimpleNamespace(
    ...     modules={"model": torch.nn.Linear(2, 2)}, optimizer_step=0)
    >>> for _ in range(5):
    ...     brain.optimizer_step += 1
    ...     saver.on_optimizer_step(brain)
    >>> [w.step for w in read_waypoint_manifest(tmpdir)]
    [2, 4]
    """

    def __init__(self, folder, interval_steps=0, every_epoch=False, module="model"):
        if interval_steps < 0:
            raise ValueError(
                f"waypoint_saver: interval_steps must be >= 0, got {interval_steps}."
            )
        if not interval_steps and not every_epoch:
            raise ValueError(
                "waypoint_saver saves nothing: set interval_steps > 0 and/or "
                "every_epoch: True."
            )
        self.folder = pathlib.Path(folder)
        self.interval_steps = int(interval_steps)
        self.every_epoch = bool(every_epoch)
        self.module = module

    def on_optimizer_step(self, brain):
        """Saves a waypoint if the step is a multiple of ``interval_steps``.

        Arguments
        ---------
        brain : speechbrain.core.Brain
            After its optimizer step (``brain.optimizer_step`` counts it).
        """
        step = brain.optimizer_step
        if self.interval_steps and step > 0 and step % self.interval_steps == 0:
            self.save(brain, epoch=getattr(brain, "distill_epoch", None))

    def on_epoch_end(self, brain, epoch):
        """Saves a waypoint at the end of a training epoch, if asked to.

        Arguments
        ---------
        brain : speechbrain.core.Brain
            The training brain.
        epoch : int
            The epoch that just ended.
        """
        if self.every_epoch:
            self.save(brain, epoch=epoch)

    def save(self, brain, epoch=None):
        """Writes ``step_<N>/<module>.ckpt`` and updates the manifest.

        Arguments
        ---------
        brain : speechbrain.core.Brain
            Its ``modules[self.module]`` is saved at ``brain.optimizer_step``.
        epoch : int, optional
            Recorded in the manifest.
        """
        if not if_main_process():
            return
        if self.module not in brain.modules:
            raise KeyError(
                f"waypoint_saver: no module '{self.module}' in the brain's "
                f"modules ({', '.join(brain.modules.keys())})."
            )
        step = int(brain.optimizer_step)
        relative = pathlib.Path(f"step_{step}") / f"{self.module}.ckpt"
        target = self.folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        state = unwrap_module(brain.modules[self.module]).state_dict()
        tmp = target.with_name(target.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, target)

        entries = self._read_entries()
        entries = [e for e in entries if e.get("step") != step]
        entries.append({"step": step, "path": relative.as_posix(), "epoch": epoch})
        entries.sort(key=lambda e: e["step"])
        self._write_manifest(entries)
        logger.info("Saved waypoint at step %d in %s", step, target)

    def _read_entries(self):
        manifest = self.folder / MANIFEST_NAME
        if not manifest.exists():
            return []
        with open(manifest, encoding="utf-8") as fi:
            return json.load(fi).get("waypoints", [])

    def _write_manifest(self, entries):
        manifest = self.folder / MANIFEST_NAME
        tmp = manifest.with_name(manifest.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fo:
            json.dump(
                {
                    "format": MANIFEST_FORMAT,
                    "module": self.module,
                    "waypoints": entries,
                },
                fo,
                indent=1,
            )
        os.replace(tmp, manifest)
