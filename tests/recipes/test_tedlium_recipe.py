"""TED-LIUM recipe: preparation of a generated corpus in TED-LIUM 3's layout,
bad input, a std and a hybrid run, and the packaged model's transcription.

Authors
 * cald-brain developers 2026
"""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "TEDLIUM"
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import make_mini_tedlium  # noqa: E402
from tedlium_prepare import TedliumError, normalize_text, prepare_tedlium  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return Path(make_mini_tedlium.ensure_corpus(tmp_path_factory.mktemp("ted") / "corpus", "mini", progress=False))


def copy_corpus(corpus, tmp_path):
    dest = tmp_path / "TEDLIUM_release-3"
    shutil.copytree(corpus, dest)
    return dest


def test_normalisation_cases():
    assert normalize_text("we 're at 95% & it 's <unk> 's") == "we're at ninety five percent and it's"
    assert normalize_text("in 2009 the 3rd one cost $5") == "in two thousand and nine the third one cost five dollars"
    assert normalize_text("<unk>") == ""


@needs_espeak
def test_prepare_counts_and_skips(corpus, tmp_path):
    summary = prepare_tedlium(str(corpus), str(tmp_path / "prep"), progress=False)
    stms = {s: list((corpus / "legacy" / s / "stm").glob("*.stm")) for s in ("train", "dev", "test")}
    for split, files in stms.items():
        lines = [line for f in files for line in f.read_text().splitlines() if line.strip()]
        ignored = [line for line in lines if line.endswith("ignore_time_segment_in_scoring")]
        skipped = [r for r in summary["skipped"] if r["split"] == split]
        assert summary["counts"][split] == len(lines) - len(skipped)
        assert len([r for r in skipped if r["reason"] == "ignore_time_segment_in_scoring"]) == len(ignored)
    row = (tmp_path / "prep" / "train.csv").read_text().splitlines()[1].split(",")
    audio, rate = sf.read(row[2])
    assert rate == 16000 and abs(len(audio) / rate - float(row[1])) < 0.01
    assert "<unk>" not in (tmp_path / "prep" / "train.csv").read_text()
    again = prepare_tedlium(str(corpus), str(tmp_path / "prep"), progress=False)
    assert not again["prepared"]  # idempotent


@needs_espeak
def test_bad_input_names_file_and_line(corpus, tmp_path):
    prep = tmp_path / "prep"
    prepare_tedlium(str(corpus), str(prep), progress=False)
    before = (prep / "test.csv").read_text()

    def broken(edit):
        root = copy_corpus(corpus, tmp_path / f"c{len(os.listdir(tmp_path))}")
        edit(root)
        return root

    def expect(root, pattern):
        with pytest.raises((TedliumError, ValueError), match=pattern):
            prepare_tedlium(str(root), str(prep), progress=False)
        assert (prep / "test.csv").read_text() == before  # nothing written before is lost

    def drop_sph(root):
        next((root / "legacy" / "dev" / "sph").glob("*.sph")).unlink()
    expect(broken(drop_sph), r"dev/stm/.*\.stm: its audio .*\.sph is missing")

    def few_fields(root):
        stm = next((root / "legacy" / "train" / "stm").glob("*.stm"))
        stm.write_text(stm.read_text() + "Talk 1 Talk 3.0\n")
    expect(broken(few_fields), r"\.stm line \d+: an STM line needs at least 5 fields")

    def dev_char(root):
        stm = next((root / "legacy" / "dev" / "stm").glob("*.stm"))
        lines = stm.read_text().splitlines()
        lines[0] += " #hashtag"
        stm.write_text("\n".join(lines) + "\n")
    expect(broken(dev_char), r"dev/stm/.*\.stm line 1: characters outside the vocabulary \['#'\]")

    def low_rate(root):
        sph = next((root / "legacy" / "test" / "sph").glob("*.sph"))
        audio, _ = sf.read(sph)
        sf.write(sph, audio[::2], 8000, format="NIST", subtype="PCM_16")
    expect(broken(low_rate), r"\.sph: 8000 Hz")


