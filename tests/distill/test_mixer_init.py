"""Mixer-aware starts (zero, attention transfer) on tiny models and the toy recipe.

Toy schedule: 16 training utterances, batch 4, 3 epochs = 12 optimizer
steps; with ``transfer_steps: 6`` steps 1-6 are the attention-transfer stage
and steps 7-12 the mode's training.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from speechbrain.dataio.batch import PaddedBatch

import toy_recipe
from cald_brain.distill import (
    AttentionTransfer,
    DistillBrain,
    build_student,
    find_mixers,
    unwrap_module,
    zero_output_projections,
)
from cald_brain.distill.mixer_init import get_transfer_teacher

TRANSFER_STEPS = 6
N_STEPS = 12


# ---------------------------------------------------------------------------
# zero: each converted layer starts as the layer without attention
# ---------------------------------------------------------------------------


def _layer_norm(x, norm):
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _wav2vec2(stable):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
    )
    model = Wav2Vec2Model(config)
    wav = torch.randn(2, 4000)
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 3000:] = 0
    return model, model.encoder.layers[0], {"input_values": wav, "attention_mask": mask}


def _w2v2_ffn(ff, x):
    inner = F.gelu(F.linear(x, ff.intermediate_dense.weight, ff.intermediate_dense.bias))
    return F.linear(inner, ff.output_dense.weight, ff.output_dense.bias)


def _w2v2_stable_reference(layer, x):
    # pre-norm: x + FFN(LN(x)); the attention branch adds nothing
    return x + _w2v2_ffn(layer.feed_forward, _layer_norm(x, layer.final_layer_norm))


def _w2v2_post_reference(layer, x):
    # post-norm: LN(x), then LN(h + FFN(h))
    h = _layer_norm(x, layer.layer_norm)
    return _layer_norm(h + _w2v2_ffn(layer.feed_forward, h), layer.final_layer_norm)


def _bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    model = BertModel(config)
    ids = torch.randint(0, 50, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 7:] = 0
    return model, model.encoder.layer[0], {"input_ids": ids, "attention_mask": mask}


def _bert_reference(layer, x):
    # post-norm: LN(x + 0), then LN(h + FFN(h))
    h = _layer_norm(x, layer.attention.LayerNorm)  # the kept post-norm
    inner = F.gelu(F.linear(h, layer.intermediate.dense.weight, layer.intermediate.dense.bias))
    ffn = F.linear(inner, layer.output.dense.weight, layer.output.dense.bias)
    return _layer_norm(h + ffn, layer.output.LayerNorm)


def _gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXModel

    config = GPTNeoXConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
        use_parallel_residual=True,
    )
    model = GPTNeoXModel(config)
    return model, model.layers[0], {"input_ids": torch.randint(0, 50, (2, 10))}


def _gpt_neox_reference(layer, x):
    # parallel residual: x + 0 + MLP(LN(x))
    mlp = layer.mlp
    h = _layer_norm(x, layer.post_attention_layernorm)
    inner = F.gelu(F.linear(h, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias))
    return x + F.linear(inner, mlp.dense_4h_to_h.weight, mlp.dense_4h_to_h.bias)


ZERO_CASES = {
    "wav2vec2-stable-bimamba2": (
        lambda: _wav2vec2(True),
        "bimamba2",
        {"d_state": 4, "headdim": 8},
        _w2v2_stable_reference,
    ),
    "wav2vec2-postnorm-mamba2": (
        lambda: _wav2vec2(False),
        "mamba2",
        {"d_state": 4, "headdim": 8},
        _w2v2_post_reference,
    ),
    "bert-linformer": (_bert, "linformer", {"k": 8}, _bert_reference),
    "gpt-neox-mamba": (_gpt_neox, "mamba", {"d_state": 4}, _gpt_neox_reference),
}


@pytest.mark.parametrize("case", sorted(ZERO_CASES))
def test_zero_start_equals_the_layer_without_attention(case):
    factory, mixer, mixer_kwargs, reference = ZERO_CASES[case]
    torch.manual_seed(0)
    model, layer, inputs = factory()
    model = build_student(model, mixer=mixer, mixer_kwargs=mixer_kwargs, mixer_init="zero")
    model.eval()
    seen = {}

    def capture(module, args, kwargs, output):
        seen["x"] = args[0] if args else kwargs["hidden_states"]
        seen["y"] = output[0] if isinstance(output, tuple) else output

    handle = layer.register_forward_hook(capture, with_kwargs=True)
    with torch.no_grad():
        model(**inputs)
    handle.remove()
    x, y = seen["x"], seen["y"]
    expected = reference(layer, x)
    assert y.shape == expected.shape
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    # the mixers are really there, their other weights untouched (random)
    adapters = find_mixers(model)
    assert len(adapters) == 1
    mixer_module = adapters[0][1].mixer
    others = [p for n, p in mixer_module.named_parameters() if "out_proj" not in n]
    assert any(p.abs().sum() > 0 for p in others)


def test_zero_start_of_an_unknown_mixer_is_refused():
    model, _, _ = _wav2vec2(True)
    from cald_brain.convert import convert

    convert(model, "bimamba2", d_state=4, headdim=8)
    adapter = find_mixers(model)[0][1]
    adapter.mixer = torch.nn.Linear(32, 32)  # a mixer whose output layer is unknown
    unknown = "output projection of a torch.nn.modules.linear.Linear"
    with pytest.raises(TypeError, match=unknown):
        zero_output_projections(model)
    with pytest.raises(ValueError, match="has no converted mixer"):
        zero_output_projections(torch.nn.Linear(2, 2))


# ---------------------------------------------------------------------------
# The unconverted copy kept for attention transfer
# ---------------------------------------------------------------------------


def test_transfer_teacher_is_kept_unregistered(source_checkpoint):
    build = lambda: toy_recipe.build_toy_model(source=source_checkpoint)  # noqa: E731
    kwargs = {"mixer": "bimamba2", "mixer_kwargs": {"d_state": 8, "headdim": 8, "expand": 1}}
    plain = build_student(build, **kwargs)
    student = build_student(build, mixer_init="attention_transfer", **kwargs)
    _, teacher = get_transfer_teacher(student)
    # not a submodule: not in the state dict, not among the parameters
    assert student.state_dict().keys() == plain.state_dict().keys()
    student_params = {id(p) for p in student.parameters()}
    assert not any(id(p) in student_params for p in teacher.parameters())
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    # it is the unconverted source: attention kept, weights of the source
    assert type(teacher.wav2vec2.encoder.layers[0].attention).__name__ == "Wav2Vec2Attention"
    source = torch.load(source_checkpoint, weights_only=True)
    assert all(torch.equal(v, source[k]) for k, v in teacher.state_dict().items())
    # a deep copy of the student shares it (it never changes)
    assert get_transfer_teacher(copy.deepcopy(student))[1] is teacher


# ---------------------------------------------------------------------------
# Bad values
# ---------------------------------------------------------------------------


def _w2v2_student(mixer_init="default", mixer="bimamba2"):
    model, _, _ = _wav2vec2(True)
    kwargs = {"d_state": 4, "headdim": 8} if mixer else None
    return build_student(model, mixer=mixer, mixer_kwargs=kwargs, mixer_init=mixer_init)


def test_bad_mixer_init_values_are_refused():
    with pytest.raises(ValueError, match="mixer_init must be one of .*'ones'"):
        _w2v2_student("ones")
    with pytest.raises(ValueError, match="mixer_init 'attention_transfer' needs a `mixer`"):
        _w2v2_student("attention_transfer", mixer=None)
    with pytest.raises(ValueError, match="mixer_init 'zero' needs a `mixer`"):
        _w2v2_student("zero", mixer=None)
    run = {"device": "cpu"}
    with pytest.raises(ValueError, match="hparam `mixer_init` must be one of"):
        DistillBrain(
            modules={"model": _w2v2_student()}, hparams={"mixer_init": "ones"}, run_opts=run
        )
    student = _w2v2_student("attention_transfer")
    with pytest.raises(ValueError, match="transfer_steps must be an integer >= 0, got -1"):
        DistillBrain(
            modules={"model": student},
            hparams={"mixer_init": "attention_transfer", "transfer_steps": -1},
            run_opts=run,
        )
    with pytest.raises(ValueError, match="`transfer_steps`.*is not set"):
        DistillBrain(
            modules={"model": student},
            hparams={"mixer_init": "attention_transfer"},
            run_opts=run,
        )
    with pytest.raises(ValueError, match="hparam `mixer_init` is 'default'"):
        DistillBrain(modules={"model": student}, hparams={}, run_opts=run)
    # attention transfer of a student that has no converted mixer ...
    with pytest.raises(ValueError, match="has no converted mixer"):
        DistillBrain(
            modules={"model": _w2v2_student(mixer=None)},
            hparams={"mixer_init": "attention_transfer", "transfer_steps": 3},
            run_opts=run,
        )
    # ... or that was converted without keeping the unconverted copy
    with pytest.raises(ValueError, match="keeps no unconverted copy"):
        AttentionTransfer(_w2v2_student(), steps=3)


# ---------------------------------------------------------------------------
# Attention transfer on the toy recipe
# ---------------------------------------------------------------------------


class SpyBrain(toy_recipe.ToyBrain):
    """Records which student parameters have gradients at each step, the
    initial weights and the weights at the end of the transfer stage."""

    def on_fit_start(self):
        super().on_fit_start()
        self.with_grad = []
        self.initial = _state(self)
        self.after_transfer = None
        self.optimizer_lr_steps = None

    def optimizers_step(self):
        student = unwrap_module(self.modules[self.student_module])
        self.with_grad.append({n for n, p in student.named_parameters() if p.grad is not None})
        super().optimizers_step()
        if self.optimizer_step == self.mixer_transfer.steps:
            self.after_transfer = _state(self)
            self.main_optimizer_state_size = len(self.optimizer.state)


def _state(brain):
    student = unwrap_module(brain.modules[brain.student_module])
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def _is_mixer(name):
    return ".mixer." in name


@pytest.fixture(scope="module")
def transfer_run(run_mode):
    schedule = toy_recipe.CountingSchedule()
    brain = run_mode(
        "target",
        base={"mixer_init": "attention_transfer", "transfer_steps": TRANSFER_STEPS},
        hparams_update={"lr_annealing": schedule},
        brain_class=SpyBrain,
    )
    return brain, schedule


def test_transfer_stage_counts_steps_then_hands_over_to_the_guide(transfer_run):
    brain, schedule = transfer_run
    history = brain.history
    assert [h["optimizer_step"] for h in history] == list(range(1, N_STEPS + 1))
    assert [h["transfer"] for h in history] == [True] * TRANSFER_STEPS + [False] * (
        N_STEPS - TRANSFER_STEPS
    )
    # the guide's teacher never runs during the transfer stage
    assert [h["distilled"] for h in history] == [False] * TRANSFER_STEPS + [True] * (
        N_STEPS - TRANSFER_STEPS
    )
    assert brain.guide.n_teacher_forwards == N_STEPS - TRANSFER_STEPS
    # each layer's relative error is a logged term
    assert set(history[0]["terms"]) == {"transfer", "transfer_0", "transfer_1"}
    assert set(history[-1]["terms"]) == {"task", "layer"}
    assert "loss_transfer_0" in brain.epoch_stats[0]["train"]
    # the main optimizer did not step, nor the LR schedule advance, during
    # transfer; the schedule set its first rate before the main optimizer's
    # first step (call at 0 steps), so that step is not taken at the peak rate
    assert brain.main_optimizer_state_size == 0
    assert schedule.calls == list(range(0, N_STEPS - TRANSFER_STEPS + 1))
    # the stage's resources are released after it
    assert len(brain.transfer_optimizer.state) == 0


def test_only_mixer_parameters_change_during_transfer(transfer_run):
    brain, _ = transfer_run
    mixer_names = {n for n in brain.initial if _is_mixer(n)}
    assert mixer_names
    for step, names in enumerate(brain.with_grad, start=1):
        if step <= TRANSFER_STEPS:
            assert names and all(_is_mixer(n) for n in names), step
        else:
            assert any(not _is_mixer(n) for n in names), step
    changed = {
        n for n in brain.initial if not torch.equal(brain.initial[n], brain.after_transfer[n])
    }
    assert changed and changed <= mixer_names
    for name in brain.initial:
        if not _is_mixer(name):
            assert torch.equal(brain.initial[name], brain.after_transfer[name]), name


def test_attention_transfer_lowers_each_layer_error(transfer_run):
    brain, _ = transfer_run
    dataset = toy_recipe.make_dataset(8, seed=1)
    batch = PaddedBatch([dataset[i] for i in range(4)])
    student = unwrap_module(brain.modules.model)
    final = _state(brain)

    def errors(state):
        student.load_state_dict(state)
        student.eval()
        with torch.no_grad():
            return brain.mixer_transfer(brain, batch, None).layer_errors

    before, after = errors(brain.initial), errors(brain.after_transfer)
    student.load_state_dict(final)
    assert before.shape == after.shape == (2,)
    assert (after < 0.7 * before).all(), (before, after)


def test_transfer_steps_count_for_waypoints_and_hybrid_cutoff(run_mode):
    short_transfer = {"mixer_init": "attention_transfer", "transfer_steps": 3, "number_of_epochs": 2}
    brain = run_mode("waypoint", base=short_transfer)
    # std waypoints at steps 3, 4, 6, 8 ...: the first guided step (4) learns
    # from the waypoint of step 4 (the start-up check loaded that of step 1)
    assert [h["distilled"] for h in brain.history] == [False] * 3 + [True] * 5
    assert [h["waypoint"] for h in brain.history[3:]] == [4, 6, 6, 8, 8]
    brain = run_mode("hybrid", distill_until=5, base=short_transfer)
    assert [h["distilled"] for h in brain.history] == [False] * 3 + [True] * 2 + [False] * 3


def test_transfer_with_grad_accumulation_and_ddp(run_mode, single_process_group):
    ddp = torch.nn.parallel.DistributedDataParallel
    brain = run_mode(
        "unguided",
        run_opts={"distributed_backend": "gloo", "grad_accumulation_factor": 2},
        base={"mixer_init": "attention_transfer", "transfer_steps": 3, "number_of_epochs": 2},
    )
    assert isinstance(brain.modules.model, ddp)
    assert not isinstance(brain.mixer_transfer.teacher, ddp)
    # 8 batches, 2 per step: steps 1-3 transfer (6 batches), step 4 task loss
    assert brain.optimizer_step == 4
    assert [h["transfer"] for h in brain.history] == [True] * 6 + [False] * 2


def test_zero_start_on_the_toy_recipe(run_mode):
    brain = run_mode("unguided", base={"mixer_init": "zero", "number_of_epochs": 1})
    assert brain.mixer_transfer is None and brain.optimizer_step == 4
    # the mixers grew from zero output projections
    mixer = unwrap_module(brain.modules.model).wav2vec2.encoder.layers[0].attention.mixer
    assert mixer.fw_mamba.out_proj.weight.abs().max() > 0
