"""Per-group learning rates on top of SpeechBrain's schedulers.

CALD's students hold two kinds of parameters: pretrained ones (fine-tuned
gently) and new mixers (trained from scratch), which learn far faster with a
larger rate (offline-assets sections 6-7: new mixers and heads at 10x the
encoder's rate). SpeechBrain's schedulers set one rate for every parameter
group, so :class:`GroupScaledSchedule` wraps any of them and multiplies each
group's rate by its ``lr_scale``; :func:`scaled_param_groups` makes the groups
from parameter-name patterns.

Authors
 * cald-brain developers 2026
"""

import logging
import re

from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)


def scaled_param_groups(module, lr, scales):
    """Optimizer parameter groups whose rates are ``lr`` times a per-pattern scale.

    Arguments
    ---------
    module : torch.nn.Module
    lr : float
        The base learning rate.
    scales : dict of str to float
        Regular expression (searched in the dotted parameter name) -> scale;
        the first matching pattern wins; unmatched parameters get scale 1.

    Returns
    -------
    groups : list of dict
        ``{"params", "lr", "lr_scale", "name"}``, one per scale used
        (parameters without gradients are left out).

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> groups = scaled_param_groups(net, 1e-3, {r"^1\\.": 10})
    >>> [(g["name"], len(g["params"]), g["lr"]) for g in groups]
    [('default', 2, 0.001), ('^1\\\\.', 2, 0.01)]
    """
    patterns = [(re.compile(p), p, float(s)) for p, s in (scales or {}).items()]
    for _, p, s in patterns:
        if not s > 0:
            raise ValueError(f"lr_scales['{p}'] must be > 0, got {s}.")
    groups = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        key, scale = "default", 1.0
        for regex, pattern, s in patterns:
            if regex.search(name):
                key, scale = pattern, s
                break
        group = groups.setdefault(key, {"params": [], "lr": lr * scale, "lr_scale": scale, "name": key})
        group["params"].append(param)
    for _, pattern, _ in patterns:
        if pattern not in groups:
            # Legitimate for a transformer run (no mixers); a typo otherwise.
            logger.warning("lr_scales pattern '%s' matches no trainable parameter.", pattern)
    return list(groups.values())


@register_checkpoint_hooks
class GroupScaledSchedule:
    """Runs a SpeechBrain scheduler, then scales each group's rate by its ``lr_scale``.

    Arguments
    ---------
    schedule : callable
        A SpeechBrain scheduler called as ``schedule(optimizer)`` (it sets
        every group's ``lr``).

    Example
    -------
    >>> import torch
    >>> from speechbrain.nnet.schedulers import WarmAndExpDecayLRSchedule
    >>> net = torch.nn.Linear(2, 2)
    >>> opt = torch.optim.SGD(scaled_param_groups(net, 1.0, {"bias": 10}), lr=1.0)
    >>> schedule = GroupScaledSchedule(WarmAndExpDecayLRSchedule(
    ...     lr=1.0, n_warmup_steps=2, total_steps=10, decay_factor=0.1))
    >>> schedule(opt); schedule(opt)  # warm-up: step 0, then step 1 of 2
    >>> [g["lr"] for g in opt.param_groups]
    [0.5, 5.0]
    """

    def __init__(self, schedule):
        self.schedule = schedule

    def __call__(self, optimizer):
        """Steps the wrapped schedule, then scales the groups.

        Arguments
        ---------
        optimizer : torch.optim.Optimizer
        """
        self.schedule(optimizer)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * group.get("lr_scale", 1.0)

    @mark_as_saver
    def save(self, path):
        """Saves the wrapped schedule's state (its own saver)."""
        self.schedule.save(path)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restores the wrapped schedule's state (its own loader)."""
        self.schedule.load(path, end_of_epoch)
