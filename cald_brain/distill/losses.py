"""Distillation losses of CALD: layerwise hidden-state loss and output KD.

Both losses take padding into account: a padded frame never contributes,
whatever value the model left there (HF encoders make padded frames non-zero
again after the positional convolution and the feed-forward blocks, see
cald-reference section 3.4).

Normalisation (cald-reference section 3.8). The reference speech code sums
the per-frame loss over frames and batch, multiplies it by
``n_i / F_total`` and finally divides all gradients by ``N = sum_i n_i``; the
net effect is a *frame average* of the per-frame loss weighted by
``alpha / accumulation_steps``. Here the loss is the frame average itself, so
that ``alpha_layer`` means the same thing whatever the batch size or the
gradient accumulation; the reference's effective weights are
``alpha / accum`` (TED-LIUM ``alpha_LD = 15 / 4 = 3.75``, ``alpha_KD = 1 / 4``;
SLURP ``15 / 2``; VoxCeleb ``30 / 4``).

Reference
---------
He & Garner, "Joint Fine-tuning and Conversion of Pretrained Speech and
Language Models towards Linear Complexity", ICLR 2025, eq. 7.

Authors
 * cald-brain developers 2026
"""

import torch
import torch.nn.functional as F

LAYER_NORMALIZATIONS = ("layernorm", "none")


def frame_mask(mask_or_lengths, batch_size, max_len, device=None):
    """Returns a boolean frame mask ``[batch, time]``, True on real frames.

    Arguments
    ---------
    mask_or_lengths : torch.Tensor or None
        Either a frame mask ``[batch, time]`` (bool, or 0/1 integers or
        floats) or SpeechBrain relative lengths ``[batch]`` in (0, 1]. None
        means that no frame is padded.
    batch_size : int
        Expected batch size.
    max_len : int
        Padded length of the time axis.
    device : torch.device, optional
        Device of the returned mask (default: that of the input).

    Returns
    -------
    mask : torch.BoolTensor
        ``[batch_size, max_len]``.

    Example
    -------
    >>> frame_mask(torch.tensor([1.0, 0.5]), 2, 4)
    tensor([[ True,  True,  True,  True],
            [ True,  True, False, False]])
    >>> frame_mask(None, 1, 3)
    tensor([[True, True, True]])
    """
    if mask_or_lengths is None:
        return torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
    if not torch.is_tensor(mask_or_lengths):
        mask_or_lengths = torch.as_tensor(mask_or_lengths)
    if device is None:
        device = mask_or_lengths.device
    if mask_or_lengths.dim() == 2:
        if tuple(mask_or_lengths.shape) != (batch_size, max_len):
            raise ValueError(
                f"Frame mask has shape {tuple(mask_or_lengths.shape)} but the "
                f"hidden states have batch {batch_size} and {max_len} frames."
            )
        return mask_or_lengths.to(device=device).bool()
    if mask_or_lengths.dim() == 1:
        if mask_or_lengths.shape[0] != batch_size:
            raise ValueError(
                f"Relative lengths have shape {tuple(mask_or_lengths.shape)} "
                f"but the batch has {batch_size} sequences."
            )
        lengths = mask_or_lengths.to(device=device, dtype=torch.float)
        if ((lengths <= 0) | (lengths > 1.0 + 1e-6)).any():
            raise ValueError(
                "Relative lengths must lie in (0, 1] (SpeechBrain lengths are "
                f"fractions of the padded length), got {lengths.tolist()}."
            )
        # Same rounding as speechbrain's make_padding_masks.
        abs_lengths = torch.round(lengths * max_len).long()
        steps = torch.arange(max_len, device=device)
        return steps.unsqueeze(0) < abs_lengths.unsqueeze(1)
    raise ValueError(
        "Expected a frame mask [batch, time] or relative lengths [batch], got "
        f"a tensor of shape {tuple(mask_or_lengths.shape)}."
    )


