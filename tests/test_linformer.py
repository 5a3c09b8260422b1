"""Tests for the Linformer self-attention mixer.

Authors
 * cald-brain developers 2026
"""

import math

import pytest
import torch

from cald_brain.nnet.linformer import SHARE_MODES, LinformerSelfAttention
from cald_brain.nnet.registry import build_mixer

D_MODEL, NHEAD = 16, 4
HEAD_DIM = D_MODEL // NHEAD


def make_attn(share="headwise", max_len=12, k=6, **kwargs):
    """A small float64 module in eval mode, seeded."""
    torch.manual_seed(0)
    attn = LinformerSelfAttention(
        D_MODEL, NHEAD, max_len=max_len, k=k, share=share, **kwargs
    )
    return attn.double().eval()


def set_identity_projections(attn, size, scale):
    """Sets every sequence-length projection to ``scale * I`` (first rows).

    Rows beyond ``size`` keep random values: they must never be used for a
    sequence of at most ``size`` frames.
    """
    eye = torch.eye(attn.max_len, attn.k, dtype=torch.float64) * scale
    with torch.no_grad():
        for name, param in attn.named_parameters():
            if "seq_proj" in name:
                param[..., :size, :] = eye[:size]


def dense_attention(attn, x):
    """Standard multi-head attention with the module's q/k/v/out weights."""
    batch, time, _ = x.shape

    def heads(t):
        return t.view(batch, time, NHEAD, HEAD_DIM).transpose(1, 2)

    q = heads(attn.q_proj(x))
    k = heads(attn.k_proj(x))
    v = heads(attn.v_proj(x))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HEAD_DIM), -1)
    context = (probs @ v).transpose(1, 2).reshape(batch, time, D_MODEL)
    return attn.out_proj(context)


