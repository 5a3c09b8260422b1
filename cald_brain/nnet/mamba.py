"""Mamba (v1) mixer: a selective state-space scan in pure PyTorch.

The module mirrors ``mamba_ssm.modules.mamba_simple.Mamba`` (constructor
arguments, parameter names and shapes), so a state_dict moves unchanged between
this module, mamba_ssm's CUDA module and transformers' ``MambaMixer``. On CUDA
with ``mamba_ssm`` installed its selective-scan kernel runs; everywhere else the
pure-PyTorch scan below does. Both compute the same function.

The CPU scan works in time chunks: inside a chunk a log-depth associative
(Hillis-Steele) scan, across chunks a sequential carry of the state
``[batch, d_inner, d_state]``. It multiplies decays in [0, 1] and adds, never
divides, so strong decays cannot overflow it (unlike the cumprod/cumsum-divide
shortcut). Its backward pass recomputes the states chunk by chunk instead of
storing them, so training memory does not grow with ``d_state``.

Mamba is the linear-time student of the Pythia / GPT-NeoX recipes (CALD, He &
Garner, ICLR 2025); :meth:`Mamba.step` gives O(1)-per-token generation.

Reference
---------
Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces",
arXiv 2312.00752, 2023.

Authors
 * cald-brain developers 2026
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cald_brain.nnet.registry import register_mixer
from cald_brain.nnet.utils import (
    check_mixer_input,
    lengths_to_mask,
    zero_padded_frames,
)


def _cuda_selective_scan():
    """Returns mamba_ssm's selective-scan kernel, or None when unavailable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception:  # ImportError, or a broken CUDA build
        return None
    return selective_scan_fn