def resolve_layer_map(n_student, n_teacher, layer_map=None):
    """Turns a layer-map hparam into a list of ``(student, teacher)`` pairs.

    Arguments
    ---------
    n_student : int
        Number of hidden states the student gives.
    n_teacher : int
        Number of hidden states the teacher gives.
    layer_map : None, dict or sequence of pairs
        None maps every layer one to one (and requires equal counts); a
        dict ``{student_idx: teacher_idx}`` or a list of
        ``[student_idx, teacher_idx]`` pairs selects layers. Negative
        indices count from the end, as in Python.

    Returns
    -------
    pairs : list of (int, int)
        Non-negative indices.

    Example
    -------
    >>> resolve_layer_map(3, 3)
    [(0, 0), (1, 1), (2, 2)]
    >>> resolve_layer_map(2, 4, {0: 1, -1: -1})
    [(0, 1), (1, 3)]
    """
    if layer_map is None:
        if n_student != n_teacher:
            raise ValueError(
                f"The student gives {n_student} hidden states and the teacher "
                f"{n_teacher}; they cannot be matched one to one. Set the "
                "`layer_map` hparam to a list of [student_idx, teacher_idx] "
                "pairs (or a dict student_idx: teacher_idx)."
            )
        return [(i, i) for i in range(n_student)]

    if isinstance(layer_map, dict):
        items = list(layer_map.items())
    else:
        try:
            items = [tuple(pair) for pair in layer_map]
        except TypeError:
            raise ValueError(
                "`layer_map` must be a dict {student_idx: teacher_idx} or a "
                f"list of [student_idx, teacher_idx] pairs, got {layer_map!r}."
            ) from None
    if len(items) == 0:
        raise ValueError("`layer_map` is empty: map at least one layer.")

    pairs = []
    for item in items:
        if len(item) != 2:
            raise ValueError(
                f"`layer_map` entry {item!r} is not a (student_idx, "
                "teacher_idx) pair."
            )
        s_idx, t_idx = (_check_index(i, n, who) for i, n, who in zip(
            item, (n_student, n_teacher), ("student", "teacher")
        ))
        pairs.append((s_idx, t_idx))
    return pairs


def _check_index(index, count, who):
    """Validates one layer index against the number of hidden states."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise ValueError(f"`layer_map` index {index!r} for the {who} is not an int.")
    if not -count <= index < count:
        raise ValueError(
            f"`layer_map` refers to {who} hidden state {index}, but the {who} "
            f"gives only {count} hidden states."
        )
    return index % count


def normalize_hidden(hidden, normalization="layernorm", eps=1e-5):
    """Normalises hidden states before they are compared, in float32.

    Arguments
    ---------
    hidden : torch.Tensor
        ``[batch, time, channels]``.
    normalization : str
        ``"layernorm"``: a parameter-free LayerNorm over channels (speech and
        LM rows of cald-reference section 6); ``"none"``: raw states (NLP
        row).
    eps : float
        LayerNorm epsilon.

    Returns
    -------
    normalized : torch.Tensor
        float32, same shape.

    Example
    -------
    >>> h = normalize_hidden(torch.randn(2, 5, 8) * 3 + 1)
    >>> torch.allclose(h.mean(-1), torch.zeros(2, 5), atol=1e-5)
    True
    """
    # Losses are computed in float32 even under bf16 autocast: a mean of
    # squared differences of unit-variance vectors loses most of its digits
    # in bf16.
    hidden = hidden.float()
    if normalization == "layernorm":
        return F.layer_norm(hidden, hidden.shape[-1:], eps=eps)
    if normalization == "none":
        return hidden
    raise ValueError(
        f"Unknown layer-loss normalization '{normalization}'; choose one of "
        f"{', '.join(LAYER_NORMALIZATIONS)}."
    )


def layer_distance(student, teacher, mask=None, normalization="layernorm", eps=1e-5):
    """Masked squared distance between one student and one teacher layer.

    The per-frame loss is the squared error averaged over channels; it is
    then averaged over the real frames of the whole batch (padding never
    counts). This is the frame-average form of cald-reference section 3.8.

    Arguments
    ---------
    student : torch.Tensor
        ``[batch, time, channels]``.
    teacher : torch.Tensor
        Same shape as ``student``.
    mask : torch.Tensor, optional
        Frame mask ``[batch, time]`` or relative lengths ``[batch]``.
    normalization : str
        ``"layernorm"`` or ``"none"`` (see :func:`normalize_hidden`).
    eps : float
        LayerNorm epsilon.

    Returns
    -------
    loss : torch.Tensor
        float32 scalar.

    Example
    -------
    >>> s = torch.zeros(1, 4, 2); t = torch.zeros(1, 4, 2)
    >>> t[0, 3] = 100.0  # a padded frame: ignored
    >>> layer_distance(s, t, torch.tensor([0.75]), normalization="none")
    tensor(0.)
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"Student hidden state {tuple(student.shape)} and teacher hidden "
            f"state {tuple(teacher.shape)} differ in shape; layerwise "
            "distillation needs the same [batch, time, channels]."
        )
    if student.dim() != 3:
        raise ValueError(
            "Hidden states must be [batch, time, channels], got shape "
            f"{tuple(student.shape)}."
        )
    batch, time = student.shape[:2]
    valid = frame_mask(mask, batch, time, device=student.device)
    per_frame = (
        normalize_hidden(student, normalization, eps)
        - normalize_hidden(teacher, normalization, eps)
    ).pow(2).mean(-1)
    # torch.where rather than a product, so that a non-finite value left at a
    # padded frame cannot leak into the loss.
    per_frame = torch.where(valid, per_frame, torch.zeros_like(per_frame))
    return per_frame.sum() / valid.sum().clamp(min=1)