@pytest.mark.parametrize("share", ["headwise", "none"])
def test_identity_projections_give_dense_attention(share):
    # With k = T = max_len and E = F = sqrt(T) I, K~ = K and V~ = V exactly.
    time = 10
    attn = make_attn(share, max_len=time, k=time)
    set_identity_projections(attn, time, math.sqrt(time))
    x = torch.randn(3, time, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(
            attn(x), dense_attention(attn, x), rtol=0, atol=1e-10
        )


def test_identity_projections_match_torch_multihead_attention():
    time = 10
    attn = make_attn("kv", max_len=time, k=time)
    set_identity_projections(attn, time, math.sqrt(time))
    mha = torch.nn.MultiheadAttention(D_MODEL, NHEAD, batch_first=True)
    mha = mha.double().eval()
    with torch.no_grad():
        linears = (attn.q_proj, attn.k_proj, attn.v_proj)
        mha.in_proj_weight.copy_(torch.cat([lin.weight for lin in linears]))
        mha.in_proj_bias.copy_(torch.cat([lin.bias for lin in linears]))
        mha.out_proj.weight.copy_(attn.out_proj.weight)
        mha.out_proj.bias.copy_(attn.out_proj.bias)
        x = torch.randn(2, time, D_MODEL, dtype=torch.float64)
        expected, _ = mha(x, x, x, need_weights=False)
        torch.testing.assert_close(attn(x), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("share", SHARE_MODES)
def test_padded_sequence_with_identity_projection_gives_dense_attention(share):
    # A sequence of L real frames uses E[:L] / sqrt(L). With k = L and
    # E[:L] = F[:L] = sqrt(L) I this is exactly dense attention over its L
    # frames, even inside a batch padded to T = max_len > L. (With k = T
    # instead, the T - L extra slots would hold zero keys whose exp(0) still
    # enters the softmax, so agreement would not be expected.)
    time, short = 12, 7
    attn = make_attn(share, max_len=time, k=short)
    set_identity_projections(attn, short, math.sqrt(short))
    x = torch.randn(2, time, D_MODEL, dtype=torch.float64)
    lengths = torch.tensor([1.0, short / time])
    with torch.no_grad():
        y = attn(x, lengths)
        expected = dense_attention(attn, x[1:, :short])
    torch.testing.assert_close(y[1:, :short], expected, rtol=0, atol=1e-10)
    assert torch.all(y[1, short:] == 0)


@pytest.mark.parametrize("share", SHARE_MODES)
def test_padded_batch_equals_each_sequence_alone(share):
    attn = make_attn(share)
    time = 10
    frames = [10, 4, 7]
    lengths = torch.tensor([n / time for n in frames])
    x = torch.randn(len(frames), time, D_MODEL, dtype=torch.float64)
    with torch.no_grad():
        y = attn(x, lengths)
        for b, n in enumerate(frames):
            alone = attn(x[b : b + 1, :n])
            torch.testing.assert_close(y[b : b + 1, :n], alone)
            assert torch.all(y[b, n:] == 0)

        # Changing padded frames (even to NaN) changes nothing.
        perturbed = x.clone()
        perturbed[1, 4:] = 1e3 * torch.randn(time - 4, D_MODEL)
        perturbed[2, 7:] = float("nan")
        assert torch.equal(attn(perturbed, lengths), y)


def test_padding_does_not_leak_into_gradients():
    attn = make_attn("headwise")
    x = torch.randn(2, 8, D_MODEL, dtype=torch.float64, requires_grad=True)
    attn(x, torch.tensor([1.0, 0.5])).sum().backward()
    assert torch.all(x.grad[1, 4:] == 0)
    assert torch.all(x.grad[1, :4] != 0)


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_per_share_mode():
    max_len, k = 12, 6
    linears = 4 * (D_MODEL * D_MODEL + D_MODEL)
    expected = {
        "none": 2 * NHEAD * max_len * k,
        "headwise": 2 * max_len * k,
        "kv": max_len * k,
        "layerwise": max_len * k,
    }
    for share, extra in expected.items():
        attn = make_attn(share, max_len=max_len, k=k)
        assert count(attn) == linears + extra, share


def test_layerwise_modules_share_one_tensor():
    max_len, k = 12, 6
    shared = LinformerSelfAttention.new_shared_projection(max_len, k)
    layers = torch.nn.ModuleList(
        LinformerSelfAttention(
            D_MODEL,
            NHEAD,
            max_len=max_len,
            k=k,
            share="layerwise",
            shared_projection=shared,
        )
        for _ in range(3)
    )
    linears = 4 * (D_MODEL * D_MODEL + D_MODEL)
    assert count(layers) == 3 * linears + max_len * k
    assert all(layer.kv_seq_proj is shared for layer in layers)

    # One optimizer step moves the single shared tensor, seen by all layers.
    before = shared.detach().clone()
    x = torch.randn(2, 5, D_MODEL)
    out = x
    for layer in layers:
        out = layer(out)
    out.pow(2).sum().backward()
    torch.optim.SGD(layers.parameters(), lr=0.1).step()
    assert not torch.equal(shared, before)
    assert all(torch.equal(layer.kv_seq_proj, shared) for layer in layers)

    # Without a shared projection, each layer creates its own.
    a = LinformerSelfAttention(D_MODEL, NHEAD, 12, 6, share="layerwise")
    b = LinformerSelfAttention(D_MODEL, NHEAD, 12, 6, share="layerwise")
    assert a.kv_seq_proj is not b.kv_seq_proj


def test_kv_mode_equals_headwise_with_equal_projections():
    kv = make_attn("kv")
    headwise = make_attn("headwise")
    headwise.load_state_dict(kv.state_dict(), strict=False)
    with torch.no_grad():
        headwise.key_seq_proj.copy_(kv.kv_seq_proj)
        headwise.value_seq_proj.copy_(kv.kv_seq_proj)
        x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
        lengths = torch.tensor([1.0, 0.5])
        torch.testing.assert_close(kv(x, lengths), headwise(x, lengths))


def make_projections(bias=True):
    torch.manual_seed(1)
    return {
        key: torch.nn.Linear(D_MODEL, D_MODEL, bias=bias) for key in "qkvo"
    }


def test_from_attention_copies_weights_bit_exactly_and_independently():
    projections = make_projections()
    attn = LinformerSelfAttention.from_attention(
        projections, nhead=NHEAD, max_len=12, k=6
    )
    assert attn.d_model == D_MODEL
    pairs = {
        "q": attn.q_proj,
        "k": attn.k_proj,
        "v": attn.v_proj,
        "o": attn.out_proj,
    }
    for key, target in pairs.items():
        assert torch.equal(target.weight, projections[key].weight)
        assert torch.equal(target.bias, projections[key].bias)
        assert target.weight.data_ptr() != projections[key].weight.data_ptr()

    copies = {key: t.weight.detach().clone() for key, t in pairs.items()}
    with torch.no_grad():
        for source in projections.values():
            source.weight.add_(1.0)
            source.bias.add_(1.0)
    for key, target in pairs.items():
        assert torch.equal(target.weight, copies[key])


def test_from_attention_through_registry_keeps_dtype():
    projections = {k: p.double() for k, p in make_projections().items()}
    attn = build_mixer(
        "linformer", projections=projections, nhead=NHEAD, max_len=12, k=6
    )
    assert isinstance(attn, LinformerSelfAttention)
    assert attn.key_seq_proj.dtype == torch.float64
    assert torch.equal(attn.q_proj.weight, projections["q"].weight)


def test_from_attention_without_bias():
    attn = LinformerSelfAttention.from_attention(
        make_projections(bias=False), nhead=NHEAD, max_len=12, k=6
    )
    assert attn.q_proj.bias is None


def test_from_attention_errors():
    projections = make_projections()
    del projections["o"]
    with pytest.raises(ValueError, match=r"missing projection.*'o'"):
        LinformerSelfAttention.from_attention(projections, nhead=NHEAD)
    projections["o"] = torch.nn.Linear(D_MODEL, 2 * D_MODEL)
    with pytest.raises(ValueError, match=r"'o' has weight shape \(32, 16\)"):
        LinformerSelfAttention.from_attention(projections, nhead=NHEAD)
    with pytest.raises(ValueError, match="bias=False"):
        LinformerSelfAttention.from_attention(
            make_projections(), nhead=NHEAD, bias=False
        )


@pytest.mark.parametrize("share", SHARE_MODES)
def test_gradients_reach_every_parameter(share):
    attn = make_attn(share, dropout=0.1).train()
    x = torch.randn(2, 9, D_MODEL, dtype=torch.float64)
    attn(x, torch.tensor([1.0, 0.6])).pow(2).sum().backward()
    for name, param in attn.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


def test_input_errors():
    attn = LinformerSelfAttention(D_MODEL, NHEAD, max_len=8, k=4)
    with pytest.raises(ValueError, match="rank 2"):
        attn(torch.randn(5, D_MODEL))
    with pytest.raises(ValueError, match="d_model=16 but the input has 8"):
        attn(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]"):
        attn(torch.randn(2, 5, D_MODEL), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]"):
        attn(torch.randn(2, 5, D_MODEL), torch.tensor([1.0, 3.0]))
    with pytest.raises(ValueError, match="has 9 frames.*max_len=8"):
        attn(torch.randn(2, 9, D_MODEL))


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown share mode 'layer'.*kv"):
        LinformerSelfAttention(D_MODEL, NHEAD, share="layer")
    with pytest.raises(ValueError, match="nhead=3 .* d_model=16"):
        LinformerSelfAttention(D_MODEL, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        LinformerSelfAttention(D_MODEL, NHEAD, k=0)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        LinformerSelfAttention(D_MODEL, NHEAD, max_len=0)
    shared = LinformerSelfAttention.new_shared_projection(8, 4)
    with pytest.raises(ValueError, match=r"shape \[max_len=8, k=5\]"):
        LinformerSelfAttention(
            D_MODEL, NHEAD, 8, 5, share="layerwise", shared_projection=shared
        )
    with pytest.raises(ValueError, match="only used with share='layerwise'"):
        LinformerSelfAttention(
            D_MODEL, NHEAD, 8, 4, share="kv", shared_projection=shared
        )
    with pytest.raises(TypeError, match="must be an nn.Parameter"):
        LinformerSelfAttention(
            D_MODEL,
            NHEAD,
            8,
            4,
            share="layerwise",
            shared_projection=torch.randn(8, 4),
        )
