"""Tests for the Mamba (v1) mixer: exactness against a step-by-step reference,
stability, generation, state-dict portability, padding, gradients, errors.

Authors
 * cald-brain developers 2026
"""

import pytest
import torch

from cald_brain.nnet.mamba import Mamba, MambaCache, selective_scan
from cald_brain.nnet.registry import get_mixer


def reference_forward(mixer, x):
    """Mamba written out one frame at a time in float64, from the parameters.

    Independent of the module's code paths: the convolution is a loop over
    taps and the scan a loop over time.
    """
    p = {k: v.detach().double() for k, v in mixer.state_dict().items()}
    x = x.detach().double()
    d_inner, n, r, k = mixer.d_inner, mixer.d_state, mixer.dt_rank, mixer.d_conv
    batch, time, _ = x.shape

    def silu(v):
        return v * torch.sigmoid(v)

    def linear(v, name):
        out = v @ p[f"{name}.weight"].T
        bias = p.get(f"{name}.bias")
        return out if bias is None else out + bias

    xz = linear(x, "in_proj")
    u, z = xz[..., :d_inner], xz[..., d_inner:]
    w = p["conv1d.weight"][:, 0, :]  # [d_inner, k]
    conv = torch.zeros_like(u)
    for t in range(time):
        for j in range(k):
            src = t - (k - 1) + j  # causal: tap k-1 sees the current frame
            if src >= 0:
                conv[:, t] += w[:, j] * u[:, src]
    if "conv1d.bias" in p:
        conv = conv + p["conv1d.bias"]
    u = silu(conv)
    dbc = u @ p["x_proj.weight"].T
    dt = torch.log1p(torch.exp(linear(dbc[..., :r], "dt_proj")))
    Bm, Cm = dbc[..., r : r + n], dbc[..., r + n :]
    A = -torch.exp(p["A_log"])
    h = torch.zeros(batch, d_inner, n, dtype=torch.float64)
    ys = []
    for t in range(time):
        decay = torch.exp(dt[:, t, :, None] * A)
        h = decay * h + (dt[:, t] * u[:, t])[:, :, None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + p["D"] * u[:, t])
    y = torch.stack(ys, 1) * silu(z)
    return linear(y, "out_proj")


def perturbed_mixer(seed=0, chunk_size=64, **kwargs):
    """A float64 mixer whose A, D, dt and biases are not at their init."""
    torch.manual_seed(seed)
    options = {"d_model": 16, "d_state": 6, "d_conv": 4, "expand": 2}
    options.update(kwargs)
    mixer = Mamba(chunk_size=chunk_size, **options).double()
    with torch.no_grad():
        mixer.A_log.add_(0.5 * torch.randn_like(mixer.A_log))
        mixer.D.copy_(torch.randn_like(mixer.D))
        mixer.dt_proj.weight.mul_(3.0)
        mixer.dt_proj.bias.add_(torch.randn_like(mixer.dt_proj.bias))
        for param in mixer.parameters():
            if param.dim() == 1 and param is not mixer.D:
                param.add_(0.1 * torch.randn_like(param))
    return mixer


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
@pytest.mark.parametrize("time", [13, 70])
def test_scan_matches_stepwise_reference(chunk_size, time):
    mixer = perturbed_mixer(chunk_size=chunk_size, bias=True)
    x = torch.randn(2, time, 16, dtype=torch.float64)
    expected = reference_forward(mixer, x)
    torch.testing.assert_close(mixer(x), expected, rtol=0, atol=1e-10)


def test_large_step_sizes_are_stable():
    mixer = perturbed_mixer(chunk_size=8)
    with torch.no_grad():
        mixer.dt_proj.bias.fill_(5.0)  # dt ~ 5: decays down to exp(-5 * 16 * e)
        mixer.A_log.add_(1.0)
    x = 3.0 * torch.randn(2, 40, 16, dtype=torch.float64)
    y = mixer(x)
    assert torch.isfinite(y).all()
    expected = reference_forward(mixer, x)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-10)
    y32 = mixer.float()(x.float())
    assert torch.isfinite(y32).all()


def test_selective_scan_gradcheck():
    torch.manual_seed(0)
    batch, time, channels, n = 2, 7, 3, 4
    x = torch.randn(batch, time, channels, dtype=torch.float64)
    dt = torch.rand(batch, time, channels, dtype=torch.float64)
    A = -torch.rand(channels, n, dtype=torch.float64) - 0.1
    B = torch.randn(batch, time, n, dtype=torch.float64)
    C = torch.randn(batch, time, n, dtype=torch.float64)
    h0 = torch.randn(batch, channels, n, dtype=torch.float64)
    inputs = [t.requires_grad_() for t in (x, dt, A, B, C, h0)]

    def scan(x, dt, A, B, C, h0):
        return selective_scan(x, dt, A, B, C, chunk_size=3, initial_state=h0)

    assert torch.autograd.gradcheck(scan, inputs)


def test_step_matches_full_scan():
    mixer = perturbed_mixer(chunk_size=4)
    x = torch.randn(3, 11, 16, dtype=torch.float64)
    full = mixer(x)
    cache = mixer.init_cache(3)
    steps = [mixer.step(x[:, t], cache) for t in range(11)]
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=0, atol=1e-10)
    # [batch, 1, d_model] frames keep their shape
    assert mixer.step(x[:, :1], mixer.init_cache(3)).shape == (3, 1, 16)


@pytest.mark.parametrize("prompt", [2, 9])  # shorter and longer than d_conv
def test_prefill_then_step_matches_full_forward(prompt):
    mixer = perturbed_mixer(chunk_size=4)
    x = torch.randn(2, 14, 16, dtype=torch.float64)
    full = mixer(x)
    cache = mixer.init_cache(2)
    head = mixer(x[:, :prompt], cache=cache)
    tail = [mixer.step(x[:, t], cache) for t in range(prompt, 14)]
    out = torch.cat([head, torch.stack(tail, 1)], 1)
    torch.testing.assert_close(out, full, rtol=0, atol=1e-10)