class LayerwiseDistillationLoss(torch.nn.Module):
    """Layerwise hidden-state loss averaged over a layer map (CALD, eq. 7).

    ``L_layer = mean over mapped pairs (s, t) of layer_distance(h_S[s], h_T[t])``.
    The mean over layers follows the speech and LM reference code
    (cald-reference section 6; the NLP code sums, i.e. its ``alpha`` is this
    one times the number of layers).

    Arguments
    ---------
    layer_map : None, dict or list of pairs
        See :func:`resolve_layer_map`; None matches all layers one to one.
    normalization : str
        ``"layernorm"`` (parameter-free LayerNorm on both sides) or ``"none"``.
    eps : float
        LayerNorm epsilon (1e-5 as in the reference).

    Example
    -------
    >>> loss = LayerwiseDistillationLoss()
    >>> student = [torch.randn(2, 6, 8) for _ in range(3)]
    >>> teacher = [h.clone() for h in student]
    >>> loss(student, teacher, torch.tensor([1.0, 0.5]))
    tensor(0.)
    >>> loss.per_layer(student, [h + torch.randn_like(h) for h in student]).shape
    torch.Size([3])
    """

    def __init__(self, layer_map=None, normalization="layernorm", eps=1e-5):
        super().__init__()
        if normalization not in LAYER_NORMALIZATIONS:
            raise ValueError(
                f"Unknown layer-loss normalization '{normalization}'; choose "
                f"one of {', '.join(LAYER_NORMALIZATIONS)}."
            )
        self.layer_map = layer_map
        self.normalization = normalization
        self.eps = eps

    def pairs(self, n_student, n_teacher):
        """The ``(student, teacher)`` index pairs for these layer counts.

        Arguments
        ---------
        n_student : int
            Number of student hidden states.
        n_teacher : int
            Number of teacher hidden states.

        Returns
        -------
        pairs : list of (int, int)
        """
        return resolve_layer_map(n_student, n_teacher, self.layer_map)

    def per_layer(self, student_hidden, teacher_hidden, mask=None):
        """Loss of each mapped pair.

        Arguments
        ---------
        student_hidden : sequence of torch.Tensor
            Student layer outputs, each ``[batch, time, channels]``.
        teacher_hidden : sequence of torch.Tensor
            Teacher layer outputs.
        mask : torch.Tensor, optional
            Frame mask ``[batch, time]`` or relative lengths ``[batch]``.

        Returns
        -------
        losses : torch.Tensor
            ``[n_pairs]``, float32.
        """
        _check_hidden_list(student_hidden, "student")
        _check_hidden_list(teacher_hidden, "teacher")
        pairs = self.pairs(len(student_hidden), len(teacher_hidden))
        losses = []
        for s_idx, t_idx in pairs:
            try:
                losses.append(
                    layer_distance(
                        student_hidden[s_idx],
                        teacher_hidden[t_idx].detach(),
                        mask,
                        self.normalization,
                        self.eps,
                    )
                )
            except ValueError as err:
                raise ValueError(
                    f"Layer pair (student {s_idx}, teacher {t_idx}): {err}"
                ) from None
        return torch.stack(losses)

    def forward(self, student_hidden, teacher_hidden, mask=None):
        """Mean loss over the mapped layers.

        Arguments
        ---------
        student_hidden : sequence of torch.Tensor
            Student layer outputs, each ``[batch, time, channels]``.
        teacher_hidden : sequence of torch.Tensor
            Teacher layer outputs.
        mask : torch.Tensor, optional
            Frame mask ``[batch, time]`` or relative lengths ``[batch]``.

        Returns
        -------
        loss : torch.Tensor
            float32 scalar.
        """
        return self.per_layer(student_hidden, teacher_hidden, mask).mean()