def _chunk_scan(a, b, reverse=False):
    """Inclusive scan of ``h_t = a_t * h_{t-1} + b_t`` along dim 1, from 0.

    Hillis-Steele: after the pass with offset ``s`` every element holds the
    composition of the (up to) ``2s`` elements ending at it, so ``log2(L)``
    passes finish the scan. The inputs are left untouched.

    Arguments
    ---------
    a : torch.Tensor
        Decays ``[batch, L, ...]``.
    b : torch.Tensor
        Inputs, same shape as ``a``.
    reverse : bool
        Scan from the end instead: ``h_t = a_t * h_{t+1} + b_t``.

    Returns
    -------
    decay : torch.Tensor
        Product of ``a`` from the start of the scan up to each element, the
        factor that a state entering the chunk is multiplied by.
    state : torch.Tensor
        The states when the scan starts from zero.
    """
    length = a.shape[1]
    shift = 1
    spare = None  # buffers of the pass before last, reused to save allocations
    while shift < length:
        out_a, out_b = spare or (torch.empty_like(a), torch.empty_like(b))
        if reverse:
            dst, src = slice(0, length - shift), slice(shift, length)
            done = slice(length - shift, length)
        else:
            dst, src = slice(shift, length), slice(0, length - shift)
            done = slice(0, shift)
        # (a2, b2) after (a1, b1) composes to (a2 * a1, a2 * b1 + b2).
        torch.addcmul(b[:, dst], a[:, dst], b[:, src], out=out_b[:, dst])
        torch.mul(a[:, dst], a[:, src], out=out_a[:, dst])
        out_a[:, done] = a[:, done]
        out_b[:, done] = b[:, done]
        # The caller's tensors are never recycled as output buffers.
        spare = (a, b) if shift > 1 else None
        a, b = out_a, out_b
        shift *= 2
    return a, b


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan with a recomputing backward pass.

    Autograd through the chunk scans would store several
    ``[batch, time, channels, d_state]`` tensors; this stores the inputs and
    one state per chunk, and recomputes the rest in the backward pass.
    """

    @staticmethod
    def forward(ctx, x, dt, A, B, C, initial_state, chunk_size):
        """Runs the scan; see :func:`selective_scan`."""
        batch, time, channels = x.shape
        # Autocast would run the matmuls below in half precision.
        with torch.autocast(x.device.type, enabled=False):
            state = initial_state
            if state is None:
                state = x.new_zeros(batch, channels, A.shape[1])
            y = torch.empty_like(x)
            starts = []
            for start in range(0, time, chunk_size):
                span = slice(start, start + chunk_size)
                dt_c = dt[:, span]
                a = (dt_c.unsqueeze(-1) * A).exp_()
                b = (dt_c * x[:, span]).unsqueeze(-1) * B[:, span].unsqueeze(2)
                decay, states = _chunk_scan(a, b)
                states.addcmul_(decay, state.unsqueeze(1))
                starts.append(state)
                # y_t = C_t . h_t. einsum lowers this to C_t^T h_t^T, a
                # vector-matrix product that is much faster on CPU than the
                # matrix-vector product of `states @ C[..., None]`.
                y[:, span] = torch.einsum("bldn,bln->bld", states, C[:, span])
                # A copy, not a view: a view would keep every chunk's
                # states alive through `starts`.
                state = states[:, -1].clone()
            starts = torch.stack(starts, 1) if starts else state.unsqueeze(1)
        ctx.save_for_backward(x, dt, A, B, C, starts)
        ctx.chunk_size = chunk_size
        return y, state

    @staticmethod
    def backward(ctx, grad_y, grad_state):
        """Backward pass, chunk by chunk from the last one.

        With ``g_t`` the gradient reaching ``h_t``,
        ``g_t = C_t grad_y_t + a_{t+1} g_{t+1}``: the same linear recurrence
        run backwards in time, so it reuses the chunk scan.
        """
        x, dt, A, B, C, starts = ctx.saved_tensors
        chunk_size = ctx.chunk_size
        time = x.shape[1]
        grad_x, grad_dt = torch.empty_like(x), torch.empty_like(dt)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A = torch.zeros_like(A)
        carry = grad_state  # gradient reaching the last state of the chunk
        with torch.autocast(x.device.type, enabled=False):
            chunk_starts = list(range(0, time, chunk_size))
            for index in reversed(range(len(chunk_starts))):
                start = chunk_starts[index]
                span = slice(start, start + chunk_size)
                dt_c, x_c = dt[:, span], x[:, span]
                dtx = dt_c * x_c
                a = (dt_c.unsqueeze(-1) * A).exp_()
                b = dtx.unsqueeze(-1) * B[:, span].unsqueeze(2)
                start_state = starts[:, index].unsqueeze(1)
                decay, states = _chunk_scan(a, b)
                states.addcmul_(decay, start_state)

                gy = grad_y[:, span]
                grad_C[:, span] = (gy.unsqueeze(2) @ states).squeeze(2)
                # g_t = c_t + a_{t+1} g_{t+1}, the chunk's last g also gets
                # the carry from the next chunk.
                a_next = torch.empty_like(a)
                a_next[:, :-1] = a[:, 1:]
                a_next[:, -1] = 1.0
                c = gy.unsqueeze(-1) * C[:, span].unsqueeze(2)
                decay_g, g = _chunk_scan(a_next, c, reverse=True)
                g.addcmul_(decay_g, carry.unsqueeze(1))
                carry = a[:, 0] * g[:, 0]

                # dL/d(dt*A) = g_t * h_{t-1} * a_t
                h_prev = torch.cat([start_state, states[:, :-1]], 1)
                g_log_a = h_prev.mul_(g).mul_(a)
                grad_A += torch.einsum("bldn,bld->dn", g_log_a, dt_c)
                g_dtx = torch.einsum("bldn,bln->bld", g, B[:, span])
                grad_B[:, span] = (dtx.unsqueeze(2) @ g).squeeze(2)
                grad_dt[:, span] = (g_log_a * A).sum(-1) + g_dtx * x_c
                grad_x[:, span] = g_dtx * dt_c
        grad_initial = carry if ctx.needs_input_grad[5] else None
        return grad_x, grad_dt, grad_A, grad_B, grad_C, grad_initial, None


def selective_scan(x, dt, A, B, C, chunk_size=64, initial_state=None):
    """Exact selective scan (pure PyTorch), chunked in time.

    Computes, for every channel ``d`` and step ``t``::

        h_t = exp(dt_t[d] * A[d]) * h_{t-1} + dt_t[d] * B_t * x_t[d]
        y_t[d] = C_t . h_t

    with ``h`` of shape ``[d_state]`` per channel, without the ``D`` skip term
    or the gate. The scan runs in float32, or float64 for float64 inputs.

    Arguments
    ---------
    x : torch.Tensor
        ``[batch, time, channels]``.
    dt : torch.Tensor
        Positive step sizes ``[batch, time, channels]``.
    A : torch.Tensor
        Negative decay rates ``[channels, d_state]``.
    B : torch.Tensor
        ``[batch, time, d_state]``.
    C : torch.Tensor
        ``[batch, time, d_state]``.
    chunk_size : int
        Length of the chunks. Any value gives the same result; it trades the
        ``log2(chunk_size)`` passes of the in-chunk scan against the number of
        sequential steps between chunks.
    initial_state : torch.Tensor, optional
        ``[batch, channels, d_state]`` state before the first step.

    Returns
    -------
    y : torch.Tensor
        ``[batch, time, channels]``.
    final_state : torch.Tensor
        ``[batch, channels, d_state]`` state after the last step.

    Example
    -------
    >>> x, dt = torch.randn(2, 10, 6), torch.rand(2, 10, 6)
    >>> A = -torch.rand(6, 4)
    >>> B, C = torch.randn(2, 10, 4), torch.randn(2, 10, 4)
    >>> y, state = selective_scan(x, dt, A, B, C, chunk_size=4)
    >>> y.shape, state.shape
    (torch.Size([2, 10, 6]), torch.Size([2, 6, 4]))
    """
    dtype = torch.promote_types(x.dtype, torch.float32)
    if initial_state is not None:
        initial_state = initial_state.to(dtype)
    return _SelectiveScan.apply(
        x.to(dtype),
        dt.to(dtype),
        A.to(dtype),
        B.to(dtype),
        C.to(dtype),
        initial_state,
        chunk_size,
    )


@dataclass
class MambaCache:
    """Recurrent state of one :class:`Mamba` layer, for generation.

    Arguments
    ---------
    conv_state : torch.Tensor
        ``[batch, d_inner, d_conv]``: the last ``d_conv`` inputs of the causal
        convolution, oldest first.
    ssm_state : torch.Tensor
        ``[batch, d_inner, d_state]``: the state of the selective scan.

    Example
    -------
    >>> cache = MambaCache(torch.zeros(2, 8, 4), torch.zeros(2, 8, 16))
    >>> cache.ssm_state.shape
    torch.Size([2, 8, 16])
    """

    conv_state: torch.Tensor
    ssm_state: torch.Tensor


@register_mixer("mamba")
class Mamba(nn.Module):
    """Mamba (v1) selective state-space mixer.

    Constructor arguments, parameter names and shapes follow
    ``mamba_ssm.modules.mamba_simple.Mamba`` so that state_dicts are portable
    (also to transformers' ``MambaMixer``). The mixer is causal.

    Arguments
    ---------
    d_model : int
        Number of input and output channels.
    d_state : int
        Size of the state of each inner channel.
    d_conv : int
        Kernel size of the causal depthwise convolution.
    expand : int
        ``d_inner = expand * d_model``.
    dt_rank : int or "auto"
        Rank of the step-size projection; ``"auto"`` is ``ceil(d_model / 16)``.
    dt_min : float
        Smallest step size drawn at initialisation.
    dt_max : float
        Largest step size drawn at initialisation.
    dt_init : str
        ``"random"`` (uniform) or ``"constant"`` init of ``dt_proj.weight``.
    dt_scale : float
        Scale of the ``dt_proj.weight`` init.
    dt_init_floor : float
        Lower clamp of the initial step sizes.
    conv_bias : bool
        Whether the convolution has a bias.
    bias : bool
        Whether ``in_proj`` and ``out_proj`` have biases.
    chunk_size : int
        Time chunk of the pure-PyTorch scan (speed/memory only, not results).

    Example
    -------
    >>> mixer = Mamba(d_model=32, d_state=8, chunk_size=4)
    >>> mixer(torch.randn(2, 10, 32), torch.tensor([1.0, 0.6])).shape
    torch.Size([2, 10, 32])
    """

    # Read by cald_brain.convert: safe as a causal language model's mixer.
    causal = True

    def __init__(
        self,
        d_model,
        d_state=16,
        d_conv=4,
        expand=2,
        dt_rank="auto",
        dt_min=0.001,
        dt_max=0.1,
        dt_init="random",
        dt_scale=1.0,
        dt_init_floor=1e-4,
        conv_bias=True,
        bias=False,
        chunk_size=64,
    ):
        super().__init__()
        for name, value in (
            ("d_model", d_model),
            ("d_state", d_state),
            ("d_conv", d_conv),
            ("chunk_size", chunk_size),
        ):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(
                    f"Mamba: {name} must be a positive int, got {value!r}."
                )
        if expand <= 0:
            raise ValueError(f"Mamba: expand must be positive, got {expand!r}.")
        if dt_rank != "auto" and (not isinstance(dt_rank, int) or dt_rank <= 0):
            raise ValueError(
                "Mamba: dt_rank must be 'auto' or a positive int, "
                f"got {dt_rank!r}."
            )
        if dt_init not in ("random", "constant"):
            raise ValueError(
                "Mamba: dt_init must be 'random' or 'constant', "
                f"got {dt_init!r}."
            )
        if not 0 < dt_min <= dt_max:
            raise ValueError(
                f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, "
                f"dt_max={dt_max}."
            )
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else dt_rank
        self.chunk_size = chunk_size

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        self.x_proj = nn.Linear(
            self.d_inner, self.dt_rank + 2 * d_state, bias=False
        )
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self._init_dt_proj(dt_min, dt_max, dt_init, dt_scale, dt_init_floor)

        # S4D-real init: A = -[1, 2, ..., d_state] in every channel.
        A = torch.arange(1, d_state + 1, dtype=torch.float32)
        self.A_log = nn.Parameter(torch.log(A).repeat(self.d_inner, 1))
        self.D = nn.Parameter(torch.ones(self.d_inner))
        # As mamba_ssm: optimisers should not decay these.
        self.A_log._no_weight_decay = True
        self.D._no_weight_decay = True
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    @torch.no_grad()
    def _init_dt_proj(self, dt_min, dt_max, dt_init, dt_scale, dt_init_floor):
        # As mamba_ssm: the initial step sizes are log-uniform in
        # [dt_min, dt_max], which sets each channel's initial memory length.
        std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -std, std)
        dt = torch.exp(
            torch.rand(self.d_inner)
            * (math.log(dt_max) - math.log(dt_min))
            + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        # The bias goes through softplus in forward: store softplus^-1(dt).
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, x, lengths=None, cache=None):
        """Mixes the sequence ``x`` causally.

        Arguments
        ---------
        x : torch.Tensor
            ``[batch, time, d_model]``.
        lengths : torch.Tensor, optional
            Relative lengths ``[batch]`` in (0, 1]; outputs at padded frames
            are zero.
        cache : MambaCache, optional
            Generation state (see :meth:`init_cache`). The sequence continues
            from it, and its tensors are replaced by the states after the
            last frame, ready for :meth:`step`. Cannot go with ``lengths``.

        Returns
        -------
        y : torch.Tensor
            ``[batch, time, d_model]``.

        Example
        -------
        >>> mixer = Mamba(d_model=16, d_state=4)
        >>> cache = mixer.init_cache(2)
        >>> mixer(torch.randn(2, 5, 16), cache=cache).shape
        torch.Size([2, 5, 16])
        >>> mixer.step(torch.randn(2, 16), cache).shape
        torch.Size([2, 16])
        """
        abs_lengths = check_mixer_input(x, lengths, self.d_model, "Mamba")
        if cache is not None and lengths is not None:
            raise ValueError(
                "Mamba: pass either lengths or cache, not both; a cache "
                "continues every sequence from its last frame, so padded "
                "sequences would leave it holding the padding's state."
            )
        if abs_lengths is not None:
            # Padding may hold anything, even NaN from an upstream layer.
            # Real frames never see it (the mixer is causal and padding is at
            # the end), but NaN * 0 is NaN in the output zeroing and the
            # backward pass, so overwrite it rather than multiply by a mask.
            mask = lengths_to_mask(abs_lengths.to(x.device), x.shape[1])
            x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        time = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = u.transpose(1, 2)  # [batch, d_inner, time] for the convolution
        if cache is None:
            u = self.conv1d(u)[..., :time]
        else:
            self._check_cache(cache, x.shape[0])
            # The cache holds the inputs before x: the left context that
            # the zero padding of conv1d stands for otherwise.
            u = torch.cat([cache.conv_state[..., 1:].to(u.dtype), u], -1)
            cache.conv_state = u[..., -self.d_conv :].to(cache.conv_state.dtype)
            u = F.conv1d(
                u, self.conv1d.weight, self.conv1d.bias, groups=self.d_inner
            )
        u = F.silu(u).transpose(1, 2)
        dt_low, B, C = self._ssm_inputs(u)

        # The kernel cannot start from a cached state: CUDA without a cache.
        scan_fn = None
        if u.is_cuda and cache is None:
            scan_fn = _cuda_selective_scan()
        if scan_fn is not None:
            # mamba_ssm's kernel: channel-first; it adds the dt bias and
            # applies softplus, the D skip and the silu(z) gate itself.
            delta = F.linear(dt_low, self.dt_proj.weight)
            y = scan_fn(
                u.transpose(1, 2).contiguous(),
                delta.transpose(1, 2).contiguous(),
                self._decay_rates(),
                B.transpose(1, 2).contiguous(),
                C.transpose(1, 2).contiguous(),
                D=self.D.float(),
                z=z.transpose(1, 2).contiguous(),
                delta_bias=self.dt_proj.bias.float(),
                delta_softplus=True,
            )
            y = self.out_proj(y.transpose(1, 2))
            return zero_padded_frames(y, abs_lengths)

        initial_state = None if cache is None else cache.ssm_state
        y, final_state = selective_scan(
            u,
            self._step_size(dt_low),
            self._decay_rates(),
            B,
            C,
            chunk_size=self.chunk_size,
            initial_state=initial_state,
        )
        if cache is not None:
            cache.ssm_state = final_state.to(cache.ssm_state.dtype)
        return zero_padded_frames(self._gate_and_project(y, u, z), abs_lengths)

    def step(self, x_t, cache):
        """Advances the mixer by one frame, in O(1) time and memory.

        Arguments
        ---------
        x_t : torch.Tensor
            ``[batch, d_model]`` or ``[batch, 1, d_model]``.
        cache : MambaCache
            State after the previous frames (see :meth:`init_cache`); its
            tensors are replaced by the states after ``x_t``.

        Returns
        -------
        y_t : torch.Tensor
            Same shape as ``x_t``.

        Example
        -------
        >>> mixer = Mamba(d_model=16, d_state=4)
        >>> cache = mixer.init_cache(3)
        >>> mixer.step(torch.randn(3, 1, 16), cache).shape
        torch.Size([3, 1, 16])
        """
        if not torch.is_tensor(x_t):
            raise TypeError(
                f"Mamba.step expects a tensor, got {type(x_t).__name__}."
            )
        single_frame = x_t.dim() == 3 and x_t.shape[1] == 1
        if not (x_t.dim() == 2 or single_frame):
            raise ValueError(
                f"Mamba.step expects one frame, [batch, {self.d_model}] or "
                f"[batch, 1, {self.d_model}], got shape {tuple(x_t.shape)}."
            )
        frame = x_t[:, 0] if single_frame else x_t
        if frame.shape[-1] != self.d_model:
            raise ValueError(
                f"Mamba.step: the mixer was built for d_model={self.d_model} "
                f"but the frame has {frame.shape[-1]} channels."
            )
        self._check_cache(cache, frame.shape[0])
        u, z = self.in_proj(frame).chunk(2, dim=-1)
        # Shift the window by one frame: drop the oldest input, append u.
        newest = u.unsqueeze(-1).to(cache.conv_state.dtype)
        conv_state = torch.cat([cache.conv_state[..., 1:], newest], -1)
        cache.conv_state = conv_state
        u = (conv_state.to(u.dtype) * self.conv1d.weight[:, 0]).sum(-1)
        if self.conv1d.bias is not None:
            u = u + self.conv1d.bias
        u = F.silu(u)
        dt_low, B, C = self._ssm_inputs(u)
        dt = self._step_size(dt_low)
        A = self._decay_rates().to(dt.dtype)
        state = cache.ssm_state.to(dt.dtype) * torch.exp(dt.unsqueeze(-1) * A)
        state = state + (dt * u).unsqueeze(-1) * B.to(dt.dtype).unsqueeze(1)
        cache.ssm_state = state.to(cache.ssm_state.dtype)
        y = (state @ C.to(dt.dtype).unsqueeze(-1)).squeeze(-1)
        y = self._gate_and_project(y, u, z)
        return y.unsqueeze(1) if single_frame else y

    def init_cache(self, batch_size, device=None, dtype=None):
        """Returns a zero generation state (the state before any frame).

        Arguments
        ---------
        batch_size : int
            Number of sequences generated together.
        device : torch.device, optional
            Defaults to the parameters' device.
        dtype : torch.dtype, optional
            Dtype of both states. By default the convolution state takes the
            parameters' dtype and the scan state at least float32, since it
            accumulates over the whole generation.

        Returns
        -------
        cache : MambaCache

        Example
        -------
        >>> Mamba(d_model=16, d_state=4).init_cache(2).conv_state.shape
        torch.Size([2, 32, 4])
        """
        device = self.A_log.device if device is None else device
        conv_dtype = self.conv1d.weight.dtype if dtype is None else dtype
        ssm_dtype = dtype
        if dtype is None:
            ssm_dtype = torch.promote_types(self.A_log.dtype, torch.float32)
        return MambaCache(
            conv_state=torch.zeros(
                batch_size,
                self.d_inner,
                self.d_conv,
                device=device,
                dtype=conv_dtype,
            ),
            ssm_state=torch.zeros(
                batch_size,
                self.d_inner,
                self.d_state,
                device=device,
                dtype=ssm_dtype,
            ),
        )

    def _check_cache(self, cache, batch_size):
        if not isinstance(cache, MambaCache):
            raise TypeError(
                f"Mamba: cache must be a MambaCache (see Mamba.init_cache), "
                f"got {type(cache).__name__}."
            )
        expected = {
            "conv_state": (batch_size, self.d_inner, self.d_conv),
            "ssm_state": (batch_size, self.d_inner, self.d_state),
        }
        for name, shape in expected.items():
            actual = tuple(getattr(cache, name).shape)
            if actual != shape:
                raise ValueError(
                    f"Mamba: cache.{name} has shape {actual}, expected {shape} "
                    f"for a batch of {batch_size}."
                )

    def _ssm_inputs(self, u):
        # Input-dependent low-rank step size, B and C ("selection", sec. 3.2).
        return torch.split(
            self.x_proj(u), [self.dt_rank, self.d_state, self.d_state], dim=-1
        )

    def _step_size(self, dt_low):
        # As mamba_ssm's kernel: bias and softplus in (at least) float32, as
        # softplus^-1 of small steps needs the bias' precision.
        dt = F.linear(dt_low, self.dt_proj.weight)
        dtype = torch.promote_types(dt.dtype, torch.float32)
        return F.softplus(dt.to(dtype) + self.dt_proj.bias.to(dtype))

    def _decay_rates(self):
        # A = -exp(A_log) < 0, so every decay exp(dt * A) lies in (0, 1).
        dtype = torch.promote_types(self.A_log.dtype, torch.float32)
        return -torch.exp(self.A_log.to(dtype))

    def _gate_and_project(self, y, u, z):
        # D skip, silu(z) gate (in the scan's precision), then out_proj.
        y = y + u.to(y.dtype) * self.D.to(y.dtype)
        y = y * F.silu(z.to(y.dtype))
        return self.out_proj(y.to(z.dtype))
