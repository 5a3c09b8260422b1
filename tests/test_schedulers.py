"""Per-group learning rates: new mixers (or Linformer's E/F) faster than the rest."""

import pytest
import torch
from speechbrain.nnet.schedulers import WarmAndExpDecayLRSchedule

from cald_brain.convert import convert
from cald_brain.schedulers import GroupScaledSchedule, scaled_param_groups

transformers = pytest.importorskip("transformers")


def tiny_bert():
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40,
    )
    model = transformers.BertForSequenceClassification(config)
    convert(model, "linformer", k=8)
    return model


def test_linformer_projections_get_their_own_rate():
    model = tiny_bert()
    groups = scaled_param_groups(model, 1e-4, {r"_seq_proj$": 100})
    by_name = {g["name"]: g for g in groups}
    fast = {id(p) for p in by_name["_seq_proj$"]["params"]}
    expected = {id(p) for n, p in model.named_parameters() if n.endswith("_seq_proj")}
    assert fast == expected and len(fast) == 4  # E and F of 2 layers
    assert by_name["_seq_proj$"]["lr"] == pytest.approx(1e-2)
    n_params = sum(len(g["params"]) for g in groups)
    assert n_params == sum(1 for p in model.parameters() if p.requires_grad)


def test_schedule_keeps_the_ratio_and_resumes(tmp_path):
    model = tiny_bert()
    opt = torch.optim.AdamW(scaled_param_groups(model, 1.0, {r"_seq_proj$": 100}))
    schedule = GroupScaledSchedule(WarmAndExpDecayLRSchedule(lr=1.0, n_warmup_steps=3, total_steps=10, decay_factor=0.1))
    for _ in range(5):
        schedule(opt)
        rates = {g["name"]: g["lr"] for g in opt.param_groups}
        assert rates["_seq_proj$"] == pytest.approx(100 * rates["default"])
    path = tmp_path / "schedule.ckpt"
    schedule.save(path)
    restored = GroupScaledSchedule(WarmAndExpDecayLRSchedule(lr=1.0, n_warmup_steps=3, total_steps=10, decay_factor=0.1))
    restored.load(path)
    schedule(opt)
    expected = [g["lr"] for g in opt.param_groups]
    restored(opt)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx(expected)


def test_bad_scale_is_refused():
    with pytest.raises(ValueError, match="must be > 0"):
        scaled_param_groups(torch.nn.Linear(2, 2), 1.0, {"bias": 0})