def _check_hidden_list(hidden, who):
    """Raises a clear error when a model gave no hidden states."""
    if hidden is None:
        raise ValueError(
            f"The {who} gave no hidden states; return them in "
            "ModelOutputs.hidden_states (e.g. HF output_hidden_states=True) "
            "or set alpha_layer to 0."
        )
    if len(hidden) == 0:
        raise ValueError(f"The {who} gave an empty list of hidden states.")


def output_distillation_loss(student_logits, teacher_logits, mask=None, temperature=2.0):
    """KL(softmax(z_T / beta) || softmax(z_S / beta)), masked mean.

    The KL divergence is summed over classes, then averaged over real frames
    (``[batch, time, classes]`` logits) or over the batch (``[batch,
    classes]``). As in the reference speech code there is no ``beta ** 2``
    factor; fold it into ``alpha_kd`` to reproduce the NLP code's scaling.

    Arguments
    ---------
    student_logits : torch.Tensor
        ``[batch, classes]`` or ``[batch, time, classes]``.
    teacher_logits : torch.Tensor
        Same shape.
    mask : torch.Tensor, optional
        Frame mask or relative lengths, for 3-D logits.
    temperature : float
        beta (2 in every reference run).

    Returns
    -------
    loss : torch.Tensor
        float32 scalar.

    Example
    -------
    >>> z = torch.randn(2, 5, 7)
    >>> output_distillation_loss(z, z, torch.tensor([1.0, 0.4])).abs() < 1e-6
    tensor(True)
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"Student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape."
        )
    if temperature <= 0:
        raise ValueError(f"KD temperature must be positive, got {temperature}.")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1)
    if kl.dim() == 1:
        return kl.mean()
    if kl.dim() != 2:
        raise ValueError(
            "Logits must be [batch, classes] or [batch, time, classes], got "
            f"shape {tuple(student_logits.shape)}."
        )
    valid = frame_mask(mask, kl.shape[0], kl.shape[1], device=kl.device)
    kl = torch.where(valid, kl, torch.zeros_like(kl))
    return kl.sum() / valid.sum().clamp(min=1)


class OutputDistillationLoss(torch.nn.Module):
    """Output (logit) distillation at temperature beta, see
    :func:`output_distillation_loss`. Several heads (a list of logits, e.g.
    SLURP's scenario and action heads) are averaged.

    Arguments
    ---------
    temperature : float
        beta, default 2.

    Example
    -------
    >>> kd = OutputDistillationLoss(temperature=2.0)
    >>> s, t = torch.zeros(3, 4), torch.zeros(3, 4)
    >>> kd(s, t)
    tensor(0.)
    >>> kd([s, s], [t, t + 1.0])  # a constant shift does not change softmax
    tensor(0.)
    """

    def __init__(self, temperature=2.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"KD temperature must be positive, got {temperature}.")
        self.temperature = temperature

    def forward(self, student_logits, teacher_logits, mask=None):
        """Computes the KD loss.

        Arguments
        ---------
        student_logits : torch.Tensor or sequence of torch.Tensor
            One tensor per head.
        teacher_logits : torch.Tensor or sequence of torch.Tensor
            Same structure.
        mask : torch.Tensor, optional
            Frame mask or relative lengths, for 3-D logits.

        Returns
        -------
        loss : torch.Tensor
            float32 scalar.
        """
        if student_logits is None or teacher_logits is None:
            who = "student" if student_logits is None else "teacher"
            raise ValueError(
                f"Output distillation needs logits but the {who} gave none; "
                "return them in ModelOutputs.logits or set alpha_kd to 0."
            )
        if torch.is_tensor(student_logits):
            return output_distillation_loss(
                student_logits, teacher_logits, mask, self.temperature
            )
        if len(student_logits) != len(teacher_logits):
            raise ValueError(
                f"The student has {len(student_logits)} output heads and the "
                f"teacher {len(teacher_logits)}."
            )
        losses = [
            output_distillation_loss(s, t, mask, self.temperature)
            for s, t in zip(student_logits, teacher_logits)
        ]
        return torch.stack(losses).mean()