def test_prefill_in_pieces_matches_full_forward():
    mixer = perturbed_mixer(chunk_size=4)
    x = torch.randn(2, 15, 16, dtype=torch.float64)
    cache = mixer.init_cache(2)
    spans = [(0, 6), (6, 7), (7, 15)]
    pieces = [mixer(x[:, a:b], cache=cache) for a, b in spans]
    torch.testing.assert_close(
        torch.cat(pieces, 1), mixer(x), rtol=0, atol=1e-10
    )


def test_state_dict_loads_into_transformers_mamba_mixer():
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    torch.manual_seed(0)
    ours = Mamba(d_model=32, d_state=8, d_conv=4, expand=2, chunk_size=8)
    config = MambaConfig(
        hidden_size=32,
        state_size=8,
        conv_kernel=4,
        expand=2,
        time_step_rank=ours.dt_rank,
        use_bias=False,
        use_conv_bias=True,
        num_hidden_layers=1,
    )
    theirs = MambaMixer(config, layer_idx=0).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 37, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


def test_padding_invariance():
    mixer = perturbed_mixer(chunk_size=4)
    x = torch.randn(3, 20, 16, dtype=torch.float64)
    lengths = torch.tensor([1.0, 0.6, 0.3])
    frames = [20, 12, 6]
    y = mixer(x, lengths)
    for i, n in enumerate(frames):
        alone = mixer(x[i : i + 1, :n])
        torch.testing.assert_close(y[i : i + 1, :n], alone, rtol=0, atol=1e-12)
        assert (y[i, n:] == 0).all()
    changed = x.clone()
    changed[1, 12:] = 1e3
    changed[2, 6:] = float("nan")  # even NaN in the padding does not leak
    torch.testing.assert_close(mixer(changed, lengths), y, rtol=0, atol=0)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    mixer = Mamba(d_model=16, d_state=4, bias=True, chunk_size=4)
    x = torch.randn(2, 9, 16)
    y = mixer(x, torch.tensor([1.0, 0.7]))
    y.pow(2).sum().backward()
    for name, param in mixer.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_parameters_and_init_follow_mamba_ssm():
    mixer = Mamba(d_model=40, d_state=16, dt_min=0.01, dt_max=0.05)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert mixer.dt_rank == 3  # ceil(40 / 16)
    assert shapes == {
        "in_proj.weight": (160, 40),
        "conv1d.weight": (80, 1, 4),
        "conv1d.bias": (80,),
        "x_proj.weight": (3 + 32, 80),
        "dt_proj.weight": (80, 3),
        "dt_proj.bias": (80,),
        "A_log": (80, 16),
        "D": (80,),
        "out_proj.weight": (40, 80),
    }
    expected_A = torch.arange(1, 17, dtype=torch.float32).expand(80, 16)
    torch.testing.assert_close(torch.exp(mixer.A_log), expected_A)
    assert (mixer.D == 1).all()
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert (dt > 0.01 * 0.999).all() and (dt < 0.05 * 1.001).all()
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    constant = Mamba(d_model=16, dt_init="constant", dt_scale=2.0)
    assert (constant.dt_proj.weight == 2.0).all()  # rank 1: 1**-0.5 * 2
    assert get_mixer("mamba") is Mamba


def test_low_precision_runs():
    torch.manual_seed(0)
    mixer = Mamba(d_model=16, d_state=4, chunk_size=4)
    x = torch.randn(2, 10, 16)
    lengths = torch.tensor([1.0, 0.5])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = mixer(x, lengths)
        y.float().sum().backward()
        cache = mixer.init_cache(2)
        mixer(x, cache=cache)
        mixer.step(x[:, 0], cache)
    assert torch.isfinite(y.float()).all()
    reference = mixer(x, lengths)
    assert (y.float() - reference).abs().max() < 0.1
    half = Mamba(d_model=16, d_state=4).bfloat16()
    assert half(x.bfloat16()).dtype == torch.bfloat16


def test_bad_inputs_raise_clear_errors():
    mixer = Mamba(d_model=16, d_state=4)
    with pytest.raises(ValueError, match="rank 2"):
        mixer(torch.randn(10, 16))
    with pytest.raises(ValueError, match="d_model=16"):
        mixer(torch.randn(2, 10, 8))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        mixer(torch.randn(2, 10, 16), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        mixer(torch.randn(2, 10, 16), torch.tensor([1.5, 1.0]))
    with pytest.raises(ValueError, match="either lengths or cache"):
        mixer(torch.randn(2, 10, 16), torch.ones(2), cache=mixer.init_cache(2))
    with pytest.raises(ValueError, match="cache.conv_state has shape"):
        mixer(torch.randn(3, 10, 16), cache=mixer.init_cache(2))
    with pytest.raises(TypeError, match="MambaCache"):
        mixer.step(torch.randn(2, 16), cache=None)
    with pytest.raises(ValueError, match="one frame"):
        mixer.step(torch.randn(2, 5, 16), mixer.init_cache(2))
    with pytest.raises(ValueError, match="d_model=16"):
        mixer.step(torch.randn(2, 8), mixer.init_cache(2))
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        Mamba(d_model=0)
    with pytest.raises(ValueError, match="dt_init must be"):
        Mamba(d_model=16, dt_init="xavier")
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(d_model=16, dt_rank=0)
    with pytest.raises(ValueError, match="chunk_size"):
        Mamba(d_model=16, chunk_size=0)
    assert isinstance(mixer.init_cache(1), MambaCache)
