"""Conversion of HF and SpeechBrain transformers: weights kept, models train."""

import math

import pytest
import torch
from torch import nn

from cald_brain.convert import convert, find_attention_layers, hf_mask_to_lengths
from cald_brain.nnet import BiMamba2, LinformerSelfAttention, Mamba

transformers = pytest.importorskip("transformers")


def tiny_speech_config(cls, stable):
    return cls(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_stride=(5, 4),
        conv_kernel=(10, 8),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=stable,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )


def speech_models():
    t = transformers
    yield "wav2vec2-postnorm", t.Wav2Vec2Model(tiny_speech_config(t.Wav2Vec2Config, False))
    yield "wav2vec2-prenorm", t.Wav2Vec2Model(tiny_speech_config(t.Wav2Vec2Config, True))
    yield "hubert", t.HubertModel(tiny_speech_config(t.HubertConfig, True))
    yield "wavlm", t.WavLMModel(tiny_speech_config(t.WavLMConfig, False))


def text_models():
    t = transformers
    common = dict(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    yield "roberta", t.RobertaForSequenceClassification(t.RobertaConfig(pad_token_id=1, **common))
    yield "bert", t.BertForSequenceClassification(t.BertConfig(**common))


def tiny_neox():
    t = transformers
    config = t.GPTNeoXConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    return t.GPTNeoXForCausalLM(config)


def sb_encoders():
    from speechbrain.lobes.models.transformer.Conformer import ConformerEncoder
    from speechbrain.lobes.models.transformer.Transformer import TransformerEncoder

    yield "sb-transformer", TransformerEncoder(num_layers=2, nhead=2, d_ffn=32, d_model=16, dropout=0.0)
    yield "sb-conformer", ConformerEncoder(
        num_layers=2, d_model=16, d_ffn=32, nhead=2, dropout=0.0, attention_type="regularMHA"
    )


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_non_attention_weights_identical(before, model, report):
    after = model.state_dict()
    replaced = [r.path + "." for r in report.replaced]
    kept = [k for k in before if not any(k.startswith(p) for p in replaced)]
    assert kept, "nothing outside attention?"
    for key in kept:
        assert key in after, f"{key} disappeared"
        assert torch.equal(before[key], after[key]), f"{key} changed"
    return kept


@pytest.mark.parametrize("name,model", list(speech_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_speech_encoder_to_bimamba2(name, model):
    torch.manual_seed(0)
    before = snapshot(model)
    report = convert(model, "bimamba2", d_state=8, headdim=8)
    assert len(report.replaced) == 2
    assert all(isinstance(r, str) for r in (report.family, str(report)))
    assert_non_attention_weights_identical(before, model, report)
    for path, layer, _ in find_attention_layers(model):
        raise AssertionError(f"{path} still has attention {layer}")
    mixers = [m for m in model.modules() if isinstance(m, BiMamba2)]
    assert len(mixers) == 2 and mixers[0].fw_mamba.expand == 1
    assert not mixers[0].residual_inside

    # Padded batch == each utterance alone, through the whole converted model.
    model.eval()
    wav = [torch.randn(4000), torch.randn(2600)]
    batch = torch.zeros(2, 4000)
    batch[0], batch[1, :2600] = wav[0], wav[1]
    mask = torch.tensor([[1] * 4000, [1] * 2600 + [0] * 1400])
    with torch.no_grad():
        out = model(batch, attention_mask=mask).last_hidden_state
        for i, w in enumerate(wav):
            alone = model(w.unsqueeze(0)).last_hidden_state[0]
            torch.testing.assert_close(out[i, : alone.shape[0]], alone, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,model", list(text_models()), ids=lambda v: v if isinstance(v, str) else "")
def test_text_encoder_to_linformer_reuses_projections(name, model):
    encoder = model.base_model.encoder
    originals = [
        (l.attention.self.query, l.attention.self.key, l.attention.self.value, l.attention.output)
        for l in encoder.layer
    ]
    originals = [tuple(snapshot(m) for m in group) for group in originals]
    before = snapshot(model)
    report = convert(model, k=8)
    assert report.mixer == "linformer" and len(report.replaced) == 2
    assert report.replaced[0].reused == ("k", "o", "q", "v")
    assert_non_attention_weights_identical(before, model, report)
    for layer, (q, k, v, out) in zip(encoder.layer, originals):
        mixer = layer.attention.mixer
        assert isinstance(mixer, LinformerSelfAttention)
        assert mixer.max_len == 40
        assert torch.equal(mixer.q_proj.weight, q["weight"])
        assert torch.equal(mixer.k_proj.bias, k["bias"])
        assert torch.equal(mixer.v_proj.weight, v["weight"])
        assert torch.equal(mixer.out_proj.weight, out["dense.weight"])
        assert torch.equal(layer.attention.LayerNorm.weight, out["LayerNorm.weight"])
    model.eval()
    ids = torch.randint(3, 50, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        logits = model(ids, attention_mask=mask).logits
        alone = model(ids[1:, :7]).logits
    torch.testing.assert_close(logits[1:], alone, rtol=1e-4, atol=1e-5)


def test_text_layerwise_sharing_builds_one_projection():
    _, model = next(text_models())
    convert(model, "linformer", k=8, share="layerwise")
    mixers = [m for m in model.modules() if isinstance(m, LinformerSelfAttention)]
    assert mixers[0].kv_seq_proj is mixers[1].kv_seq_proj


def test_gpt_neox_to_mamba_with_sizes_from_the_source():
    model = tiny_neox()
    before = snapshot(model)
    report = convert(model)
    assert report.mixer == "mamba"
    assert_non_attention_weights_identical(before, model, report)
    mixer = next(m for m in model.modules() if isinstance(m, Mamba))
    # From the source model (not the reference's mamba-2.8b leftovers):
    assert mixer.d_inner == 2 * 32
    assert mixer.dt_rank == math.ceil(32 / 16)
    assert tuple(mixer.A_log.shape) == (64, 16)
    ids = torch.randint(0, 50, (2, 10))
    logits = model(ids).logits
    changed = ids.clone()
    changed[:, 6] = (changed[:, 6] + 1) % 50
    # Still causal: a later token leaves earlier predictions unchanged.
    torch.testing.assert_close(model(changed).logits[:, :6], logits[:, :6])


@pytest.mark.parametrize("name,encoder", list(sb_encoders()), ids=lambda v: v if isinstance(v, str) else "")
def test_speechbrain_encoder_to_bimamba2(name, encoder):
    before = snapshot(encoder)
    report = convert(encoder, d_state=8, headdim=8)
    assert len(report.replaced) == 2
    assert_non_attention_weights_identical(before, encoder, report)
    encoder.eval()
    x = torch.randn(2, 9, 16)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 5:] = True
    kwargs = {"pos_embs": None} if name == "sb-conformer" else {}
    with torch.no_grad():
        out = encoder(x, src_key_padding_mask=pad, **kwargs)[0]
        alone = encoder(x[1:, :5], **kwargs)[0]
    assert out.shape == x.shape and torch.isfinite(out).all()
    if name == "sb-transformer":
        # (SpeechBrain's conformer is not padding-invariant even before
        # conversion: its convolution module reads padded frames.)
        torch.testing.assert_close(out[1:, :5], alone, rtol=1e-4, atol=1e-5)


def _train(model, loss_fn, steps=12, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_converted_models_train_with_falling_loss():
    torch.manual_seed(0)
    _, speech = list(speech_models())[1]
    convert(speech, d_state=8, headdim=8)
    wav = torch.randn(2, 4000)
    target = torch.randn(32)
    speech_losses = _train(
        speech, lambda: (speech(wav).last_hidden_state.mean(1) - target).pow(2).mean()
    )

    _, text = next(text_models())
    convert(text, k=8)
    ids, labels = torch.randint(3, 50, (4, 10)), torch.tensor([0, 1, 0, 1])
    text_losses = _train(text, lambda: text(ids, labels=labels).loss)

    lm = tiny_neox()
    convert(lm)
    tokens = torch.randint(0, 50, (2, 16))
    lm_losses = _train(lm, lambda: lm(tokens, labels=tokens).loss)

    for losses in (speech_losses, text_losses, lm_losses):
        assert losses[-1] < 0.7 * losses[0], losses


def test_hf_mask_forms_agree():
    lengths = torch.tensor([6, 4])
    frame = (torch.arange(6)[None] < lengths[:, None]).long()
    boolean = frame.bool()[:, None, None, :].expand(2, 1, 6, 6)
    additive = torch.zeros(2, 1, 6, 6).masked_fill(~boolean, torch.finfo(torch.float).min)
    expected = torch.tensor([1.0, 4 / 6])
    for mask in (frame, boolean, additive):
        torch.testing.assert_close(hf_mask_to_lengths(mask, 6), expected)
    assert hf_mask_to_lengths(torch.ones(2, 6), 6) is None
    with pytest.raises(ValueError, match="right-padded"):
        hf_mask_to_lengths(torch.tensor([[0, 1, 1]]), 3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="No self-attention .* recognises"):
        convert(nn.Sequential(nn.Linear(4, 4), nn.ReLU()))
    _, model = next(speech_models())
    with pytest.raises(KeyError, match="Unknown mixer 'performer'"):
        convert(model, "performer")
    convert(model, d_state=8, headdim=8)
    with pytest.raises(ValueError, match="already converted"):
        convert(model)
    with pytest.raises(ValueError, match="causal language model.*'bimamba2'"):
        convert(tiny_neox(), "bimamba2")
    with pytest.raises(TypeError, match="torch.nn.Module"):
        convert("wav2vec2")
