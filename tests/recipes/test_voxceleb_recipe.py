"""VoxCeleb recipe: every mode for a few steps on the generated VoxCeleb1-layout corpus,
top-k accuracy, and the packaged model through SpeechBrain's own EncoderClassifier.

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

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "VoxCeleb"
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import make_mini_voxceleb  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return Path(make_mini_voxceleb.ensure_corpus(tmp_path_factory.mktemp("vox") / "corpus", "mini", progress=False))


def tiny_args(source, data_folder, *extra):
    return [
        "--data_folder", str(data_folder), "--source", str(source),
        "--mamba_d_state", "8", "--mamba_headdim", "8", "--mamba_chunk_size", "16",
        "--number_of_epochs", "1", "--batch_size", "4", "--test_batch_size", "8", "--num_workers", "0",
        "--warmup_steps", "2", "--decay_total_steps", "20", "--lr", "0.002", "--grad_accumulation_factor", "1",
        "--waypoint_interval", "2", "--distill_until", "2", "--update_interval", "2", "--crop_seconds", "1.5",
        "--device", "cpu", "--noprogressbar", *extra,
    ]


def train(args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "recipes/VoxCeleb/train.py", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.fixture(scope="module")
def std_run(corpus, tiny_whisper_source, tmp_path_factory):
    std = tmp_path_factory.mktemp("vox_std") / "std"
    train(["hparams/std.yaml", "--output_folder", std, *tiny_args(tiny_whisper_source, corpus)])
    return std


def test_top_k_hits():
    import importlib.util

    spec = importlib.util.spec_from_file_location("voxceleb_train", RECIPE / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    top_k_hits = module.top_k_hits
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    assert top_k_hits(logits, torch.tensor([2, 0]), 3).tolist() == [1.0, 0.0]
    assert top_k_hits(logits, torch.tensor([2, 0]), 10).tolist() == [1.0, 1.0]  # k beyond the classes


@needs_espeak
def test_std_results_and_encoder_classifier(corpus, std_run, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    from cald_brain.dataio import read_audio
    from cald_brain.inference import package_model

    results = json.loads((std_run / "results.json").read_text())
    assert results["mode"] == "std" and results["select_key"] == "ACC"
    assert 0 <= results["test"]["ACC"] <= results["test"]["top5_ACC"] <= 1
    assert results["n_test"] == 8  # the mini corpus: 4 speakers x one test video of 2
    labels = (std_run / "save" / "label_encoder.txt").read_text()
    assert all(f"'id1000{i}'" in labels for i in range(1, 5))

    pkg = package_model(str(std_run), str(tmp_path / "pkg"))
    # SpeechBrain's own class, offline (the folder needs nothing else)
    spk = EncoderClassifier.from_hparams(source=pkg, savedir=str(tmp_path / "pkg.loaded"))
    wav = sorted((corpus / "wav").rglob("*.wav"))[-1]
    out_prob, score, index, names = spk.classify_file(str(wav))
    model = spk.mods.classifier.model.eval()
    with torch.no_grad():
        logits = model(read_audio(str(wav), 16000).unsqueeze(0)).logits
    assert int(index) == int(logits.argmax(-1))
    assert names[0] == spk.hparams.label_encoder.decode_ndim(int(logits.argmax(-1)))
    assert torch.allclose(out_prob, logits.log_softmax(-1), atol=1e-5)
    emb = spk.encode_batch(read_audio(str(wav), 16000).unsqueeze(0))
    assert emb.shape == (1, 1, model.classifier.in_features)
    # classify_file gives what the trained model predicted in its test stage
    predicted = {row["ID"]: row["predicted"] for row in csv.DictReader(open(std_run / "predictions_test.csv"))}
    assert len(predicted) == results["n_test"]
    for row in list(csv.DictReader(open(std_run / "save" / "test.csv")))[:4]:
        path = row["wav"].replace("$data_root", str(corpus))
        assert spk.classify_file(path)[3][0] == predicted[row["ID"]], row["ID"]


@needs_espeak
@pytest.mark.parametrize("mode", ["unguided", "target", "trajectory", "waypoint", "hybrid"])
def test_each_mode_trains_a_few_steps(mode, corpus, tiny_whisper_source, std_run, tmp_path):
    out = tmp_path / mode
    extra = [] if mode in ("unguided", "trajectory") else ["--std_folder", std_run]
    train([f"hparams/{mode}.yaml", "--output_folder", out, *extra, *tiny_args(tiny_whisper_source, corpus)])
    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == mode and results["optimizer_steps"] > 0
    assert 0 <= results["test"]["ACC"] <= 1
    log = (out / "train_log.txt").read_text()
    assert ("loss_layer" in log) == (mode != "unguided")


@needs_espeak
def test_attentive_pooling_and_refused_teacher_cache(corpus, tiny_whisper_source, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier

    from cald_brain.inference import package_model

    out = tmp_path / "att"
    train(["hparams/unguided.yaml", "--output_folder", out, *tiny_args(tiny_whisper_source, corpus),
           "--pooling", "attentive", "--attention_channels", "8"])
    spk = EncoderClassifier.from_hparams(source=package_model(str(out), str(tmp_path / "pkg")),
                                         savedir=str(tmp_path / "pkg.loaded"))
    assert spk.mods.classifier.model.pooling == "attentive"
    assert spk.encode_batch(torch.randn(1, 16000)).shape[-1] == 2 * 32  # mean and deviation

    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "recipes/VoxCeleb/train.py", "hparams/unguided.yaml", "--output_folder", str(tmp_path / "c"),
         *tiny_args(tiny_whisper_source, corpus, "--cache_teacher", "True")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "each epoch reads another window" in proc.stdout + proc.stderr, proc.stderr[-2000:]
