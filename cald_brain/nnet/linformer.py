"""Linformer self-attention: attention over a learned projection of time.

Linformer (Wang et al., 2020, "Linformer: Self-Attention with Linear
Complexity", arXiv 2006.04768) projects the keys and values along the time
axis onto ``k`` virtual positions with learned matrices ``E`` and ``F``, so
that each query attends to ``k`` slots instead of ``T`` frames: the cost is
``O(T k)`` rather than ``O(T^2)``. CALD (He & Garner, "Joint Fine-tuning
and Conversion of Pretrained Speech and Language Models towards Linear
Complexity", ICLR 2025) converts RoBERTa into Linformer this way, reusing the
q/k/v projections of the transformer and learning only ``E`` and ``F``.

Differences from the reference implementation (``nlp/linformer_utils.py``):
the batch is handled in one vectorised pass (no Python loop over sequences),
padding is given by SpeechBrain relative lengths, and the ``layerwise``
projection is passed in explicitly instead of living in a module global.
The share modes are named after the Linformer paper, so the reference's
``proj_share_mode="none"`` (one E and one F per layer, shared by its heads)
is ``share="headwise"`` here, its ``"kv"`` is ``"kv"`` and its ``"layer"``
is ``"layerwise"``; ``share="none"`` (per-head E and F) has no counterpart
there.

Authors
 * cald-brain developers 2026
"""

import math

import torch
from torch import nn

from cald_brain.nnet.registry import register_mixer
from cald_brain.nnet.utils import (
    check_mixer_input,
    lengths_to_mask,
    zero_padded_frames,
)

SHARE_MODES = ("none", "headwise", "kv", "layerwise")


