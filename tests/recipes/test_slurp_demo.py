"""Tests of the SLURP demo: source pretraining, results table and plot.

The source test pretrains a tiny Wav2Vec2 for a few CTC steps on the
committed mini corpus and reloads it as the recipe does (offline
``from_pretrained`` of a folder). The table/plot test works on fabricated
``results.json`` files and needs no training. The end-to-end run of the
whole demo (every mode through ``train.py``) is marked slow.

Authors
 * cald-brain developers 2026
"""

import doctest
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SLURP"
MINI = RECIPE / "mini_slurp"

if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import pretrain_source  # noqa: E402


def _load_demo():
    # Imported under a unique name: ``demo`` would be ambiguous.
    spec = importlib.util.spec_from_file_location("slurp_demo", RECIPE / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slurp_demo = _load_demo()

TINY_SOURCE = dict(hidden=32, layers=1, heads=2, conv_dim=16)


def test_doctests_of_the_scripts():
    for module in (pretrain_source, slurp_demo):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0, module.__name__


def test_pretrain_source_saves_a_loadable_model(tmp_path):
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2ForCTC, Wav2Vec2Model

    out = tmp_path / "source"
    summary = pretrain_source.pretrain_source(
        str(MINI), str(out), steps=3, seed=7, batch_size=4, progress=False, **TINY_SOURCE
    )
    assert summary["steps"] == 3
    assert math.isfinite(summary["devel_ctc_loss"]) and 0.0 <= summary["devel_cer"]

    vocab = json.loads((out / "vocab.json").read_text())
    assert vocab["<pad>"] == 0 and vocab["|"] == 1 and "<unk>" in vocab
    assert {"a", "e", "t"} <= set(vocab)

    model = Wav2Vec2ForCTC.from_pretrained(str(out))
    config = model.config
    assert config.vocab_size == len(vocab) and config.pad_token_id == 0
    assert config.do_stable_layer_norm and config.feat_extract_norm == "layer"
    assert math.prod(config.conv_stride) == 320  # 50 frames per second, as lv60
    assert config.hidden_size == TINY_SOURCE["hidden"]
    # The recipe loads the encoder alone from the same folder.
    encoder = Wav2Vec2Model.from_pretrained(str(out))
    assert encoder.config.num_hidden_layers == TINY_SOURCE["layers"]
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(str(out))
    assert tokenizer.pad_token_id == 0
    assert json.loads((out / "pretrain_summary.json").read_text())["seed"] == 7


def test_pretrain_source_is_deterministic(tmp_path):
    import torch
    from transformers import Wav2Vec2ForCTC

    states = []
    for name in ("a", "b"):
        pretrain_source.pretrain_source(
            str(MINI), str(tmp_path / name), steps=2, seed=3, batch_size=4, progress=False,
            manifest_folder=str(tmp_path / "manifests"), **TINY_SOURCE
        )
        states.append(Wav2Vec2ForCTC.from_pretrained(str(tmp_path / name)).state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _fake_run(out, mode, intent, scenario, action, params, train_time):
    folder = Path(out) / mode
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(
        json.dumps(
            {
                "mode": mode,
                "test": {
                    "intent_acc": intent,
                    "scenario_acc": scenario,
                    "action_acc": action,
                    "mean_scenario_action_acc": (scenario + action) / 2,
                    "loss": 1.0,
                },
                "params": params,
                "train_time_s": train_time,
            }
        )
    )


def test_table_and_plot_from_fabricated_results(tmp_path, capsys):
    out = tmp_path / "demo"
    _fake_run(out, "std", 0.80, 0.90, 0.85, 1000, 30.0)
    _fake_run(out, "unguided", 0.40, 0.50, 0.45, 1200, 20.0)
    _fake_run(out, "target", 0.70, 0.80, 0.75, 1200, 25.0)
    _fake_run(out, "hybrid", 0.75, 0.85, 0.80, 1200, 26.0)
    (out / "waypoint").mkdir()
    (out / "waypoint" / "results.json").write_text("{not json")  # a crashed run
    # trajectory: no folder at all

    results = slurp_demo.load_results(str(out))
    assert results["waypoint"] is None and results["trajectory"] is None
    assert results["std"]["intent_acc"] == pytest.approx(0.80)
    assert results["hybrid"]["mean_scenario_action_acc"] == pytest.approx(0.825)

    timing = {
        "short_s": 1.5,
        "long_s": 120.0,
        "ms": {
            "std": {"short": 10.0, "long": 400.0},
            "unguided": {"short": 12.0, "long": 100.0},
            "target": {"short": 12.0, "long": 100.0},
            "hybrid": {"short": 12.0, "long": 80.0},
        },
        "curve": {
            "seconds": [2, 60, 120],
            "teacher": [10.0, 150.0, 400.0],
            "student": [12.0, 50.0, 80.0],
            "student_mode": "hybrid",
        },
    }
    rep = slurp_demo.report(str(out), results, timing, notes={"std": "checkpoint"}, stage_times={"std": 31.0}, total_s=95.0)
    rows = {r["mode"]: r for r in rep["rows"]}
    assert [r["mode"] for r in rep["rows"]] == list(slurp_demo.MODES)
    assert rows["hybrid"]["speedup_long"] == pytest.approx(5.0)
    assert rows["std"]["speedup_short"] == pytest.approx(1.0)
    assert rows["waypoint"]["missing"] and math.isnan(rows["waypoint"]["intent_acc"])

    table = rep["table"]
    for text in ("intent acc", "scen/act", "params", "ms @ 120 s", "80 (5.00x)", "1,200", "no results"):
        assert text in table, text
    printed = capsys.readouterr().out
    assert "91.70" in printed and "91.23" in printed
    assert "demonstrate the pipeline" in printed
    assert "82.5 %" in printed  # hybrid scen/act mean beside the paper's number

    png = Path(rep["plot"])
    assert png.name == "demo_results.png" and png.stat().st_size > 10_000
    summary = json.loads(Path(rep["json"]).read_text())
    assert summary["total_s"] == 95.0 and len(summary["rows"]) == 6


def test_table_without_timing(tmp_path):
    out = tmp_path / "demo"
    _fake_run(out, "std", 0.5, 0.5, 0.5, 10, 1.0)
    rows = slurp_demo.build_rows(slurp_demo.load_results(str(out), ["std"]))
    table = slurp_demo.format_table(rows)
    assert "n/a" in table and "50.0" in table
    assert Path(slurp_demo.plot_results(rows, None, str(out / "p.png"))).is_file()


def test_mode_overrides():
    args = slurp_demo.parse_args(["--out", "/x", "--epochs", "3", "--batch_size", "8"])
    std = slurp_demo.mode_overrides("std", args, 14)
    assert "--mixer_kwargs" not in std and "--waypoint_interval" in std
    hybrid = slurp_demo.mode_overrides("hybrid", args, 14)
    assert hybrid[hybrid.index("--std_folder") + 1] == os.path.join("/x", "std")
    assert int(hybrid[hybrid.index("--distill_until") + 1]) == 14  # a third of 42 steps
    assert json.loads(hybrid[hybrid.index("--mixer_kwargs") + 1])["expand"] == 1
    assert "--std_folder" not in slurp_demo.mode_overrides("unguided", args, 14)


def test_failed_stage_names_stage_and_log(tmp_path):
    stages = slurp_demo.Stages(["broken"], str(tmp_path / "logs"))
    script = tmp_path / "fail.py"
    script.write_text("import sys\nprint('something went wrong')\nsys.exit(3)\n")
    with pytest.raises(slurp_demo.StageError) as err:
        stages.run_python("broken", "a failing stage", str(script), [])
    message = str(err.value)
    assert "'broken'" in message and "exit status 3" in message
    log = tmp_path / "logs" / "broken.log"
    assert str(log) in message and "something went wrong" in log.read_text()


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The whole demo at toy sizes: every mode through train.py (minutes)."""
    if not (RECIPE / "train.py").is_file():
        pytest.skip("recipes/SLURP/train.py is not there")
    out = tmp_path / "demo"
    rep = slurp_demo.main(
        [
            "--out", str(out),
            "--pretrain_steps", "5",
            "--epochs", "1",
            "--hidden", "32", "--heads", "2", "--layers", "1", "--conv_dim", "16",
            "--headdim", "16", "--d_state", "8", "--chunk_size", "32",
            "--curve_seconds", "2", "4", "--long_seconds", "4", "--repeats", "1",
        ]
    )
    rows = {r["mode"]: r for r in rep["rows"]}
    assert set(rows) == set(slurp_demo.MODES)
    for mode, row in rows.items():
        assert not row["missing"], mode
        assert 0.0 <= row["intent_acc"] <= 1.0
        assert row["ms_long"] > 0
        assert (out / mode / "results.json").is_file()
    assert rows["unguided"]["params"] != rows["std"]["params"]  # BiMamba2 replaced attention
    assert (out / "std" / "waypoints").is_dir()
    assert (out / "demo_results.png").is_file()
