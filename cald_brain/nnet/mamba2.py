"""Mamba2 mixer with an exact chunked SSD scan in pure PyTorch.

The module mirrors ``mamba_ssm.modules.mamba2.Mamba2`` (constructor arguments,
parameter names and shapes), so a state_dict moves unchanged between this
module, mamba_ssm's CUDA module and transformers' ``Mamba2Mixer``. On CUDA with
``mamba_ssm`` installed the fused Triton kernel is used; everywhere else the
pure-PyTorch path below runs. Both compute the same function.

The CPU path evaluates the state-space duality (SSD) form of the scan chunk by
chunk (Dao & Gu 2024, section 6): inside a chunk the recurrence is a masked
"attention" product ``(C B^T * decay) X``; across chunks only a small state
``[heads, d_state, headdim]`` is carried. Everything is batched matrix
products, so its cost sits close to the projections' matrix-multiply floor.

Reference
---------
Dao & Gu, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality", ICML 2024.

Authors
 * cald-brain developers 2026
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from cald_brain.nnet.registry import register_mixer
from cald_brain.nnet.utils import check_mixer_input, zero_padded_frames


def _fused_kernel():
    """Returns mamba_ssm's fused Mamba2 kernel, or None when unavailable."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import (
            mamba_split_conv1d_scan_combined,
        )
    except Exception:  # ImportError, or a broken CUDA/Triton install
        return None
    return mamba_split_conv1d_scan_combined


# Largest |log-decay| spread a chunk may have for the factored path: the
# factors exp(+-spread/2) then stay far from float32 overflow and denormals.
_FACTORED_MAX_SPREAD = 80.0


