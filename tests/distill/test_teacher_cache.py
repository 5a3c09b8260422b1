"""Teacher-output cache of fixed (target) teachers: same results, fewer forwards."""

import functools
import logging

import pytest
import torch
from speechbrain.dataio.batch import PaddedBatch

import toy_recipe
from cald_brain.distill import (
    DistillBrain,
    HybridCutoff,
    ModelOutputs,
    TargetGuide,
    TrajectoryGuide,
    unwrap_module,
)

N_STEPS, BATCHES_PER_EPOCH = 12, 4
# Layer-norm feature encoder: an utterance's real frames do not depend on the
# padding of the batch it is in, so cached and fresh outputs agree.
LAYER_NORM_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "feat_extract_norm": "layer",
}


@pytest.fixture(scope="module")
def layer_norm_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ln_source") / "source.ckpt"
    torch.manual_seed(3)
    torch.save(toy_recipe.build_toy_model(config=LAYER_NORM_MODEL).state_dict(), path)
    return str(path)


def _target_run(run_mode, checkpoint, cache):
    return run_mode(
        "target",
        source_checkpoint=checkpoint,
        target_checkpoint=checkpoint,
        base={"model_config": LAYER_NORM_MODEL, "cache_teacher": cache},
    )


def test_cache_gives_the_uncached_results_without_running_the_teacher_again(
    run_mode, layer_norm_checkpoint
):
    fresh = _target_run(run_mode, layer_norm_checkpoint, False)
    cached = _target_run(run_mode, layer_norm_checkpoint, True)
    assert cached.guide.cache_teacher and not fresh.guide.cache_teacher
    # every step is guided; the teacher runs only in the first epoch
    assert fresh.guide.n_teacher_forwards == N_STEPS
    assert cached.guide.n_teacher_forwards == BATCHES_PER_EPOCH
    assert cached.teacher_forward_calls == BATCHES_PER_EPOCH + 1  # + the start-up check
    assert len(cached.guide.cache) == 16
    assert all(h["distilled"] for h in cached.history)
    # same losses, step by step, and the same final student (float tolerance:
    # later epochs pad each utterance differently)
    assert len(fresh.history) == len(cached.history) == N_STEPS
    for a, b in zip(fresh.history, cached.history):
        assert a["terms"].keys() == b["terms"].keys() == {"task", "layer"}
        for name in a["terms"]:
            assert a["terms"][name] == pytest.approx(b["terms"][name], rel=1e-4, abs=1e-6)
    fresh_state = unwrap_module(fresh.modules.model).state_dict()
    cached_state = unwrap_module(cached.modules.model).state_dict()
    for name, value in fresh_state.items():
        torch.testing.assert_close(cached_state[name], value, rtol=1e-4, atol=1e-5)


class _Frames(torch.nn.Module):
    """Per-frame teacher: the padding never reaches a real frame."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = (torch.nn.Linear(3, 3) for _ in range(3))

    def forward(self, x):
        h1 = torch.tanh(self.a(x))
        h2 = torch.tanh(self.b(h1))
        return h1, h2, self.head(h2)


class _Brain:
    """What TargetGuide reads from a brain, with a PaddedBatch-style forward."""

    device = "cpu"
    teacher_mode = "eval"

    def __init__(self, cache_teacher=False):
        self.cache_teacher = cache_teacher
        self.forwards = 0

    def teacher_forward(self, teacher, batch, stage):
        self.forwards += 1
        x, lengths = batch.x
        h1, h2, frames = teacher(x)
        mask = torch.arange(x.shape[1]) < torch.round(lengths * x.shape[1]).unsqueeze(1)
        pooled = (frames * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        return ModelOutputs(pooled, [h1, h2], mask=lengths, logits=[pooled, frames])


def _items(lengths, ids):
    gen = torch.Generator().manual_seed(0)
    data = {i: torch.randn(n, 3, generator=gen) for i, n in zip(ids, lengths)}
    return lambda *names: PaddedBatch([{"id": i, "x": data[i]} for i in names])


def test_cached_outputs_are_repadded_like_a_fresh_teacher():
    make = _items([5, 2, 4, 3], ["a", "b", "c", "d"])
    brain = _Brain(cache_teacher=True)
    guide = HybridCutoff(TargetGuide(_Frames()), distill_until=10)
    guide.setup(brain)
    first = make("a", "b", "c")
    assert not guide.has_cached(first)
    guide.teacher_outputs(brain, first, None)
    assert guide.n_teacher_forwards == 1
    # another composition (shorter padding) of cached items
    again = make("c", "b")
    assert guide.has_cached(again)
    expected = brain.teacher_forward(guide.teacher_modules()[0], again, None)
    padded = torch.zeros(2, 4, 3)  # the student's padded length
    student = ModelOutputs(None, [padded, padded], logits=[None, padded])
    cached = guide.cached_outputs(brain, again, student)
    assert cached.mask.tolist() == [[True] * 4, [True, True, False, False]]
    for got, want in zip(cached.hidden_states, expected.hidden_states):
        real = cached.mask.unsqueeze(-1)
        torch.testing.assert_close(got * real, want * real)
        assert not got[1, 2:].any()  # padding is zero
    torch.testing.assert_close(cached.logits[0], expected.logits[0])
    torch.testing.assert_close(cached.logits[1][0], expected.logits[1][0])
    assert guide.n_teacher_forwards == 1
    # a batch with an unseen item runs the teacher and caches the new item
    new = make("d", "a")
    assert not guide.has_cached(new)
    guide.teacher_outputs(brain, new, None)
    assert guide.n_teacher_forwards == 2 and len(guide.guide.cache) == 4
    # after the hybrid cut-off the cache is freed
    guide.is_active(11)
    assert len(guide.guide.cache) == 0


def test_cache_bad_uses_are_refused(caplog):
    refused = "cache_teacher cannot be used with teacher_mode: train"
    with pytest.raises(ValueError, match=refused):
        TargetGuide(torch.nn.Linear(3, 3), teacher_mode="train", cache_teacher=True)
    brain = _Brain(cache_teacher=True)
    brain.teacher_mode = "train"
    with pytest.raises(ValueError, match="teacher_mode: train: dropout"):
        TargetGuide(torch.nn.Linear(3, 3)).setup(brain)
    with pytest.raises(ValueError, match="`cache_teacher` must be True or False"):
        DistillBrain(
            modules={"model": torch.nn.Linear(3, 3)},
            hparams={"cache_teacher": "yes"},
            run_opts={"device": "cpu"},
        )
    # batches without item ids cannot be cached
    guide = TargetGuide(torch.nn.Linear(3, 3), cache_teacher=True)
    guide.setup(_Brain())
    with pytest.raises(ValueError, match="PaddedBatch `.id`"):
        guide.has_cached(torch.ones(2, 3))
    # a teacher that changes ignores the brain's cache_teacher, and says so
    sgd = functools.partial(torch.optim.SGD, lr=0.1)
    trajectory = TrajectoryGuide(torch.nn.Linear(3, 3), sgd)
    brain = _Brain(cache_teacher=True)
    with caplog.at_level(logging.WARNING, logger="cald_brain.distill.guides"):
        trajectory._setup_cache(brain)
    assert "cache_teacher is ignored by the TrajectoryGuide" in caplog.text