@register_mixer("linformer")
class LinformerSelfAttention(nn.Module):
    """Multi-head self-attention with Linformer sequence-length projections.

    For a sequence with ``L`` real frames, keys and values are projected on
    the time axis with the first ``L`` rows of ``E`` and ``F``::

        K~ = E[:L]^T K[:L] / sqrt(L),   V~ = F[:L]^T V[:L] / sqrt(L)

    and each head computes ``softmax(Q K~^T / sqrt(head_dim)) V~``. Padded
    frames never contribute to ``K~`` or ``V~``, so a padded batch gives the
    same result as each sequence run alone, and outputs at padded frames are
    zero.

    Arguments
    ---------
    d_model : int
        Number of input and output channels.
    nhead : int
        Number of attention heads; must divide ``d_model``.
    max_len : int
        Longest sequence the projections cover (their number of rows). The
        reference uses RoBERTa's 514 positions.
    k : int
        Number of projected positions (the reference uses 256).
    share : str
        How the sequence-length projections are shared:
        ``"none"``: separate ``E`` and ``F`` for every head;
        ``"headwise"``: one ``E`` and one ``F`` for all heads of the layer
        (the reference's default);
        ``"kv"``: one matrix per layer used as both ``E`` and ``F``;
        ``"layerwise"``: one ``E = F`` shared by all layers, given as
        ``shared_projection``.
    dropout : float
        Dropout on the attention probabilities.
    bias : bool
        Whether the q/k/v/output projections have a bias.
    shared_projection : torch.nn.Parameter, optional
        Only with ``share="layerwise"``: the ``[max_len, k]`` projection
        shared by all layers (see :meth:`new_shared_projection`). If None,
        the module creates its own.

    Example
    -------
    >>> attn = LinformerSelfAttention(d_model=32, nhead=4, max_len=16, k=8)
    >>> x = torch.randn(2, 10, 32)
    >>> attn(x, lengths=torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 10, 32])
    """

    def __init__(
        self,
        d_model,
        nhead,
        max_len=512,
        k=256,
        share="headwise",
        dropout=0.0,
        bias=True,
        shared_projection=None,
    ):
        super().__init__()
        if share not in SHARE_MODES:
            raise ValueError(
                f"LinformerSelfAttention: unknown share mode {share!r}; "
                f"valid modes are {', '.join(SHARE_MODES)}."
            )
        if nhead < 1 or d_model % nhead != 0:
            raise ValueError(
                f"LinformerSelfAttention: nhead={nhead} must be a positive "
                f"divisor of d_model={d_model}."
            )
        if k < 1:
            raise ValueError(
                f"LinformerSelfAttention: k must be >= 1, got {k}."
            )
        if max_len < 1:
            raise ValueError(
                f"LinformerSelfAttention: max_len must be >= 1, got {max_len}."
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(
                f"LinformerSelfAttention: dropout must be in [0, 1), "
                f"got {dropout}."
            )
        if shared_projection is not None and share != "layerwise":
            raise ValueError(
                "LinformerSelfAttention: shared_projection is only used with "
                f"share='layerwise', got share={share!r}."
            )

        self.d_model = d_model
        self.nhead = nhead
        self.head_dim = d_model // nhead
        self.max_len = max_len
        self.k = k
        self.share = share

        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.attn_dropout = nn.Dropout(dropout)

        # N(0, 1) as in the reference. Together with the 1 / sqrt(L) of the
        # forward pass this keeps the variance of K~ and V~ equal to that of
        # K and V whatever the sequence length, so no further scaling is
        # needed.
        if share == "none":
            self.key_seq_proj = nn.Parameter(torch.randn(nhead, max_len, k))
            self.value_seq_proj = nn.Parameter(torch.randn(nhead, max_len, k))
        elif share == "headwise":
            self.key_seq_proj = nn.Parameter(torch.randn(max_len, k))
            self.value_seq_proj = nn.Parameter(torch.randn(max_len, k))
        elif share == "kv":
            self.kv_seq_proj = nn.Parameter(torch.randn(max_len, k))
        else:  # layerwise
            if shared_projection is None:
                shared_projection = self.new_shared_projection(max_len, k)
            self._check_shared_projection(shared_projection, max_len, k)
            # The same Parameter object is registered in every layer, so
            # `parameters()` of the whole model yields (and an optimizer
            # updates) it once.
            self.kv_seq_proj = shared_projection

    @staticmethod
    def new_shared_projection(max_len, k):
        """Creates the ``E = F`` projection shared by ``layerwise`` layers.

        Build it once and pass it as ``shared_projection`` to every layer.

        Arguments
        ---------
        max_len : int
            Longest sequence covered (rows).
        k : int
            Number of projected positions (columns).

        Returns
        -------
        projection : torch.nn.Parameter
            ``[max_len, k]``, initialised N(0, 1) like the reference.

        Example
        -------
        >>> proj = LinformerSelfAttention.new_shared_projection(16, 8)
        >>> layers = torch.nn.ModuleList(
        ...     LinformerSelfAttention(
        ...         32, 4, max_len=16, k=8, share="layerwise",
        ...         shared_projection=proj,
        ...     )
        ...     for _ in range(2)
        ... )
        >>> layers[0].kv_seq_proj is layers[1].kv_seq_proj
        True
        >>> proj.shape
        torch.Size([16, 8])
        """
        return nn.Parameter(torch.randn(max_len, k))

    @staticmethod
    def _check_shared_projection(projection, max_len, k):
        if not isinstance(projection, nn.Parameter):
            # A plain tensor would not be trained, and copying it into a new
            # Parameter per layer would silently break the sharing.
            raise TypeError(
                "LinformerSelfAttention: shared_projection must be an "
                f"nn.Parameter, got {type(projection).__name__}."
            )
        if tuple(projection.shape) != (max_len, k):
            raise ValueError(
                "LinformerSelfAttention: shared_projection must have shape "
                f"[max_len={max_len}, k={k}], got {tuple(projection.shape)}."
            )

    @classmethod
    def from_attention(cls, projections, **kwargs):
        """Builds the module and copies the projections of an attention.

        The q/k/v/output weights and biases are cloned bit-exactly (the new
        module does not share storage with the source); only the
        sequence-length projections are new, as in CALD's RoBERTa conversion.

        Arguments
        ---------
        projections : dict
            ``nn.Linear`` layers keyed ``"q"``, ``"k"``, ``"v"`` and ``"o"``
            (the attention's output projection).
        **kwargs
            Constructor arguments (``nhead`` is required). ``d_model``
            defaults to ``projections["q"].in_features`` and ``bias`` to
            whether any source projection has a bias.

        Returns
        -------
        attn : LinformerSelfAttention
            On the device and in the dtype of ``projections["q"]``.

        Example
        -------
        >>> mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
        >>> w_q, w_k, w_v = mha.in_proj_weight.chunk(3)
        >>> b_q, b_k, b_v = mha.in_proj_bias.chunk(3)
        >>> def linear(w, b):
        ...     lin = torch.nn.Linear(32, 32)
        ...     lin.weight.data.copy_(w)
        ...     lin.bias.data.copy_(b)
        ...     return lin
        >>> projections = {
        ...     "q": linear(w_q, b_q), "k": linear(w_k, b_k),
        ...     "v": linear(w_v, b_v), "o": mha.out_proj,
        ... }
        >>> attn = LinformerSelfAttention.from_attention(
        ...     projections, nhead=4, max_len=16, k=8
        ... )
        >>> attn(torch.randn(2, 10, 32)).shape
        torch.Size([2, 10, 32])
        """
        names = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}
        missing = [key for key in names if key not in projections]
        if missing:
            raise ValueError(
                "LinformerSelfAttention.from_attention: missing projection(s) "
                f"{missing}; expected nn.Linear layers keyed 'q', 'k', 'v', "
                f"'o', got keys {sorted(projections)}."
            )
        for key in names:
            if not isinstance(projections[key], nn.Linear):
                raise TypeError(
                    "LinformerSelfAttention.from_attention: projection "
                    f"{key!r} must be an nn.Linear, got "
                    f"{type(projections[key]).__name__}."
                )
        source_q = projections["q"]
        kwargs.setdefault("d_model", source_q.in_features)
        kwargs.setdefault(
            "bias", any(projections[key].bias is not None for key in names)
        )
        attn = cls(**kwargs)
        attn.to(device=source_q.weight.device, dtype=source_q.weight.dtype)

        for key, attr in names.items():
            source, target = projections[key], getattr(attn, attr)
            if source.weight.shape != target.weight.shape:
                raise ValueError(
                    "LinformerSelfAttention.from_attention: projection "
                    f"{key!r} has weight shape {tuple(source.weight.shape)}, "
                    f"expected {tuple(target.weight.shape)} "
                    f"(d_model={attn.d_model})."
                )
            if source.bias is not None and target.bias is None:
                raise ValueError(
                    "LinformerSelfAttention.from_attention: projection "
                    f"{key!r} has a bias but the module was built with "
                    "bias=False; its bias would be lost."
                )
            with torch.no_grad():
                # copy_ into the module's own storage: bit-exact (same dtype)
                # and independent of the source afterwards.
                target.weight.copy_(source.weight)
                if target.bias is not None:
                    if source.bias is None:
                        # A missing bias is a zero bias: same function.
                        target.bias.zero_()
                    else:
                        target.bias.copy_(source.bias)
        return attn

    def _length_projections(self, time):
        """Returns ``(E, F)`` cut to the first ``time`` rows."""
        if self.share in ("none", "headwise"):
            key_proj, value_proj = self.key_seq_proj, self.value_seq_proj
        else:
            key_proj = value_proj = self.kv_seq_proj
        return key_proj[..., :time, :], value_proj[..., :time, :]

    def _project_length(self, seq_proj, x):
        """Projects ``x`` ``[B, T, C]`` on time with ``seq_proj``.

        Returns ``[B, nhead, k, head_dim]``.
        """
        batch, time, _ = x.shape
        if seq_proj.dim() == 2:
            # Shared by the heads: project all channels at once, then split.
            out = torch.einsum("tk,btc->bkc", seq_proj, x)
            return out.view(batch, self.k, self.nhead, self.head_dim).transpose(
                1, 2
            )
        heads = x.view(batch, time, self.nhead, self.head_dim)
        return torch.einsum("htk,bthd->bhkd", seq_proj, heads)

    def forward(self, x, lengths=None):
        """Applies Linformer self-attention.

        Arguments
        ---------
        x : torch.Tensor
            Input ``[batch, time, d_model]``, ``time <= max_len``.
        lengths : torch.Tensor, optional
            SpeechBrain relative lengths ``[batch]`` in (0, 1]; None means
            no padding.

        Returns
        -------
        y : torch.Tensor
            ``[batch, time, d_model]``, zero at padded frames.

        Example
        -------
        >>> attn = LinformerSelfAttention(32, 4, max_len=16, k=8, share="kv")
        >>> attn(torch.randn(2, 10, 32)).shape
        torch.Size([2, 10, 32])
        """
        abs_lengths = check_mixer_input(
            x, lengths, self.d_model, type(self).__name__
        )
        batch, time, _ = x.shape
        if time > self.max_len:
            raise ValueError(
                f"LinformerSelfAttention: input has {time} frames but the "
                f"sequence-length projections cover max_len={self.max_len} "
                "frames; truncate the input or build the module with a "
                "larger max_len."
            )
        if abs_lengths is None:
            abs_lengths = torch.full(
                (batch,), time, dtype=torch.long, device=x.device
            )
        abs_lengths = abs_lengths.to(x.device)
        real = lengths_to_mask(abs_lengths, time).unsqueeze(-1)  # [B, T, 1]

        # Zero the padded input frames first (masked_fill, not a product, so
        # even inf/NaN padding cannot leak into the real frames).
        x = x.masked_fill(~real, 0.0)
        queries = self.q_proj(x)
        # Padded rows of K and V are zeroed (their biases would otherwise
        # contribute), which is the same as using E[:L_b] and F[:L_b] only.
        # Each sequence is scaled by its own 1 / sqrt(L_b), as in the
        # reference's per-sample loop.
        scale = abs_lengths.to(x.dtype).rsqrt().view(batch, 1, 1)
        keys = self.k_proj(x).masked_fill(~real, 0.0) * scale
        values = self.v_proj(x).masked_fill(~real, 0.0) * scale

        key_proj, value_proj = self._length_projections(time)
        keys = self._project_length(key_proj, keys)  # [B, H, k, Dh]
        values = self._project_length(value_proj, values)
        queries = queries.view(batch, time, self.nhead, self.head_dim)
        queries = queries.transpose(1, 2)  # [B, H, T, Dh]

        # All k projected slots are valid for every sequence: no mask here.
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)
        probs = self.attn_dropout(scores.softmax(dim=-1))
        context = (probs @ values).transpose(1, 2).reshape(batch, time, -1)
        return zero_padded_frames(self.out_proj(context), abs_lengths)

    def extra_repr(self):
        """Summary shown by ``print(module)``.

        Returns
        -------
        summary : str

        Example
        -------
        >>> LinformerSelfAttention(32, 4, max_len=16, k=8).extra_repr()
        'd_model=32, nhead=4, max_len=16, k=8, share=headwise'
        """
        return (
            f"d_model={self.d_model}, nhead={self.nhead}, "
            f"max_len={self.max_len}, k={self.k}, share={self.share}"
        )
