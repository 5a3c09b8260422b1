"""Unit tests of the layerwise and output distillation losses."""

import pytest
import torch

from cald_brain.distill.losses import (
    LayerwiseDistillationLoss,
    OutputDistillationLoss,
    frame_mask,
    layer_distance,
    output_distillation_loss,
    resolve_layer_map,
)


def _pair(batch=3, time=7, channels=8, layers=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    student = [torch.randn(batch, time, channels, generator=gen) for _ in range(layers)]
    teacher = [torch.randn(batch, time, channels, generator=gen) for _ in range(layers)]
    return student, teacher


def test_padding_never_counts():
    student, teacher = _pair()
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5]).bool()
    loss = LayerwiseDistillationLoss()
    ref = loss(student, teacher, mask)
    # Garbage (even non-finite values) at padded frames changes nothing.
    for h in student + teacher:
        h[~mask] = float("nan")
    assert torch.equal(loss(student, teacher, mask), ref)


def test_frame_average_and_layer_mean():
    student, teacher = _pair(batch=2, time=5)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]).bool()
    loss = LayerwiseDistillationLoss(normalization="none")
    per_layer = []
    for s, t in zip(student, teacher):
        per_frame = (s - t).pow(2).mean(-1)
        per_layer.append(per_frame[mask].mean())
    expected = torch.stack(per_layer).mean()
    assert torch.allclose(loss(student, teacher, mask), expected)


def test_relative_lengths_equal_frame_mask():
    student, teacher = _pair(batch=2, time=10)
    loss = LayerwiseDistillationLoss()
    lengths = torch.tensor([1.0, 0.6])
    mask = frame_mask(lengths, 2, 10)
    assert mask.sum(1).tolist() == [10, 6]
    assert torch.equal(loss(student, teacher, lengths), loss(student, teacher, mask))


def test_layernorm_makes_loss_scale_invariant():
    student, teacher = _pair()
    loss = LayerwiseDistillationLoss(normalization="layernorm")
    scaled = [3.0 * h + 1.0 for h in teacher]
    assert torch.allclose(loss(student, teacher), loss(student, scaled), atol=1e-5)
    raw = LayerwiseDistillationLoss(normalization="none")
    assert not torch.allclose(raw(student, teacher), raw(student, scaled))


def test_gradient_reaches_student_only():
    student, teacher = _pair()
    student = [h.requires_grad_() for h in student]
    teacher = [h.requires_grad_() for h in teacher]
    LayerwiseDistillationLoss()(student, teacher).backward()
    assert all(h.grad is not None and h.grad.abs().sum() > 0 for h in student)
    assert all(h.grad is None for h in teacher)


def test_bf16_states_are_compared_in_float32():
    student, teacher = _pair()
    loss = LayerwiseDistillationLoss()(
        [h.bfloat16() for h in student], [h.bfloat16() for h in teacher]
    )
    assert loss.dtype == torch.float32


def test_layer_map_resolution():
    assert resolve_layer_map(2, 2) == [(0, 0), (1, 1)]
    assert resolve_layer_map(2, 4, [[0, 1], [1, 3]]) == [(0, 1), (1, 3)]
    assert resolve_layer_map(2, 4, {0: 1, -1: -1}) == [(0, 1), (1, 3)]
    with pytest.raises(ValueError, match="layer_map"):
        resolve_layer_map(2, 3)
    with pytest.raises(ValueError, match="teacher hidden state 5"):
        resolve_layer_map(2, 3, [[0, 5]])
    with pytest.raises(ValueError, match="empty"):
        resolve_layer_map(2, 3, [])


def test_layer_map_selects_layers():
    student, _ = _pair(layers=2)
    noise = torch.randn_like(student[0])
    teacher = [noise, student[0].clone(), noise, student[1].clone()]
    loss = LayerwiseDistillationLoss(layer_map=[[0, 1], [1, 3]])
    assert loss(student, teacher) == 0
    with pytest.raises(ValueError, match="student gives 2 hidden states and the teacher 4"):
        LayerwiseDistillationLoss()(student, teacher)


def test_shape_mismatch_names_the_pair():
    student, teacher = _pair()
    teacher[1] = teacher[1][..., :4]
    with pytest.raises(ValueError, match=r"student 1, teacher 1"):
        LayerwiseDistillationLoss()(student, teacher)


def test_missing_hidden_states_message():
    with pytest.raises(ValueError, match="gave no hidden states"):
        LayerwiseDistillationLoss()(None, [torch.zeros(1, 2, 3)])


def test_layer_distance_all_padded_is_zero():
    s, t = torch.randn(1, 3, 4), torch.randn(1, 3, 4)
    assert layer_distance(s, t, torch.zeros(1, 3, dtype=torch.bool)) == 0


def test_kd_matches_definition():
    gen = torch.Generator().manual_seed(1)
    zs, zt = torch.randn(4, 6, generator=gen), torch.randn(4, 6, generator=gen)
    beta = 2.0
    p_t = torch.softmax(zt / beta, -1)
    expected = (p_t * (p_t.log() - torch.log_softmax(zs / beta, -1))).sum(-1).mean()
    assert torch.allclose(output_distillation_loss(zs, zt, temperature=beta), expected)


def test_kd_masked_over_frames():
    gen = torch.Generator().manual_seed(2)
    zs, zt = torch.randn(2, 5, 6, generator=gen), torch.randn(2, 5, 6, generator=gen)
    lengths = torch.tensor([1.0, 0.4])
    ref = output_distillation_loss(zs, zt, lengths)
    zs2 = zs.clone()
    zs2[1, 2:] = 100.0  # padded frames
    assert torch.equal(output_distillation_loss(zs2, zt, lengths), ref)
    assert ref > 0
    assert output_distillation_loss(zt, zt, lengths).abs() < 1e-6


def test_kd_heads_and_errors():
    kd = OutputDistillationLoss(temperature=2.0)
    z = torch.randn(3, 4)
    assert kd([z, z], [z, z]).abs() < 1e-6
    with pytest.raises(ValueError, match="logits"):
        kd(None, z)
    with pytest.raises(ValueError, match="positive"):
        OutputDistillationLoss(temperature=0)