def ssd_chunked_scan(x, dt, A, B, C, chunk_size, initial_state=None):
    """Exact chunked SSD scan (pure PyTorch).

    Computes, for every head ``h`` and step ``t``::

        S_t = exp(dt_t * A_h) * S_{t-1} + dt_t * B_t x_t^T
        y_t = C_t^T S_t

    with ``S`` of shape ``[d_state, headdim]``, without the ``D`` skip term.

    Two exact evaluations are used. When the decay a head accumulates over a
    chunk is moderate, its intra-chunk decay ``exp(a_l - a_s)`` is factored
    into ``exp(a_l - r) * exp(r - a_s)`` around the chunk's middle ``r``, so
    the quadratic part is one matrix product per group shared by all its
    heads (:func:`_ssd_scan_factored`). Each head gets the longest chunk
    (up to ``min(chunk_size, 128)``) for which its factors stay far from
    overflow; heads that decay too fast even for short chunks use the
    pairwise form, which exponentiates every ``a_l - a_s``
    (:func:`_ssd_scan_pairwise`).

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, heads, headdim]``.
    dt : torch.Tensor
        Positive step sizes ``[batch, time, heads]``.
    A : torch.Tensor
        Negative decay rates ``[heads]``.
    B : torch.Tensor
        ``[batch, time, groups, d_state]``; heads are split evenly over groups.
    C : torch.Tensor
        ``[batch, time, groups, d_state]``.
    chunk_size : int
        Longest chunk the scan is evaluated in. Any value gives the same
        result; it trades quadratic intra-chunk work against the number of
        sequential inter-chunk steps.
    initial_state : torch.Tensor, optional
        ``[batch, heads, d_state, headdim]`` state before the first step.

    Returns
    -------
    y : torch.Tensor
        ``[batch, time, heads, headdim]``.
    final_state : torch.Tensor
        ``[batch, heads, d_state, headdim]`` state after the last step.

    Example
    -------
    >>> x = torch.randn(2, 10, 4, 3)
    >>> dt = torch.rand(2, 10, 4)
    >>> A = -torch.rand(4)
    >>> B, C = torch.randn(2, 10, 1, 5), torch.randn(2, 10, 1, 5)
    >>> y, state = ssd_chunked_scan(x, dt, A, B, C, chunk_size=4)
    >>> y.shape, state.shape
    (torch.Size([2, 10, 4, 3]), torch.Size([2, 4, 5, 3]))
    """
    seq_len, nheads = x.shape[1], x.shape[2]
    log_decay = dt * A
    plan = _plan_chunks(log_decay.detach(), min(chunk_size, 128, seq_len), B.shape[2])
    if len(plan) == 1:
        (form, L, _), = plan
        scan = _ssd_scan_factored if form == "factored" else _ssd_scan_pairwise
        return scan(x, log_decay, dt, B, C, L, initial_state)
    # Heads with different chunk lengths run separately (one group of B/C).
    ys, states, order = [], [], []
    for form, L, heads in plan:
        scan = _ssd_scan_factored if form == "factored" else _ssd_scan_pairwise
        index = torch.tensor(heads, device=x.device)
        y, state = scan(
            x.index_select(2, index),
            log_decay.index_select(2, index),
            dt.index_select(2, index),
            B,
            C,
            L,
            None if initial_state is None else initial_state.index_select(1, index),
        )
        ys.append(y)
        states.append(state)
        order.extend(heads)
    inverse = torch.empty(nheads, dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(nheads)
    inverse = inverse.to(x.device)
    y = torch.cat(ys, dim=2).index_select(2, inverse)
    return y, torch.cat(states, dim=1).index_select(1, inverse)


def _plan_chunks(log_decay, max_len, ngroups):
    """Chooses, per head, the scan form and chunk length.

    Returns a list of ``(form, chunk_length, heads)``. With several B/C
    groups all heads share one plan (the factored form broadcasts B and C
    over the heads of each group).
    """
    nheads = log_decay.shape[-1]
    candidates = [max_len]
    while candidates[-1] > 16:
        candidates.append(candidates[-1] // 2)
    # spreads[i, h]: largest log-decay head h accumulates in a chunk of
    # length candidates[i].
    spreads = torch.stack([_max_chunk_spread(log_decay, L) for L in candidates]).cpu()
    fits = spreads <= _FACTORED_MAX_SPREAD
    if ngroups > 1:
        fits = fits.all(dim=1, keepdim=True).expand_as(fits)
    plan = {}
    for h in range(nheads):
        ok = torch.nonzero(fits[:, h]).flatten()
        key = ("factored", candidates[int(ok[0])]) if len(ok) else ("pairwise", min(max_len, 64))
        plan.setdefault(key, []).append(h)
    return [(form, L, heads) for (form, L), heads in plan.items()]


def _max_chunk_spread(log_decay, L):
    """Per head, the largest total log-decay accumulated in one chunk of length L."""
    batch, seq_len, nheads = log_decay.shape
    n_chunks = -(-seq_len // L)
    padded = F.pad(log_decay, (0, 0, 0, n_chunks * L - seq_len))
    return -padded.view(batch, n_chunks, L, nheads).sum(2).amin(dim=(0, 1))


def _pad_time(L, *tensors):
    """Pads dim 1 of each tensor with zeros up to a multiple of L.

    Zero steps after the end (dt = 0) neither decay nor feed the state, so
    they change neither the real outputs nor the final state.
    """
    seq_len = tensors[0].shape[1]
    pad = -seq_len % L
    if not pad:
        return tensors
    return tuple(F.pad(t, (0, 0) * (t.dim() - 2) + (0, pad)) for t in tensors)


def _ssd_scan_factored(x, log_decay, dt, B, C, L, initial_state):
    """SSD scan with the intra-chunk decay factored around each chunk's middle.

    Needs every chunk's accumulated decay to be moderate (see
    :func:`ssd_chunked_scan`). Layout ``[batch, chunk, step, ...]`` keeps
    every reshape a view when there is a single group.
    """
    batch, seq_len, nheads, headdim = x.shape
    G, N = B.shape[2], B.shape[3]
    J = nheads // G
    x, log_decay, dt, B, C = _pad_time(L, x, log_decay, dt, B, C)
    c = x.shape[1] // L

    a_cum = torch.cumsum(log_decay.view(batch, c, L, nheads), dim=2)
    a_end = a_cum[:, :, -1]  # b c h: log-decay over the whole chunk
    rel = a_cum - 0.5 * a_end.unsqueeze(2)  # in [-spread/2, spread/2]
    xdt = x.view(batch, c, L, nheads, headdim) * dt.view(batch, c, L, nheads, 1)
    x_in = xdt * torch.exp(-rel).unsqueeze(-1)
    if G == 1:
        Xg = x_in.view(batch, c, 1, L, nheads * headdim)
        Bg, Cg = B.view(batch, c, 1, L, N), C.view(batch, c, 1, L, N)
    else:
        Xg = x_in.view(batch, c, L, G, J * headdim).transpose(2, 3)
        Bg = B.view(batch, c, L, G, N).transpose(2, 3)
        Cg = C.view(batch, c, L, G, N).transpose(2, 3)

    # Intra-chunk: y_l = exp(rel_l) sum_{s<=l} (C_l.B_s) exp(-rel_s) xdt_s.
    y = torch.matmul(torch.matmul(Cg, Bg.transpose(-1, -2)).tril_(), Xg)

    # State each chunk contributes at its end: sum_s exp(a_end - a_cum_s)
    # B_s xdt_s, where exp(a_end - a_cum_s) = exp(-rel_s) exp(a_end / 2) <= 1.
    half = torch.exp(0.5 * a_end)
    x_end = x_in * half.view(batch, c, 1, nheads, 1)
    if G == 1:
        Xe = x_end.view(batch, c, 1, L, nheads * headdim)
    else:
        Xe = x_end.view(batch, c, L, G, J * headdim).transpose(2, 3)
    chunk_states = torch.matmul(Bg.transpose(-1, -2), Xe).view(batch, c, G, N, J, headdim)
    half = half.view(batch, c, G, 1, J, 1)
    chunk_decay = half * half
    if initial_state is None:
        state = x.new_zeros(batch, G, N, J, headdim)
    else:
        state = initial_state.to(x.dtype).view(batch, G, J, N, headdim).transpose(2, 3)
    entering = []
    for i in range(c):
        entering.append(state)
        state = torch.addcmul(chunk_states[:, i], chunk_decay[:, i], state)
    # Entering state seen from step l: exp(a_cum_l) = exp(rel_l) exp(a_end/2);
    # exp(rel_l) is applied to the whole output below.
    states_in = torch.stack(entering, dim=1).view(batch, c, G, N, J * headdim)
    y_in = torch.matmul(Cg, states_in).view(batch, c, G, L, J, headdim)
    y = torch.addcmul(y.view(batch, c, G, L, J, headdim), y_in, half)
    if G == 1:
        y = y.view(batch, c, L, nheads, headdim)
    else:
        y = y.transpose(2, 3).reshape(batch, c, L, nheads, headdim)
    y = (y * torch.exp(rel).unsqueeze(-1)).view(batch, c * L, nheads, headdim)
    final_state = state.transpose(2, 3).reshape(batch, nheads, N, headdim)
    return y[:, :seq_len], final_state


def _ssd_scan_pairwise(x, log_decay, dt, B, C, L, initial_state):
    """SSD scan exponentiating every pairwise decay inside a chunk.

    Safe for any decay strength: every exponent is <= 0 (the upper triangle
    is masked to -inf before ``exp``).
    """
    batch, seq_len, nheads, headdim = x.shape
    G, N = B.shape[2], B.shape[3]
    J = nheads // G
    x, log_decay, dt, B, C = _pad_time(L, x, log_decay, dt, B, C)
    c = x.shape[1] // L

    a_cum = torch.cumsum(log_decay.view(batch, c, L, G, J), dim=2)
    a_cum = a_cum.permute(0, 3, 4, 1, 2)  # b g j c l
    xdt = (x * dt.unsqueeze(-1)).view(batch, c, L, G, J, headdim)
    xdt = xdt.permute(0, 3, 4, 1, 2, 5)  # b g j c l p
    Bc = B.view(batch, c, L, G, N).permute(0, 3, 1, 2, 4)  # b g c l n
    Cc = C.view(batch, c, L, G, N).permute(0, 3, 1, 2, 4)

    scores = torch.matmul(Cc, Bc.transpose(-1, -2)).unsqueeze(2)  # b g 1 c l s
    seg = a_cum.unsqueeze(-1) - a_cum.unsqueeze(-2)
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    y = torch.matmul(scores * torch.exp(seg.masked_fill(~causal, float("-inf"))), xdt)

    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)
    weighted = (xdt * decay_to_end.unsqueeze(-1)).permute(0, 1, 3, 4, 2, 5)
    weighted = weighted.reshape(batch, G, c, L, J * headdim)
    chunk_states = torch.matmul(Bc.transpose(-1, -2), weighted)
    chunk_states = chunk_states.view(batch, G, c, N, J, headdim)
    chunk_decay = torch.exp(a_cum[..., -1]).permute(0, 1, 3, 2)[..., None, :, None]
    if initial_state is None:
        state = x.new_zeros(batch, G, N, J, headdim)
    else:
        state = initial_state.to(x.dtype).view(batch, G, J, N, headdim).transpose(2, 3)
    entering = []
    for i in range(c):
        entering.append(state)
        state = chunk_decay[:, :, i] * state + chunk_states[:, :, i]
    states_in = torch.stack(entering, dim=2).view(batch, G, c, N, J * headdim)

    y_off = torch.matmul(Cc, states_in).view(batch, G, c, L, J, headdim)
    y_off = y_off.permute(0, 1, 4, 2, 3, 5) * torch.exp(a_cum).unsqueeze(-1)
    y = (y + y_off).permute(0, 3, 4, 1, 2, 5).reshape(batch, c * L, nheads, headdim)
    final_state = state.transpose(2, 3).reshape(batch, nheads, N, headdim)
    return y[:, :seq_len], final_state


class RMSNormGated(nn.Module):
    """Gated RMSNorm of Mamba2, normalising groups of channels.

    ``norm_before_gate=False`` (Mamba2's default) computes
    ``rmsnorm(y * silu(z)) * weight``; ``True`` computes
    ``rmsnorm(y) * weight * silu(z)``.

    Arguments
    ---------
    hidden_size : int
        Number of channels.
    eps : float
        Added to the mean square.
    group_size : int, optional
        Channels per normalisation group (default: all channels).
    norm_before_gate : bool
        Where the gate is applied, see above.

    Example
    -------
    >>> norm = RMSNormGated(8, group_size=4)
    >>> norm(torch.randn(2, 3, 8), torch.randn(2, 3, 8)).shape
    torch.Size([2, 3, 8])
    """

    def __init__(self, hidden_size, eps=1e-5, group_size=None, norm_before_gate=False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps
        self.group_size = group_size or hidden_size
        if hidden_size % self.group_size:
            raise ValueError(
                f"group_size {self.group_size} must divide hidden_size {hidden_size}."
            )
        self.norm_before_gate = norm_before_gate

    def forward(self, y, z=None):
        """Normalises ``y`` gated by ``z``.

        Arguments
        ---------
        y : torch.Tensor
            ``[..., hidden_size]``.
        z : torch.Tensor, optional
            Gate, same shape as ``y``.

        Returns
        -------
        out : torch.Tensor
            Same shape and dtype as ``y``.
        """
        dtype = y.dtype
        compute = torch.promote_types(dtype, torch.float32)
        y = y.to(compute)
        if z is not None and not self.norm_before_gate:
            y = y * F.silu(z.to(compute))
        groups = y.view(*y.shape[:-1], -1, self.group_size)
        groups = groups * torch.rsqrt(groups.pow(2).mean(-1, keepdim=True) + self.eps)
        y = groups.view(y.shape) * self.weight.to(compute)
        if z is not None and self.norm_before_gate:
            y = y * F.silu(z.to(compute))
        return y.to(dtype)


@register_mixer("mamba2")
class Mamba2(nn.Module):
    """The Mamba2 mixer: in_proj, causal depthwise conv, SSD scan, gated
    RMSNorm, out_proj.

    Arguments, defaults, parameter names and shapes follow
    ``mamba_ssm.modules.mamba2.Mamba2`` so that state_dicts are portable.

    Arguments
    ---------
    d_model : int
        Input and output channels.
    d_state : int
        State size per group (N).
    d_conv : int
        Kernel size of the causal depthwise convolution.
    conv_init : float, optional
        If given, conv weights are drawn from U(-conv_init, conv_init).
    expand : int
        ``d_inner = expand * d_model``.
    headdim : int
        Channels per head (P); ``nheads = d_inner // headdim``.
    ngroups : int
        Groups sharing B and C (heads are split evenly over them).
    A_init_range : tuple
        A is initialised as -U(A_init_range), one scalar per head.
    D_has_hdim : bool
        If True, the skip D has one value per channel instead of per head.
    rmsnorm : bool
        Apply the gated RMSNorm (otherwise gate with silu(z) only).
    norm_before_gate : bool
        Gate after (True) or before (False) normalising.
    dt_min, dt_max : float
        Range of the log-uniform initial step size.
    dt_init_floor : float
        Minimum initial step size.
    dt_limit : tuple
        Clamp applied to the step size after softplus.
    bias : bool
        Bias in in_proj and out_proj.
    conv_bias : bool
        Bias in the convolution.
    chunk_size : int
        Chunk length of the SSD scan (results do not depend on it).

    Example
    -------
    >>> mixer = Mamba2(d_model=32, d_state=16, headdim=8, chunk_size=8)
    >>> x = torch.randn(2, 20, 32)
    >>> mixer(x, lengths=torch.tensor([1.0, 0.5])).shape
    torch.Size([2, 20, 32])
    """

    # Read by cald_brain.convert: safe as a causal language model's mixer.
    causal = True

    def __init__(
        self,
        d_model,
        d_state=128,
        d_conv=4,
        conv_init=None,
        expand=2,
        headdim=64,
        ngroups=1,
        A_init_range=(1, 16),
        D_has_hdim=False,
        rmsnorm=True,
        norm_before_gate=False,
        dt_min=0.001,
        dt_max=0.1,
        dt_init_floor=1e-4,
        dt_limit=(0.0, float("inf")),
        bias=False,
        conv_bias=True,
        chunk_size=256,
    ):
        super().__init__()
        for name, value in (
            ("d_model", d_model),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("expand", expand),
            ("headdim", headdim),
            ("ngroups", ngroups),
            ("chunk_size", chunk_size),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Mamba2: {name} must be a positive int, got {value!r}.")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = expand * d_model
        if self.d_inner % headdim:
            raise ValueError(
                f"Mamba2: d_inner = expand * d_model = {self.d_inner} is not "
                f"divisible by headdim = {headdim}."
            )
        self.headdim = headdim
        self.nheads = self.d_inner // headdim
        if self.nheads % ngroups:
            raise ValueError(
                f"Mamba2: nheads = {self.nheads} is not divisible by ngroups = {ngroups}."
            )
        if not 0 < A_init_range[0] <= A_init_range[1]:
            raise ValueError(f"Mamba2: A_init_range must be 0 < lo <= hi, got {A_init_range}.")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba2: need 0 < dt_min <= dt_max, got {dt_min}, {dt_max}.")
        self.ngroups = ngroups
        self.D_has_hdim = D_has_hdim
        self.rmsnorm = rmsnorm
        self.norm_before_gate = norm_before_gate
        self.dt_limit = tuple(dt_limit)
        self.chunk_size = chunk_size

        # Order of the in_proj output: [z, x, B, C, dt] (as mamba_ssm).
        self.conv_dim = self.d_inner + 2 * ngroups * d_state
        d_in_proj = 2 * self.d_inner + 2 * ngroups * d_state + self.nheads
        self.in_proj = nn.Linear(d_model, d_in_proj, bias=bias)
        self.conv1d = nn.Conv1d(
            self.conv_dim,
            self.conv_dim,
            kernel_size=d_conv,
            groups=self.conv_dim,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        if conv_init is not None:
            nn.init.uniform_(self.conv1d.weight, -conv_init, conv_init)

        # dt bias = softplus^-1(dt0), dt0 log-uniform in [dt_min, dt_max].
        dt = torch.exp(
            torch.rand(self.nheads) * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        A = torch.empty(self.nheads).uniform_(*A_init_range)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(self.d_inner if D_has_hdim else self.nheads))
        # As mamba_ssm: optimisers should not decay these.
        self.dt_bias._no_weight_decay = True
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True

        if rmsnorm:
            self.norm = RMSNormGated(
                self.d_inner,
                eps=1e-5,
                group_size=self.d_inner // ngroups,
                norm_before_gate=norm_before_gate,
            )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(self, x, lengths=None):
        """Mixes ``x`` along time (causally).

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, time, d_model]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` in (0, 1]. Frames past each length
            get zero output. Padding must be at the end (SpeechBrain's
            convention); the scan is causal, so it never reaches real frames.

        Returns
        -------
        y : torch.Tensor
            ``[batch, time, d_model]``.
        """
        abs_lengths = check_mixer_input(x, lengths, self.d_model, "Mamba2")
        zxbcdt = self.in_proj(x)
        if x.is_cuda and self.rmsnorm:
            kernel = _fused_kernel()
            if kernel is not None:
                return zero_padded_frames(self._kernel_forward(kernel, zxbcdt), abs_lengths)
        y = self._torch_forward(zxbcdt)
        return zero_padded_frames(y, abs_lengths)

    def _split(self, zxbcdt):
        return torch.split(zxbcdt, [self.d_inner, self.conv_dim, self.nheads], dim=-1)

    def _torch_forward(self, zxbcdt):
        z, xBC, dt = self._split(zxbcdt)
        seq_len = xBC.shape[1]
        xBC = self.conv1d(xBC.transpose(1, 2))[..., :seq_len].transpose(1, 2)
        xBC = F.silu(xBC)
        xs, B, C = torch.split(
            xBC, [self.d_inner, self.ngroups * self.d_state, self.ngroups * self.d_state], dim=-1
        )
        batch = xs.shape[0]
        # The scan runs in at least float32: its exponentials and long
        # reductions lose too much in bfloat16.
        scan_dtype = torch.promote_types(xs.dtype, torch.float32)
        with torch.autocast(device_type=xs.device.type, enabled=False):
            dt = F.softplus(dt.to(scan_dtype) + self.dt_bias.to(scan_dtype))
            if self.dt_limit != (0.0, float("inf")):
                dt = dt.clamp(*self.dt_limit)
            A = -torch.exp(self.A_log.to(scan_dtype))
            xh = xs.to(scan_dtype).view(batch, seq_len, self.nheads, self.headdim)
            y, _ = ssd_chunked_scan(
                xh,
                dt,
                A,
                B.to(scan_dtype).view(batch, seq_len, self.ngroups, self.d_state),
                C.to(scan_dtype).view(batch, seq_len, self.ngroups, self.d_state),
                self.chunk_size,
            )
            D = self.D.to(scan_dtype)
            D = D.view(self.nheads, self.headdim) if self.D_has_hdim else D.unsqueeze(-1)
            y = (y + xh * D).reshape(batch, seq_len, self.d_inner).to(xs.dtype)
        if self.rmsnorm:
            y = self.norm(y, z)
        else:
            y = y * F.silu(z.to(y.dtype))
        return self.out_proj(y)

    def _kernel_forward(self, kernel, zxbcdt):
        # mamba_ssm's fused conv + scan + gated norm + out_proj (CUDA only).
        dt_limit = {} if self.dt_limit == (0.0, float("inf")) else {"dt_limit": self.dt_limit}
        return kernel(
            zxbcdt,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            self.dt_bias,
            -torch.exp(self.A_log.float()),
            D=self.D.view(self.nheads, self.headdim) if self.D_has_hdim else self.D,
            chunk_size=self.chunk_size,
            seq_idx=None,
            activation="silu",
            rmsnorm_weight=self.norm.weight,
            rmsnorm_eps=self.norm.eps,
            outproj_weight=self.out_proj.weight,
            outproj_bias=self.out_proj.bias,
            headdim=None if self.D_has_hdim else self.headdim,
            ngroups=self.ngroups,
            norm_before_gate=self.norm_before_gate,
            **dt_limit,
        )
