"""Mamba2 and BiMamba2 against an independent step-by-step reference."""

import pytest
import torch
import torch.nn.functional as F

from cald_brain.nnet import BiMamba2, Mamba2, build_mixer, get_mixer
from cald_brain.nnet.mamba2 import (
    _ssd_scan_factored,
    _ssd_scan_pairwise,
    ssd_chunked_scan,
)


def naive_ssd(x, dt, A, B, C, state=None):
    """Plain recurrence S_t = exp(dt A) S_{t-1} + dt B_t x_t^T, y_t = C_t S_t."""
    batch, steps, nheads, headdim = x.shape
    heads_per_group = nheads // B.shape[2]
    if state is None:
        state = x.new_zeros(batch, nheads, B.shape[3], headdim)
    ys = []
    for t in range(steps):
        Bt = B[:, t].repeat_interleave(heads_per_group, dim=1)
        Ct = C[:, t].repeat_interleave(heads_per_group, dim=1)
        decay = torch.exp(dt[:, t] * A)[..., None, None]
        state = decay * state + (dt[:, t, :, None, None] * Bt[..., :, None] * x[:, t, :, None, :])
        ys.append((Ct[..., :, None] * state).sum(-2))
    return torch.stack(ys, dim=1), state


def naive_mamba2(m, u):
    """Whole Mamba2 forward written out step by step from its parameters."""
    batch, steps, _ = u.shape
    zxbcdt = u @ m.in_proj.weight.T
    if m.in_proj.bias is not None:
        zxbcdt = zxbcdt + m.in_proj.bias
    z = zxbcdt[..., : m.d_inner]
    xBC = zxbcdt[..., m.d_inner : m.d_inner + m.conv_dim]
    dt = zxbcdt[..., m.d_inner + m.conv_dim :]
    # causal depthwise convolution, one tap at a time
    w = m.conv1d.weight[:, 0, :]  # [channels, k]
    k = w.shape[1]
    conv = torch.zeros_like(xBC)
    for t in range(steps):
        for j in range(k):
            src = t - (k - 1) + j
            if src >= 0:
                conv[:, t] += w[:, j] * xBC[:, src]
    conv = F.silu(conv + m.conv1d.bias)
    ng, ns = m.ngroups, m.d_state
    xs = conv[..., : m.d_inner].reshape(batch, steps, m.nheads, m.headdim)
    B = conv[..., m.d_inner : m.d_inner + ng * ns].reshape(batch, steps, ng, ns)
    C = conv[..., m.d_inner + ng * ns :].reshape(batch, steps, ng, ns)
    dt = F.softplus(dt + m.dt_bias)
    A = -torch.exp(m.A_log)
    y, _ = naive_ssd(xs, dt, A, B, C)
    y = (y + xs * m.D[:, None]).reshape(batch, steps, m.d_inner)
    y = y * F.silu(z)
    groups = y.view(batch, steps, ng, -1)
    groups = groups / torch.sqrt(groups.pow(2).mean(-1, keepdim=True) + m.norm.eps)
    y = groups.reshape(batch, steps, m.d_inner) * m.norm.weight
    return y @ m.out_proj.weight.T


def random_mamba2(**kwargs):
    torch.manual_seed(0)
    m = Mamba2(**kwargs).double()
    with torch.no_grad():  # move away from the init so every term matters
        m.A_log.add_(0.3 * torch.randn_like(m.A_log))
        m.D.copy_(torch.randn_like(m.D))
        m.dt_bias.add_(0.5 * torch.randn_like(m.dt_bias))
        m.norm.weight.copy_(1 + 0.1 * torch.randn_like(m.norm.weight))
        m.conv1d.bias.copy_(0.1 * torch.randn_like(m.conv1d.bias))
    return m


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 256])
@pytest.mark.parametrize("seq_len", [1, 13, 29])
@pytest.mark.parametrize("ngroups", [1, 2])
def test_mamba2_equals_naive_recurrence(chunk_size, seq_len, ngroups):
    m = random_mamba2(
        d_model=16, d_state=6, headdim=4, expand=2, ngroups=ngroups, chunk_size=chunk_size
    )
    u = torch.randn(2, seq_len, 16, dtype=torch.float64)
    torch.testing.assert_close(m(u), naive_mamba2(m, u), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("scan", [_ssd_scan_factored, _ssd_scan_pairwise])
@pytest.mark.parametrize("chunk", [1, 5, 16])
def test_both_scan_forms_equal_recurrence(scan, chunk):
    torch.manual_seed(1)
    x = torch.randn(2, 37, 6, 3, dtype=torch.float64)
    dt = torch.rand(2, 37, 6, dtype=torch.float64)
    A = -3 * torch.rand(6, dtype=torch.float64)
    B = torch.randn(2, 37, 2, 5, dtype=torch.float64)
    C = torch.randn(2, 37, 2, 5, dtype=torch.float64)
    state0 = torch.randn(2, 6, 5, 3, dtype=torch.float64)
    y, s = scan(x, dt * A, dt, B, C, chunk, state0)
    y_ref, s_ref = naive_ssd(x, dt, A, B, C, state0)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, s_ref, rtol=1e-10, atol=1e-10)


