"""Shared helpers for the mixers: input checks, padding masks, reversal.

All mixers take SpeechBrain relative lengths (a float tensor ``[batch]`` with
values in (0, 1], the fraction of the padded time axis that is real).
"""

import torch


def check_mixer_input(x, lengths, d_model, name):
    """Validates a mixer's input and converts relative lengths to frames.

    Arguments
    ---------
    x : torch.Tensor
        Input, expected ``[batch, time, d_model]``.
    lengths : torch.Tensor or None
        Relative lengths ``[batch]`` in (0, 1], or None (no padding).
    d_model : int
        Expected number of channels.
    name : str
        Name of the calling module, used in error messages.

    Returns
    -------
    abs_lengths : torch.LongTensor or None
        Number of real frames per sequence, or None when ``lengths`` is None.

    Example
    -------
    >>> x = torch.zeros(2, 10, 4)
    >>> check_mixer_input(x, torch.tensor([1.0, 0.55]), 4, "Demo")
    tensor([10,  6])
    """
    if not torch.is_tensor(x):
        raise TypeError(f"{name} expects a tensor, got {type(x).__name__}.")
    if x.dim() != 3:
        raise ValueError(
            f"{name} expects input of shape [batch, time, {d_model}], "
            f"got a tensor of rank {x.dim()} with shape {tuple(x.shape)}."
        )
    if x.shape[-1] != d_model:
        raise ValueError(
            f"{name} was built for d_model={d_model} but the input has "
            f"{x.shape[-1]} channels (shape {tuple(x.shape)})."
        )
    if lengths is None:
        return None
    return relative_to_absolute(lengths, x.shape[0], x.shape[1], name)


def relative_to_absolute(lengths, batch_size, max_len, name="lengths"):
    """Converts relative lengths to frame counts, checking them.

    Arguments
    ---------
    lengths : torch.Tensor
        Relative lengths ``[batch]`` in (0, 1].
    batch_size : int
        Expected batch size.
    max_len : int
        Padded length of the time axis.
    name : str
        Name used in error messages.

    Returns
    -------
    abs_lengths : torch.LongTensor
        Frames per sequence, at least 1.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([0.5, 1.0]), 2, 8)
    tensor([4, 8])
    """
    if not torch.is_tensor(lengths):
        lengths = torch.as_tensor(lengths, dtype=torch.float)
    if lengths.dim() != 1 or lengths.shape[0] != batch_size:
        raise ValueError(
            f"{name}: lengths must have shape [{batch_size}], "
            f"got {tuple(lengths.shape)}."
        )
    lengths = lengths.float()
    bad = ~((lengths > 0) & (lengths <= 1.0 + 1e-6)) | torch.isnan(lengths)
    if bad.any():
        raise ValueError(
            f"{name}: relative lengths must lie in (0, 1], got "
            f"{lengths[bad].tolist()} (SpeechBrain lengths are fractions of "
            f"the padded length, not frame counts)."
        )
    abs_lengths = torch.round(lengths * max_len).long().clamp(1, max_len)
    return abs_lengths


def lengths_to_mask(abs_lengths, max_len):
    """Boolean mask ``[batch, max_len]``, True on real frames.

    Arguments
    ---------
    abs_lengths : torch.LongTensor
        Frames per sequence ``[batch]``.
    max_len : int
        Padded length.

    Returns
    -------
    mask : torch.BoolTensor

    Example
    -------
    >>> lengths_to_mask(torch.tensor([2, 3]), 4)
    tensor([[ True,  True, False, False],
            [ True,  True,  True, False]])
    """
    steps = torch.arange(max_len, device=abs_lengths.device)
    return steps.unsqueeze(0) < abs_lengths.unsqueeze(1)


def reverse_within_lengths(x, abs_lengths):
    """Reverses each sequence along time within its own length.

    Frame ``t < L_b`` of sequence ``b`` takes frame ``L_b - 1 - t``; padded
    frames (``t >= L_b``) become zeros, so the padding stays at the tail. The
    operation is its own inverse on real frames.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, ...]``.
    abs_lengths : torch.LongTensor or None
        Frames per sequence; None reverses the whole time axis.

    Returns
    -------
    reversed : torch.Tensor
        Same shape as ``x``.

    Example
    -------
    >>> x = torch.arange(1., 5.).view(1, 4, 1).repeat(2, 1, 1)
    >>> reverse_within_lengths(x, torch.tensor([4, 3]))[..., 0]
    tensor([[4., 3., 2., 1.],
            [3., 2., 1., 0.]])
    """
    if abs_lengths is None:
        return x.flip(1)
    max_len = x.shape[1]
    steps = torch.arange(max_len, device=x.device)
    index = abs_lengths.to(x.device).unsqueeze(1) - 1 - steps.unsqueeze(0)
    valid = index >= 0
    index = index.clamp(min=0)
    gather_index = index.view(*index.shape, *([1] * (x.dim() - 2)))
    gather_index = gather_index.expand_as(x)
    out = torch.gather(x, 1, gather_index)
    return out * valid.view(*valid.shape, *([1] * (x.dim() - 2))).to(out.dtype)


def zero_padded_frames(y, abs_lengths):
    """Sets the frames beyond each sequence's length to zero.

    Arguments
    ---------
    y : torch.Tensor
        ``[batch, time, channels]``.
    abs_lengths : torch.LongTensor or None
        Frames per sequence; None returns ``y`` unchanged.

    Returns
    -------
    y : torch.Tensor

    Example
    -------
    >>> zero_padded_frames(torch.ones(1, 3, 1), torch.tensor([2]))[..., 0]
    tensor([[1., 1., 0.]])
    """
    if abs_lengths is None:
        return y
    mask = lengths_to_mask(abs_lengths.to(y.device), y.shape[1])
    return y * mask.unsqueeze(-1).to(y.dtype)
