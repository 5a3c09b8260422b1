"""What a recipe's forward pass hands to the distillation engine.

Authors
 * cald-brain developers 2026
"""

import dataclasses
from typing import Any, Optional, Sequence

import torch


def _detach(value):
    if torch.is_tensor(value):
        return value.detach()
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    return value


@dataclasses.dataclass
class ModelOutputs:
    """Outputs of one model (student or teacher) on one batch.

    Arguments
    ---------
    predictions : Any
        Whatever the recipe's ``compute_task_loss`` needs (logits, log-probs,
        a tuple ...).
    hidden_states : sequence of torch.Tensor, optional
        The layer outputs to distil, each ``[batch, time, channels]`` (a list,
        a tuple, or a stacked ``[layers, batch, time, channels]`` tensor).
        Which layers to expose (e.g. HF indices 1..L, skipping the embedding
        output) is the recipe's choice; the ``layer_map`` hparam pairs them.
    mask : torch.Tensor, optional
        Frame mask ``[batch, time]`` (True on real frames) or SpeechBrain
        relative lengths ``[batch]`` for the hidden states (and for 3-D
        logits). None: no padding.
    logits : torch.Tensor or sequence of torch.Tensor, optional
        Output logits for output distillation (KD); ``[batch, classes]`` or
        ``[batch, time, classes]``, one tensor per head.

    Example
    -------
    >>> out = ModelOutputs(torch.zeros(2, 3), [torch.zeros(2, 5, 4, requires_grad=True)])
    >>> out.detach().hidden_states[0].requires_grad
    False
    """

    predictions: Any
    hidden_states: Optional[Sequence[torch.Tensor]] = None
    mask: Optional[torch.Tensor] = None
    logits: Any = None

    def detach(self):
        """A copy whose tensors are cut from the autograd graph.

        Returns
        -------
        outputs : ModelOutputs
        """
        return ModelOutputs(
            predictions=_detach(self.predictions),
            hidden_states=_detach(self.hidden_states),
            mask=self.mask,
            logits=_detach(self.logits),
        )


@dataclasses.dataclass
class DistillForward:
    """What ``DistillBrain.compute_forward`` returns.

    Arguments
    ---------
    student : ModelOutputs or None
        The student's outputs (with gradients); None during the
        attention-transfer stage, where the student is not run end to end.
    teacher : ModelOutputs or None
        The teacher's outputs (no gradients), or None when no teacher ran
        (unguided, std, after a hybrid cut-off, evaluation, attention
        transfer).
    transfer : TransferOutputs or None
        The attention-transfer stage's loss and per-layer errors
        (:class:`cald_brain.distill.mixer_init.TransferOutputs`), only during
        that stage.
    """

    student: Optional[ModelOutputs]
    teacher: Optional[ModelOutputs] = None
    transfer: Any = None