def test_strong_decay_stays_finite_and_exact():
    # dt * A of -200 per step would overflow a naively factored decay.
    torch.manual_seed(2)
    x, B, C = torch.randn(1, 40, 4, 3), torch.randn(1, 40, 1, 5), torch.randn(1, 40, 1, 5)
    dt = 20 * torch.rand(1, 40, 4)
    A = -10 * torch.ones(4)
    y, _ = ssd_chunked_scan(x, dt, A, B, C, chunk_size=16)
    y_ref, _ = naive_ssd(x.double(), dt.double(), A.double(), B.double(), C.double())
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.double(), y_ref, rtol=1e-4, atol=1e-4)


def test_state_dict_loads_into_transformers_mamba2():
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    torch.manual_seed(0)
    ours = Mamba2(d_model=32, d_state=16, headdim=8, expand=2, chunk_size=16)
    config = Mamba2Config(
        hidden_size=32,
        expand=2,
        head_dim=8,
        num_heads=8,
        state_size=16,
        n_groups=1,
        conv_kernel=4,
        chunk_size=16,
        use_bias=False,
        use_conv_bias=True,
        layer_norm_epsilon=1e-5,
        num_hidden_layers=1,
    )
    theirs = Mamba2Mixer(config, layer_idx=0)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 45, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


def test_parameter_names_and_shapes_mirror_mamba_ssm():
    m = Mamba2(d_model=1024, expand=1)  # the paper's speech configuration
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "dt_bias": (16,),
        "A_log": (16,),
        "D": (16,),
        "in_proj.weight": (2320, 1024),
        "conv1d.weight": (1280, 1, 4),
        "conv1d.bias": (1280,),
        "norm.weight": (1024,),
        "out_proj.weight": (1024, 1024),
    }
    assert sum(p.numel() for p in m.parameters()) == 3_431_728


def _pad_batch(seqs):
    T = max(s.shape[0] for s in seqs)
    x = torch.zeros(len(seqs), T, seqs[0].shape[1])
    for i, s in enumerate(seqs):
        x[i, : s.shape[0]] = s
    lengths = torch.tensor([s.shape[0] / T for s in seqs])
    return x, lengths


@pytest.mark.parametrize("cls", [Mamba2, BiMamba2])
def test_padded_batch_equals_each_sequence_alone(cls):
    torch.manual_seed(0)
    m = cls(d_model=16, d_state=8, headdim=4, chunk_size=4).eval()
    seqs = [torch.randn(n, 16) for n in (11, 7, 3)]
    x, lengths = _pad_batch(seqs)
    x[1, 7:] = 5.0  # non-zero padding must not matter
    with torch.no_grad():
        y = m(x, lengths)
        for i, s in enumerate(seqs):
            alone = m(s.unsqueeze(0))[0]
            torch.testing.assert_close(y[i, : len(s)], alone, rtol=1e-5, atol=1e-6)
            assert torch.all(y[i, len(s) :] == 0)


def test_bimamba2_sees_the_future_and_ignores_padding():
    torch.manual_seed(0)
    m = BiMamba2(d_model=16, d_state=8, headdim=4).eval()
    x = torch.randn(2, 10, 16)
    lengths = torch.tensor([1.0, 0.6])
    with torch.no_grad():
        y = m(x, lengths)
        padded_changed = x.clone()
        padded_changed[1, 6:] = torch.randn(4, 16)
        torch.testing.assert_close(m(padded_changed, lengths), y, rtol=0, atol=0)
        later_changed = x.clone()
        later_changed[1, 5] += 1.0  # last real frame of sequence 1
        y_later = m(later_changed, lengths)
    assert (y_later[1, :5] - y[1, :5]).abs().max() > 1e-4
    assert torch.equal(y_later[0], y[0])


