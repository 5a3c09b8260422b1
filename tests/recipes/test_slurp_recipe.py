"""Smoke tests of the SLURP recipe: every mode on the mini corpus, bad input, resume.

Each mode runs ``python recipes/SLURP/train.py hparams/<mode>.yaml`` from the
repository root (the hparams path is resolved from the recipe folder) for one
epoch of the mini corpus with a tiny random Wav2Vec2.

Authors
 * cald-brain developers 2026
"""

import json
import shutil
import sys

import pytest
import torch

from cald_brain.dataio import read_audio
from conftest import MINI, RECIPE, run_recipe, tiny_overrides

if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))


def check_results(folder, mode):
    results = json.loads((folder / "results.json").read_text())
    assert results["mode"] == mode
    for key in ("ACC", "scenario_acc", "action_acc", "mean_scenario_action_acc"):
        assert 0.0 <= results["test"][key] <= 1.0
    mean = (results["test"]["scenario_acc"] + results["test"]["action_acc"]) / 2
    assert results["test"]["mean_scenario_action_acc"] == pytest.approx(mean)
    assert results["test"]["loss"] > 0 and results["params"] > 0
    assert results["train_time_s"] > 0 and results["optimizer_steps"] > 0
    assert (folder / "save" / "label_encoder.txt").is_file()
    assert (folder / "hyperparams.yaml").is_file()
    return results


def test_std_saves_waypoints(std_run):
    check_results(std_run, "std")
    assert (std_run / "waypoints" / "waypoints.json").is_file()
    saved = (std_run / "hyperparams.yaml").read_text()
    assert "\nbase_hparams:" not in saved and "waypoint_saver" in saved


@pytest.mark.parametrize("mode", ["unguided", "target", "trajectory", "waypoint", "hybrid"])
def test_mode_runs(mode, std_run, tiny_source, tmp_path):
    out = tmp_path / mode
    args = [f"hparams/{mode}.yaml", "--output_folder", out, *tiny_overrides(tiny_source)]
    if mode in ("target", "waypoint", "hybrid"):
        args += ["--std_folder", std_run]
    results = check_results(out, mode) if run_recipe(args) else None
    train_log = (out / "train_log.txt").read_text()
    assert ("loss_layer" in train_log) == (mode != "unguided")
    std_params = json.loads((std_run / "results.json").read_text())["params"]
    assert results["params"] != std_params  # converted to BiMamba2


def test_mixer_starts_and_dynamic_batching(std_run, tiny_source, tmp_path):
    """Attention transfer then target guidance, with the teacher cache and
    dynamic batches: the stage runs, its steps count, the run finishes."""
    out = tmp_path / "target_transfer"
    args = ["hparams/target.yaml", "--output_folder", out, *tiny_overrides(tiny_source),
            "--std_folder", std_run, "--mixer_init", "attention_transfer", "--transfer_steps", "3",
            "--cache_teacher", "True", "--dynamic_batching", "True", "--max_batch_length", "30",
            "--lr_scales", json.dumps({r"\.mixer\.": 10})]
    results = check_results(out, "target") if run_recipe(args) else None
    assert results["optimizer_steps"] > 3
    log = (out / "train_log.txt").read_text()
    assert "loss_transfer" in log and "loss_layer" in log  # transfer stage, then guidance


def test_runs_from_recipe_folder(tiny_source, tmp_path):
    out = tmp_path / "from_recipe"
    run_recipe(["hparams/unguided.yaml", "--output_folder", out, *tiny_overrides(tiny_source)],
               cwd=RECIPE)
    check_results(out, "unguided")


def test_missing_hparams_file_names_paths(tmp_path):
    proc = run_recipe(["hparams/nope.yaml"], check=False)
    assert proc.returncode != 0
    assert "recipes/SLURP/hparams/nope.yaml" in proc.stderr


def test_interrupted_run_resumes(tiny_source, tmp_path):
    """A run stopped after epoch 1 goes on from its checkpoint."""
    out = tmp_path / "resume"
    args = ["hparams/unguided.yaml", "--output_folder", out, *tiny_overrides(tiny_source)]
    run_recipe(args)
    first = json.loads((out / "results.json").read_text())["optimizer_steps"]
    args[args.index("--number_of_epochs") + 1] = "2"
    proc = run_recipe(args)
    assert "Loading a checkpoint" in proc.stderr + proc.stdout
    results = json.loads((out / "results.json").read_text())
    second = results["optimizer_steps"]
    assert second == 2 * first  # epoch 1 was not redone
    # The validation curve of both epochs, across the restart (whichever was best).
    assert [point["epoch"] for point in results["curve"]] == [1, 2]
    assert results["curve"][1]["step"] == second
    log = (out / "train_log.txt").read_text()
    assert log.count("epoch: 1,") == 1 and log.count("epoch: 2,") == 1


def test_unseen_dev_intent_is_reported(tiny_source, tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(MINI, corpus)
    devel = corpus / "dataset" / "slurp" / "devel.jsonl"
    lines = devel.read_text().splitlines()
    entry = json.loads(lines[0])
    entry.update(intent="music_likeness", scenario="music", action="likeness")
    devel.write_text("\n".join([json.dumps(entry)] + lines[1:]) + "\n")
    args = ["hparams/std.yaml", "--output_folder", tmp_path / "out",
            *tiny_overrides(tiny_source, data_folder=corpus)]
    proc = run_recipe(args, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr  # SpeechBrain logs the error to stdout
    assert "music_likeness x2" in output and "devel.csv" in output
    assert "--unseen_intents skip" in output
    assert not (tmp_path / "out" / "waypoints").exists()  # stopped before training


def test_missing_and_unreadable_audio_name_the_file(tmp_path):
    import train

    missing = tmp_path / "gone.flac"
    with pytest.raises(FileNotFoundError, match="gone.flac"):
        read_audio(str(missing), 16000)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"not audio at all")
    with pytest.raises(RuntimeError, match="bad.flac"):
        read_audio(str(bad), 16000)


def test_other_sample_rate_is_resampled(tmp_path):
    import soundfile as sf
    import train

    n = 8000  # one second at 8 kHz
    tone = torch.sin(torch.arange(n) / 8000 * 2 * torch.pi * 440).numpy()
    path = tmp_path / "tone8k.wav"
    sf.write(path, tone, 8000)
    sig = read_audio(str(path), 16000)
    assert sig.dim() == 1 and abs(sig.shape[0] - 16000) <= 2
