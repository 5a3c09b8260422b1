"""Speech encoders (Wav2Vec2 family, Whisper) and their conversion to BiMamba2.

Whisper: our torch log-mel against HF's ``WhisperFeatureExtractor``; padded
batches equal each utterance alone, for the transformer and for the
converted student; every non-attention tensor survives conversion bit for
bit. All on tiny random configs (no network).
"""

import pytest
import torch

from cald_brain.convert import convert
from cald_brain.lobes import WhisperLogMel, build_speech_classifier, build_speech_encoder

transformers = pytest.importorskip("transformers")

WHISPER = dict(
    model_type="whisper", d_model=32, encoder_layers=2, encoder_attention_heads=2,
    encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
    max_source_positions=200,
)
WAV2VEC2 = dict(
    model_type="wav2vec2", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
    num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, layerdrop=0.0,
    do_stable_layer_norm=True, feat_extract_norm="layer",
)
MIXER = dict(d_state=8, headdim=8, chunk_size=16)


def speech(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * torch.pi * 220 * t * (1 + t)) + 0.05 * torch.randn(n, generator=g)


def test_logmel_matches_hf_feature_extractor():
    from transformers import WhisperFeatureExtractor

    wav = speech(16000 * 2 + 77)
    ref = WhisperFeatureExtractor(feature_size=80)(wav.numpy(), sampling_rate=16000, return_tensors="pt")
    ref = ref["input_features"][0]  # [80, 3000], padded to 30 s
    ours, n_frames = WhisperLogMel()(wav[None], torch.tensor([wav.numel()]))
    n = int(n_frames[0])
    assert n == wav.numel() // 160
    assert torch.allclose(ours[0, :, :n], ref[:, :n], atol=2e-4), (ours[0, :, :n] - ref[:, :n]).abs().max()


def padded_batch_matches_alone(model, lens=(1.0, 0.61, 0.333), n=16000):
    wavs = torch.stack([speech(n, seed=i) for i in range(len(lens))])
    lens = torch.tensor(lens)
    worst = 0.0
    with torch.no_grad():
        out = model(wavs, lens)
        for i in range(len(lens)):
            k = int(round(float(lens[i]) * n))
            alone = model(wavs[i : i + 1, :k], torch.ones(1))
            T = alone.mask.shape[1]
            assert int(out.mask[i].sum()) == T
            assert not out.mask[i, T:].any()
            for a, b in zip(out.hidden_states, alone.hidden_states):
                worst = max(worst, (a[i, :T] - b[0]).abs().max().item())
            worst = max(worst, (out.logits[i] - alone.logits[0]).abs().max().item())
    return worst


@pytest.mark.parametrize("config", [WHISPER, WAV2VEC2], ids=["whisper", "wav2vec2"])
def test_padded_batch_equals_alone_teacher_and_student(config):
    torch.manual_seed(0)
    model = build_speech_classifier(3, config=config).eval()
    assert padded_batch_matches_alone(model) < 1e-5
    convert(model, "bimamba2", **MIXER)
    assert padded_batch_matches_alone(model.eval()) < 1e-5


def test_padded_frames_do_not_influence_whisper_real_frames():
    torch.manual_seed(0)
    model = build_speech_classifier(3, config=WHISPER).eval()
    wav = speech(16000)[None].repeat(2, 1)
    lens = torch.tensor([0.5, 0.5])
    wav[1, 8000:] = torch.randn(8000)  # garbage in the padding of item 1
    with torch.no_grad():
        out = model(wav, lens)
    assert torch.allclose(out.logits[0], out.logits[1], atol=1e-6)


def test_whisper_conversion_keeps_every_other_tensor():
    torch.manual_seed(0)
    model = build_speech_classifier(3, config=WHISPER)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = convert(model, "bimamba2", **MIXER)
    assert [r.path for r in report.replaced] == [
        "encoder.model.layers.0.self_attn", "encoder.model.layers.1.self_attn"
    ]
    after = model.state_dict()
    kept = [k for k in before if ".self_attn." not in k]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert not any(".self_attn.q_proj" in k for k in after)


def test_whisper_student_trains():
    torch.manual_seed(0)
    model = build_speech_classifier(2, config=WHISPER)
    convert(model, "bimamba2", **MIXER)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    wavs = torch.stack([speech(8000, seed=i) for i in range(4)])
    labels = torch.tensor([0, 1, 0, 1])
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(wavs, torch.ones(4)).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_frozen_front_ends():
    whisper = build_speech_encoder(config=WHISPER)
    assert not any(p.requires_grad for p in whisper.model.conv1.parameters())
    assert not whisper.model.embed_positions.weight.requires_grad
    w2v = build_speech_encoder(config=WAV2VEC2)
    assert not any(p.requires_grad for p in w2v.model.feature_extractor.parameters())


def test_bad_inputs():
    enc = build_speech_encoder(config=WHISPER)
    long = torch.randn(1, 16000 * 9)  # 450 frames > the table's 200
    # Whisper's sinusoidal table is continued past its end ...
    assert torch.allclose(enc.positions(450)[:200], enc.model.embed_positions.weight, atol=1e-2)
    assert enc(long, torch.ones(1)).last_hidden_state.shape[1] == 450
    # ... a table that is not sinusoidal is refused
    with torch.no_grad():
        enc.model.embed_positions.weight.normal_()
    with pytest.raises(ValueError, match="position table"):
        enc(long, torch.ones(1))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        enc(torch.randn(1, 16000), torch.tensor([1.5]))
    with pytest.raises(ValueError, match="exactly one"):
        build_speech_encoder()
    with pytest.raises(ValueError, match="model_type"):
        build_speech_encoder(config={"d_model": 8})
    with pytest.raises(ValueError, match="Unsupported speech encoder"):
        build_speech_encoder(config=dict(model_type="bert", hidden_size=8, num_hidden_layers=1,
                                         num_attention_heads=2, intermediate_size=8))


def test_whisper_without_absolute_positions():
    torch.manual_seed(0)
    table = build_speech_encoder(config=WHISPER)
    bare = build_speech_encoder(config=WHISPER, positions="none")
    bare.load_state_dict(table.state_dict())
    wav = speech(16000 * 2)
    with torch.no_grad():
        x_table = table(wav[None]).hidden_states[0]
        x_bare = bare(wav[None]).hidden_states[0]
        # the same layer on inputs that differ by exactly the position table
        assert not torch.allclose(x_table, x_bare, atol=1e-3)
        long = bare(torch.cat([wav] * 6)[None])  # 12 s: far past the 4 s table, no table needed
    assert long.last_hidden_state.shape[1] == 600
    assert bare.builder_kwargs()["positions"] == "none" and "positions" not in table.builder_kwargs()
    rebuilt = build_speech_encoder(**bare.builder_kwargs())
    assert rebuilt.position_mode == "none"
    with pytest.raises(ValueError, match="for Whisper encoders"):
        build_speech_encoder(config=WAV2VEC2, positions="none")
    with pytest.raises(ValueError, match="Unknown Whisper positions"):
        build_speech_encoder(config=WHISPER, positions="rotary")