def test_mamba2_is_causal():
    torch.manual_seed(0)
    m = Mamba2(d_model=16, d_state=8, headdim=4).eval()
    x = torch.randn(1, 10, 16)
    changed = x.clone()
    changed[0, 6] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0, :6], m(changed)[0, :6], rtol=0, atol=0)


def test_residual_inside_adds_input():
    torch.manual_seed(0)
    plain = BiMamba2(d_model=8, d_state=4, headdim=4)
    inside = BiMamba2(d_model=8, d_state=4, headdim=4, residual_inside=True)
    inside.load_state_dict(plain.state_dict())
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(inside(x), plain(x) + x)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    m = BiMamba2(d_model=16, d_state=8, headdim=4, chunk_size=4)
    x = torch.randn(2, 9, 16, requires_grad=True)
    m(x, torch.tensor([1.0, 0.5])).pow(2).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_bf16_autocast_runs():
    m = BiMamba2(d_model=16, d_state=8, headdim=4)
    x = torch.randn(2, 9, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x, torch.tensor([1.0, 0.5]))
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    torch.testing.assert_close(y.float(), m(x, torch.tensor([1.0, 0.5])), rtol=0.1, atol=0.1)


@pytest.mark.parametrize("cls", [Mamba2, BiMamba2])
def test_bad_input_is_refused(cls):
    m = cls(d_model=8, d_state=4, headdim=4)
    with pytest.raises(ValueError, match="rank 2"):
        m(torch.randn(5, 8))
    with pytest.raises(ValueError, match="d_model=8 but the input has 6"):
        m(torch.randn(1, 5, 6))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        m(torch.randn(2, 5, 8), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        m(torch.randn(2, 5, 8), torch.tensor([1.0, 5.0]))
    with pytest.raises(ValueError, match="shape \\[2\\]"):
        m(torch.randn(2, 5, 8), torch.tensor([1.0]))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="not divisible by headdim"):
        Mamba2(d_model=10, headdim=4, expand=1)
    with pytest.raises(ValueError, match="ngroups"):
        Mamba2(d_model=16, headdim=4, expand=1, ngroups=3)
    with pytest.raises(ValueError, match="d_state must be a positive int"):
        Mamba2(d_model=16, d_state=0)


def test_registry_lookup_and_unknown_name():
    assert get_mixer("mamba2") is Mamba2
    assert isinstance(build_mixer("bimamba2", d_model=8, d_state=4, headdim=4), BiMamba2)
    with pytest.raises(KeyError, match="Unknown mixer 'retnet'.*bimamba2"):
        get_mixer("retnet")


def test_heads_with_different_decay_speeds_use_separate_plans():
    # One head decays ~100x faster than the others: it gets a shorter chunk
    # (or the pairwise form) while the others keep long chunks; the result
    # is still the plain recurrence.
    from cald_brain.nnet.mamba2 import _plan_chunks

    torch.manual_seed(3)
    x = torch.randn(1, 300, 4, 3, dtype=torch.float64)
    dt = 0.05 * torch.rand(1, 300, 4, dtype=torch.float64)
    dt[..., 0] = 0.15 + 0.1 * torch.rand(1, 300, dtype=torch.float64)
    dt[..., 1] = 30.0  # exp(-30 * 16) per step: only the pairwise form is safe
    A = -torch.tensor([16.0, 16.0, 1.0, 2.0], dtype=torch.float64)
    B = torch.randn(1, 300, 1, 5, dtype=torch.float64)
    C = torch.randn(1, 300, 1, 5, dtype=torch.float64)
    plan = _plan_chunks(dt * A, 128, 1)
    forms = {(form, L): heads for form, L, heads in plan}
    assert forms[("factored", 128)] == [2, 3]
    assert ("pairwise", 64) in forms and forms[("pairwise", 64)] == [1]
    assert any(form == "factored" and L < 128 and heads == [0] for form, L, heads in plan)
    state0 = torch.randn(1, 4, 5, 3, dtype=torch.float64)
    y, s = ssd_chunked_scan(x, dt, A, B, C, chunk_size=256, initial_state=state0)
    y_ref, s_ref = naive_ssd(x, dt, A, B, C, state0)
    torch.testing.assert_close(y, y_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(s, s_ref, rtol=1e-9, atol=1e-9)