def tiny_args(source, data_folder):
    return [
        "--data_folder", str(data_folder), "--source", str(source),
        "--mamba_d_state", "8", "--mamba_headdim", "8", "--mamba_chunk_size", "16",
        "--number_of_epochs", "1", "--batch_size", "6", "--test_batch_size", "8", "--num_workers", "0",
        "--warmup_steps", "2", "--decay_total_steps", "20", "--lr", "0.002", "--grad_accumulation_factor", "1",
        "--waypoint_interval", "2", "--distill_until", "2", "--update_interval", "2",
        "--device", "cpu", "--noprogressbar",
    ]


def train(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "recipes/TEDLIUM/train.py", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def std_run(corpus, tiny_whisper_source, tmp_path_factory):
    """The std run the guided modes read (its waypoints, its best checkpoint)."""
    std = tmp_path_factory.mktemp("ted_std") / "std"
    train(["hparams/std.yaml", "--output_folder", std, *tiny_args(tiny_whisper_source, corpus)])
    return std


@needs_espeak
@pytest.mark.parametrize("mode", ["unguided", "target", "trajectory", "waypoint"])
def test_each_mode_trains_a_few_steps(mode, corpus, tiny_whisper_source, std_run, tmp_path):
    out = tmp_path / mode
    extra = [] if mode in ("unguided", "trajectory") else ["--std_folder", std_run]
    train([f"hparams/{mode}.yaml", "--output_folder", out, *extra, *tiny_args(tiny_whisper_source, corpus)])
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == mode and results["optimizer_steps"] > 0
    assert results["test"]["WER"] >= 0 and results["n_test"] > 0
    log = (out / "train_log.txt").read_text()
    assert ("loss_layer" in log) == (mode != "unguided")
    if mode == "target":
        assert "loss_kd" in log  # output distillation on the CTC posteriors


@needs_espeak
def test_sentencepiece_targets_train_and_package(corpus, tiny_whisper_source, tmp_path):
    from cald_brain.asr import greedy_transcripts
    from cald_brain.dataio import read_audio
    from cald_brain.inference import SentencePieceCTCTranscriber, package_model

    out = tmp_path / "sp"
    train(["hparams/unguided.yaml", "--output_folder", out, *tiny_args(tiny_whisper_source, corpus),
           "--token_type", "unigram", "--sp_vocab_size", "40", "--n_tokens", "41"])
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["WER"] >= 0
    asr = SentencePieceCTCTranscriber.from_hparams(source=package_model(str(out), str(tmp_path / "pkg")),
                                                   savedir=str(tmp_path / "pkg.loaded"))
    assert asr.tokenizer.get_piece_size() == 40
    wav = next((corpus / "legacy" / "test" / "sph").glob("*.sph"))
    signal = read_audio(str(wav), 16000)[: 16000 * 4]
    with torch.no_grad():
        out = asr.mods.model.eval()(signal.unsqueeze(0))
    assert out.logits.shape[-1] == 41
    assert asr.transcribe_signal(signal) == greedy_transcripts(out.logits, out.mask, asr.tokenizer)[0][0]


@needs_espeak
def test_std_then_hybrid_then_packaged_transcription(corpus, tiny_whisper_source, std_run, tmp_path):
    from cald_brain.asr import char_encoder, greedy_transcripts
    from cald_brain.dataio import read_audio
    from cald_brain.inference import CTCTranscriber, package_model

    std, hybrid = std_run, tmp_path / "hybrid"
    train(["hparams/hybrid.yaml", "--output_folder", hybrid, "--std_folder", std,
           *tiny_args(tiny_whisper_source, corpus)])
    for folder, mode in ((std, "std"), (hybrid, "hybrid")):
        results = json.loads((folder / "results.json").read_text())
        assert results["mode"] == mode and results["select_key"] == "WER"
        assert 0 <= results["test"]["WER"] and 0 <= results["test"]["CER"]
        assert (folder / "hyp_test.csv").read_text().count("\n") == results["n_test"] + 1
    assert "loss_kd" in (hybrid / "train_log.txt").read_text()

    asr = CTCTranscriber.from_hparams(source=package_model(str(hybrid), str(tmp_path / "pkg")),
                                      savedir=str(tmp_path / "pkg.loaded"))
    wav = next((hybrid / "save" / "audio" / "test").rglob("*.flac")) if (hybrid / "save" / "audio").exists() \
        else next((tmp_path / "hybrid" / "save").rglob("*.flac"))
    signal = read_audio(str(wav), 16000)
    model = asr.mods.model.eval()
    with torch.no_grad():
        out = model(signal.unsqueeze(0))
    expected = greedy_transcripts(out.logits, out.mask, char_encoder())[0][0]
    assert asr.transcribe_file(str(wav)) == expected
    # ... and what the trained model wrote in its test stage (batched, padded)
    hyps = {row["ID"]: row["hypothesis"] for row in csv.DictReader(open(hybrid / "hyp_test.csv"))}
    for row in csv.DictReader(open(hybrid / "save" / "test.csv")):
        assert asr.transcribe_file(row["wav"]) == hyps[row["ID"]], row["ID"]
    # A whole talk, past the tiny Whisper's 8 s position table, in one pass
    talk = next((corpus / "legacy" / "train" / "sph").glob("*.sph"))
    assert sf.info(talk).duration > 20
    assert isinstance(asr.transcribe_file(str(talk)), str)


@needs_espeak
def test_long_form_benchmark_on_a_multi_minute_recording(corpus, std_run, tmp_path):
    from cald_brain.inference import benchmark_long_form, load_transcriber, long_form_table, package_model

    pkg = package_model(str(std_run), str(tmp_path / "pkg"))
    talk = next((corpus / "legacy" / "train" / "sph").glob("*.sph"))
    audio, rate = sf.read(talk)
    repeats = int(np.ceil(150 * rate / len(audio)))
    long_path = tmp_path / "long.sph"
    sf.write(long_path, np.tile(audio, repeats), rate, format="NIST", subtype="PCM_16")
    seconds = sf.info(long_path).duration
    assert seconds >= 150  # minutes, far past the tiny Whisper's 8 s position table

    asr = load_transcriber(pkg)
    log_probs, mask = asr.encode_batch(torch.from_numpy(np.tile(audio, repeats)).float().unsqueeze(0))
    assert log_probs.shape[1] == mask.shape[1] == int(round(seconds * 50))  # Whisper: 50 frames per second
    one_pass = asr.transcribe_file(str(long_path))
    rows = benchmark_long_form({"std": pkg}, str(long_path), reference="the talk", windows=(None, 8.0))
    assert [r["how"] for r in rows] == ["one pass", "8 s windows"]
    assert rows[0]["hypothesis"] == one_pass  # the fresh process transcribes as this one does
    assert all(r["seconds"] > 0 and r["wer"] >= 0 and abs(r["audio_s"] - seconds) < 1e-6 for r in rows)
    assert rows[0]["peak_mib"] is None or rows[0]["peak_mib"] >= 0
    assert "8 s windows" in long_form_table(rows)


def test_word_error_rate_on_known_strings():
    from cald_brain.asr import char_encoder, decode_ids, encode_text, word_error_rate

    assert word_error_rate("it's a picture of the ocean", "it's a picture of the ocean") == 0.0
    # one substitution, one deletion, one insertion over 6 reference words
    assert word_error_rate("it's a picture of the ocean", "it's the picture of ocean today") == pytest.approx(50.0)
    assert word_error_rate(["a b c d"], ["a b c d e f g h"]) == pytest.approx(100.0)
    tok = char_encoder()
    ids = encode_text("don't panic", tok)
    assert decode_ids(ids, tok) == "don't panic"
