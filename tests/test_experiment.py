"""Tests of the shared experiment runner (:mod:`cald_brain.experiment`).

A fake recipe ``train.py``, written into ``tmp_path``, stands in for real
training: it parses the options the runner gives, records each call in a
file, prints noise on stdout and stderr, and writes a ``results.json``. The
report tests work on fabricated results.

Authors
 * cald-brain developers 2026
"""

import json
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from cald_brain.experiment import (
    Column,
    Experiment,
    Run,
    StageError,
    format_markdown_table,
    rows_from_results,
    time_inference,
    wilson_interval,
    write_report,
)

REPO = Path(__file__).resolve().parents[1]
MODES = ("std", "unguided", "target", "trajectory", "waypoint", "hybrid")

FAKE_TRAIN = r'''
import json, os, sys

hparams, rest = sys.argv[1], sys.argv[2:]
opts = {}
for i, arg in enumerate(rest):
    if arg.startswith("--"):
        opts[arg[2:]] = rest[i + 1] if i + 1 < len(rest) and not rest[i + 1].startswith("--") else True
mode = os.path.basename(hparams)[: -len(".yaml")]
out = opts["output_folder"]
with open(os.environ["FAKE_CALLS"], "a") as log:
    log.write(json.dumps({
        "mode": mode, "output_folder": out, "std_folder": opts.get("std_folder"), "argv": sys.argv[1:],
        "cwd": os.getcwd(), "pythonpath": os.environ.get("PYTHONPATH", ""),
    }) + "\n")
for i in range(50):
    print("SUBPROCESS STDOUT NOISE", i)
print("SUBPROCESS STDERR NOISE", file=sys.stderr)
if mode in NEEDS:
    assert os.path.isfile(os.path.join(opts["std_folder"], "results.json")), "std must run first"
os.makedirs(out, exist_ok=True)
acc = float(opts.get("acc", 0.835))
results = {
    "mode": mode, "test": {"ACC": acc, "loss": 0.5}, "n_test": 200, "params": 1000 + len(mode),
    "train_time_s": 1.5, "optimizer_steps": 10,
    "curve": [{"step": s, "valid": {"ACC": acc * s / 20}} for s in (5, 10, 20)],
}
with open(os.path.join(out, "results.json"), "w") as fout:
    json.dump(results, fout)
'''.replace("NEEDS", repr(("target", "waypoint", "hybrid")))

FAILING_TRAIN = r'''
import sys
for i in range(40):
    print("progress line", i)
print("fatal: the fake recipe broke", file=sys.stderr)
sys.exit(3)
'''


@pytest.fixture
def recipe(tmp_path):
    """A fake recipe: train scripts, a hparams folder with every mode file, a calls log."""
    hparams = tmp_path / "hparams"
    hparams.mkdir()
    for mode in MODES:
        (hparams / f"{mode}.yaml").write_text(f"mode: {mode}\n")
    train = tmp_path / "train.py"
    train.write_text(FAKE_TRAIN)
    failing = tmp_path / "train_fail.py"
    failing.write_text(FAILING_TRAIN)
    calls = tmp_path / "calls.jsonl"

    class Recipe:
        out = tmp_path / "out"

        def __init__(self):
            self.train, self.failing, self.hparams, self.calls = train, failing, hparams, calls

        def experiment(self, runs, script=None, **kwargs):
            lines = kwargs.pop("lines", [])
            return Experiment(
                "fake", str(script or train), str(hparams), str(self.out), runs,
                env={"FAKE_CALLS": str(calls)}, console=lines.append, **kwargs
            ), lines

        def invocations(self):
            if not calls.exists():
                return []
            return [json.loads(line) for line in calls.read_text().splitlines()]

    return Recipe()


def all_runs():
    return [Run(mode, mode) for mode in MODES]


STAGE_LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+) \.+ (running|done|reused|FAILED|refused)")


def parse_lines(lines):
    parsed = []
    for line in lines:
        match = STAGE_LINE.match(line)
        assert match, f"not a stage line: {line!r}"
        parsed.append((int(match.group(1)), int(match.group(2)), match.group(3), match.group(4)))
    return parsed


def test_stages_run_in_order_with_std_folder_and_logs(recipe, capsys):
    exp, lines = recipe.experiment(
        all_runs(), plan=["prepare", "evaluate"], common_args=["--seed", 7],
        headline=("test", "ACC"), headline_label="acc", headline_format="percent",
    )
    assert exp.stage("prepare", lambda x: x * 2, 21) == 42
    results = exp.train_all()
    exp.stage("evaluate", lambda: None)

    # Subprocesses: in order, from the repository root, the repository importable.
    calls = recipe.invocations()
    assert [c["mode"] for c in calls] == list(MODES)
    for call in calls:
        assert call["output_folder"] == str(recipe.out / call["mode"])
        expected_std = str(recipe.out / "std") if call["mode"] in ("target", "waypoint", "hybrid") else None
        assert call["std_folder"] == expected_std, call["mode"]
        assert Path(call["cwd"]).resolve() == REPO
        assert Path(call["pythonpath"].split(os.pathsep)[0]).resolve() == REPO
        assert call["argv"][0] == str(recipe.hparams / f"{call['mode']}.yaml")
        assert call["argv"][call["argv"].index("--seed") + 1] == "7"
    assert results["hybrid"]["test"]["ACC"] == pytest.approx(0.835)

    # Logs: the whole output of each run, with its command line.
    for mode in MODES:
        log = (recipe.out / "logs" / f"{mode}.log").read_text()
        assert "SUBPROCESS STDOUT NOISE 49" in log and "SUBPROCESS STDERR NOISE" in log
        assert str(recipe.train) in log

    # Console: a start and a done line per stage, numbered, nothing of the subprocesses.
    parsed = parse_lines(lines)
    names = ["prepare", *MODES, "evaluate"]
    assert [p[2] for p in parsed if p[3] == "done"] == names
    assert [p[2] for p in parsed if p[3] == "running"] == names
    assert all(total == len(names) for _, total, _, _ in parsed)
    assert [p[0] for p in parsed if p[3] == "done"] == list(range(1, len(names) + 1))
    done_std = next(line for line in lines if line.startswith("[2/8] std") and " done " in line)
    assert done_std.endswith("acc 83.5 %")
    captured = capsys.readouterr()
    assert "NOISE" not in captured.out + captured.err + "\n".join(lines)
    assert set(exp.stage_times) == set(names) and exp.total_time >= sum(exp.stage_times.values())


def test_run_args_replace_common_args(recipe):
    runs = [Run("std", "std"), Run("target+transfer", "target", ["--acc", 0.5, "--seed", 9])]
    exp, _ = recipe.experiment(runs, common_args=["--seed", 7, "--acc", 0.9])
    results = exp.train_all()
    call = recipe.invocations()[1]
    assert call["output_folder"] == str(recipe.out / "target+transfer")
    assert call["std_folder"] == str(recipe.out / "std")
    argv = call["argv"]
    # Each option once (SpeechBrain refuses repeats); the run's own values win.
    assert argv.count("--seed") == 1 and argv.count("--acc") == 1
    assert argv[argv.index("--seed") + 1] == "9" and argv[argv.index("--acc") + 1] == "0.5"
    assert results["target+transfer"]["test"]["ACC"] == pytest.approx(0.5)
    assert results["std"]["test"]["ACC"] == pytest.approx(0.9)


def test_needs_std_overrides_the_default(recipe):
    runs = [
        Run("std", "std"),
        Run("trajectory", "trajectory", needs_std=True),
        Run("hybrid", "hybrid", needs_std=False),
    ]
    exp, _ = recipe.experiment(runs)
    assert exp.command(runs[1])[-2:] == ["--std_folder", str(recipe.out / "std")]
    assert "--std_folder" not in exp.command(runs[2])
    # An explicit --std_folder is not doubled.
    own = Run("target", "target", ["--std_folder", "/elsewhere"])
    assert exp.command(own).count("--std_folder") == 1


def test_resume_reuses_finished_runs(recipe):
    exp, _ = recipe.experiment(all_runs())
    exp.train_all()
    assert len(recipe.invocations()) == len(MODES)

    # A run whose results.json is incomplete (no test entry) is trained again.
    (recipe.out / "waypoint" / "results.json").write_text(json.dumps({"mode": "waypoint"}))
    exp, lines = recipe.experiment(all_runs(), headline=Column("test.ACC", "acc", "percent"))
    results = exp.train_all()
    assert [c["mode"] for c in recipe.invocations()[len(MODES):]] == ["waypoint"]
    statuses = {name: status for _, _, name, status in parse_lines(lines) if status != "running"}
    assert statuses == {mode: "done" if mode == "waypoint" else "reused" for mode in MODES}
    assert all(results[mode]["test"]["ACC"] == pytest.approx(0.835) for mode in MODES)
    assert exp.stage_times["std"] == 0.0
    assert "reused (trained in 0:02), acc 83.5 %" in next(line for line in lines if line.startswith("[1/6] std"))

    # resume=False trains everything again.
    exp, _ = recipe.experiment(all_runs(), resume=False)
    exp.train_all()
    assert len(recipe.invocations()) == 2 * len(MODES) + 1


def test_failing_run_names_run_status_and_log(recipe):
    exp, lines = recipe.experiment([Run("target", "target")], script=recipe.failing)
    (recipe.out / "std").mkdir(parents=True)
    (recipe.out / "std" / "results.json").write_text(json.dumps({"test": {"ACC": 0.9}}))
    with pytest.raises(StageError) as info:
        exp.train_all()
    err = info.value
    message = str(err)
    log = recipe.out / "logs" / "target.log"
    assert "'target'" in message and "status 3" in message and str(log) in message
    assert "fatal: the fake recipe broke" in message and "progress line 39" in message
    assert "progress line 10" not in message  # only the end of the log
    assert err.returncode == 3 and err.stage == "target" and err.log_path == str(log)
    assert "progress line 0" in log.read_text()
    assert lines[-1].startswith("[1/1] target ") and "FAILED" in lines[-1] and "exit status 3" in lines[-1]


def test_run_without_results_is_an_error(recipe, tmp_path):
    script = tmp_path / "silent.py"
    script.write_text("print('trained, but forgot the results')\n")
    exp, _ = recipe.experiment([Run("unguided", "unguided")], script=script)
    with pytest.raises(StageError, match="no complete .*results.json"):
        exp.train_all()


def test_std_dependent_run_is_refused_without_std(recipe):
    exp, lines = recipe.experiment([Run("hybrid", "hybrid")])
    with pytest.raises(StageError, match="needs the std run") as info:
        exp.train_all()
    assert "Run('std', 'std')" in str(info.value)
    assert recipe.invocations() == []  # nothing was started
    assert "refused" in lines[-1]

    # Finished std results in <out>/std are enough.
    (recipe.out / "std").mkdir(parents=True)
    (recipe.out / "std" / "results.json").write_text(json.dumps({"test": {"ACC": 0.9}, "n_test": 10}))
    exp, _ = recipe.experiment([Run("hybrid", "hybrid")])
    assert exp.train_all()["hybrid"]["test"]["ACC"] == pytest.approx(0.835)


def test_runs_are_checked_up_front(recipe):
    with pytest.raises(ValueError, match="after it"):
        recipe.experiment([Run("target", "target"), Run("std", "std")])
    with pytest.raises(ValueError, match="unique"):
        recipe.experiment([Run("std", "std"), Run("std", "std")])
    with pytest.raises(ValueError):
        Run("logs", "std")
    with pytest.raises(ValueError):
        Run("a/b", "std")
    with pytest.raises(TypeError):
        Run("std", "std", "--seed 3")
    exp, _ = recipe.experiment([Run("x", "nomode")])
    with pytest.raises(StageError, match="nomode.yaml"):
        exp.train_all()


def test_in_process_stage_errors_and_output(recipe, capsys):
    exp, lines = recipe.experiment([])

    def noisy():
        print("IN-PROCESS PRINT")
        logging.getLogger("some.recipe").info("IN-PROCESS INFO")
        return 5

    assert exp.stage("noisy", noisy) == 5
    captured = capsys.readouterr()
    assert "IN-PROCESS" not in captured.out + captured.err
    log = (recipe.out / "logs" / "noisy.log").read_text()
    assert "IN-PROCESS PRINT" in log and "IN-PROCESS INFO" in log

    def broken():
        raise ValueError("bad manifest line 3")

    with pytest.raises(StageError, match="Stage 'broken' failed: ValueError: bad manifest line 3") as info:
        exp.stage("broken", broken)
    assert isinstance(info.value.__cause__, ValueError)
    assert str(recipe.out / "logs" / "broken.log") in str(info.value)
    assert "Traceback" in (recipe.out / "logs" / "broken.log").read_text()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert [p[2:] for p in parse_lines(lines)] == [
        ("noisy", "running"), ("noisy", "done"), ("broken", "running"), ("broken", "FAILED")
    ]


def test_results_are_read_defensively(recipe, caplog):
    runs = [Run("std", "std"), Run("unguided", "unguided"), Run("target", "target"), Run("hybrid", "hybrid")]
    exp, _ = recipe.experiment(runs)
    exp.train(runs[0])
    (recipe.out / "unguided").mkdir()
    (recipe.out / "unguided" / "results.json").write_text("{not json")
    (recipe.out / "target").mkdir()
    (recipe.out / "target" / "results.json").write_text("[1, 2]")
    with caplog.at_level(logging.WARNING):
        results = exp.results()
    assert list(results) == ["std", "unguided", "target", "hybrid"]
    assert results["std"]["test"]["ACC"] == pytest.approx(0.835)
    assert results["unguided"] is None and results["target"] is None and results["hybrid"] is None
    warned = caplog.text
    assert all(name in warned for name in ("unguided", "target", "hybrid"))


def fabricated_results():
    def result(acc, n, params, curve=True):
        out = {"mode": "x", "test": {"ACC": acc, "loss": 0.4}, "n_test": n, "params": params,
               "train_time_s": 754.0, "optimizer_steps": 400}
        if curve:
            out["curve"] = [{"epoch": 1, "step": 100, "valid": {"ACC": acc - 0.2}},
                            {"epoch": 2, "step": 200, "valid": {"ACC": acc}}]
        return out

    return {
        "std": result(0.835, 200, 1_234_567),
        "target": result(0.5, 10, 1_500_000, curve=False),
        "hybrid": result(0.8, 200, 1_500_000),
        "waypoint": None,
    }


COLUMNS = [
    Column("run", "run"),
    Column("test.ACC", "acc % (95 % CI)", "percent", n_key="n_test"),
    ("params", "params", "int"),
    Column("train_time_s", "train", "seconds"),
    Column("test.loss", "loss", "float"),
]

TIMING = {
    "lengths": [2, 20, 200], "unit": "s", "reference": "teacher", "repeats": 3, "device": "cpu", "threads": 2,
    "ms": {"teacher": [10.0, 150.0, 4000.0], "student": [12.0, 60.0, 800.0]},
}


def test_write_report_writes_table_json_and_plot(tmp_path):
    results = fabricated_results()
    rows = rows_from_results(results, extra={"std": {"model": "transformer"}})
    rep = write_report(
        str(tmp_path), rows, COLUMNS, title="Fake report",
        paper_rows=[{"run": "std (paper)", "acc %": "91.70"}, {"run": "hybrid (paper)", "acc %": "91.23"}],
        notes=["Numbers from fabricated results."], timing=TIMING,
        curves={name: (r or {}).get("curve") for name, r in results.items()},
        stage_times={"prepare": 3.0, "std": 754.0}, total_s=800.0,
    )
    table = rep["table"]
    assert "83.5 (77.7-88.0)" in table  # 167 / 200 with its Wilson interval
    assert "50.0 (23.7-76.3)" in table  # 5 / 10
    assert "1,234,567" in table and "12:34" in table and "0.4" in table
    assert "waypoint (no results)" in table and table.count("n/a") == 4
    assert table.splitlines()[0].startswith("| run ")

    md = Path(rep["md"]).read_text()
    assert md.startswith("# Fake report")
    assert table in md
    for text in ("## Paper", "91.70", "91.23", "## Inference time", "ms @ 200 s", "800 (5.0x)",
                 "4000 (1.0x)", "over teacher", "Numbers from fabricated results.", "## Stage times", "13:20",
                 "Wilson"):
        assert text in md, text
    assert "5.0x" in rep["timing_table"]

    summary = json.loads(Path(rep["json"]).read_text())
    assert summary["title"] == "Fake report" and len(summary["rows"]) == 4
    std = summary["rows"][0]
    assert std["test.ACC"] == pytest.approx(0.835) and std["model"] == "transformer"
    assert std["ci95"]["test.ACC"] == pytest.approx([0.7773, 0.8800], abs=1e-4)
    assert summary["timing"]["ms"]["student"][-1] == 800.0 and summary["total_s"] == 800.0

    png = Path(rep["png"])
    assert png.name == "results.png" and png.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_with_little_to_show(tmp_path):
    rows = rows_from_results({"std": None, "hybrid": {"test": {}, "curve": "garbage"}})
    rep = write_report(str(tmp_path), rows, COLUMNS, curves={"hybrid": "garbage", "std": [{"valid": None}]})
    assert "std (no results)" in rep["table"] and rep["timing_table"] is None
    assert Path(rep["png"]).stat().st_size > 0
    assert json.loads(Path(rep["json"]).read_text())["rows"][0]["missing"] is True


def test_experiment_report_shows_the_table(recipe):
    exp, lines = recipe.experiment([Run("std", "std"), Run("hybrid", "hybrid")], plan=["evaluate"])
    exp.train_all()
    rep = exp.report(rows_from_results(exp.results()), COLUMNS, timing=TIMING)
    assert rep["table"] in lines and rep["timing_table"] in lines
    assert "83.5 (77.7-88.0)" in rep["table"]
    assert Path(rep["md"]).read_text().startswith("# fake")
    assert "## Stage times" in Path(rep["md"]).read_text()
    assert any(line.startswith("\nreport: ") for line in lines)


def test_column_specs():
    assert Column.of("run").header == "run"
    assert Column.of(("test.WER", "WER", "float")).cell({"test": {"WER": 12.3456}}) == "12.35"
    no_n = Column("test.ACC", format="percent", n_key="n")
    assert no_n.cell({"test.ACC": 0.5}) == "50.0"  # no trial count: no interval
    assert Column("test.ACC", format="percent").cell({"test.ACC": "oops"}) == "oops"
    with pytest.raises(ValueError):
        Column("x", format="percentage")
    with pytest.raises(ValueError):
        Column("x", format="int", n_key="n")


def test_format_markdown_table_escapes_and_aligns():
    text = format_markdown_table(["a", "b"], [["x|y", "1.5"], ["z", "-2"]])
    lines = text.splitlines()
    assert lines[0] == "| a    |   b |"
    assert lines[1] == "|:-----|----:|"
    assert lines[2] == "| x\\|y | 1.5 |"
    assert len({len(line) for line in lines}) == 1


class Quadratic(torch.nn.Module):
    """Attention-like cost: a [T, T] product."""

    def forward(self, x):
        return (x @ x.transpose(-1, -2)).softmax(-1) @ x


def test_time_inference_times_every_model_and_length():
    models = {"quadratic": Quadratic().eval(), "linear": torch.nn.Linear(16, 16).eval()}
    lengths = [8, 64, 256]
    seen = []

    def make_input(length):
        seen.append(length)
        return torch.randn(1, length, 16)  # a single tensor is wrapped in a tuple

    timing = time_inference(models, make_input, lengths, repeats=2, warmup=1, unit="frames")
    assert seen == lengths  # one input per length, shared by the models
    assert timing["lengths"] == lengths and timing["unit"] == "frames" and timing["reference"] == "quadratic"
    assert set(timing["ms"]) == set(models)
    for values in timing["ms"].values():
        assert len(values) == len(lengths) and all(v > 0 for v in values)
    assert timing["device"] == "cpu" and "peak_mib" not in timing
    with pytest.raises(ValueError):
        time_inference(models, make_input, lengths, reference="other")
    with pytest.raises(ValueError):
        time_inference(models, make_input, lengths, repeats=0)


def test_wilson_interval_values():
    low, high = wilson_interval(167, 200)
    assert low == pytest.approx(0.77727, abs=1e-4) and high == pytest.approx(0.88002, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    low, high = wilson_interval(3, 40)
    mirror = wilson_interval(37, 40)
    assert low == pytest.approx(1 - mirror[1]) and high == pytest.approx(1 - mirror[0])
    assert wilson_interval(0, 0) == (0.0, 1.0)
    narrower = wilson_interval(50, 100, z=1.0)
    assert narrower[0] > wilson_interval(50, 100)[0]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_terminal_gets_one_line_per_stage_updated_in_place(recipe, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    exp = Experiment("fake", str(recipe.train), str(recipe.hparams), str(recipe.out), [Run("std", "std")],
                     env={"FAKE_CALLS": str(recipe.calls)})  # the default console
    exp.stage("prepare", lambda: None)
    exp.train_all()
    monkeypatch.undo()
    text = terminal.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3  # two stages, two finished lines
    assert lines[0].startswith("\r\033[K[1/2] prepare") and lines[0].endswith("done in 0:00")
    assert "running" in lines[1] and lines[1].rsplit("\r\033[K", 1)[1].startswith("[2/2] std ")
    assert "NOISE" not in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_time_inference_on_cuda_records_peak_memory():
    models = {"quadratic": Quadratic().cuda().eval(), "linear": torch.nn.Linear(16, 16).cuda().eval()}
    timing = time_inference(models, lambda n: torch.randn(1, n, 16, device="cuda"), [64, 1024], repeats=2)
    assert timing["device"].startswith("cuda")
    assert all(v > 0 for values in timing["ms"].values() for v in values)
    quadratic, linear = timing["peak_mib"]["quadratic"], timing["peak_mib"]["linear"]
    assert quadratic[-1] > linear[-1] >= 0  # a 1024 x 1024 score matrix vs none


def test_batches_per_epoch_counts_dynamic_batches(tmp_path):
    from cald_brain.experiment import batches_per_epoch

    manifest = tmp_path / "train.csv"
    rows = "".join(f"u{i},{1 + i % 3}.0,$data_root/u{i}.flac\n" for i in range(30))
    manifest.write_text("ID,duration,wav\n" + rows)  # 60 s of audio
    assert 6 <= batches_per_epoch(str(manifest), 10, 3, 1986) <= 30  # >= 60 s / 10 s
    assert batches_per_epoch(str(manifest), 100, 3, 1986) < batches_per_epoch(str(manifest), 10, 3, 1986)


def test_mode_runs_put_std_first_and_give_each_start_its_options():
    from cald_brain.experiment import mode_runs, student_run_names

    runs = mode_runs(student_run_names(), {"d_state": 8}, 40, std_args=["--number_of_epochs", 2])
    assert [r.name for r in runs][:3] == ["std", "unguided", "unguided+transfer"]
    assert len(runs) == 11 and runs[0].args == ("--number_of_epochs", "2")
    by_name = {r.name: r for r in runs}
    assert "--mixer_init" not in by_name["hybrid"].args
    assert by_name["hybrid+transfer"].mode == "hybrid" and by_name["hybrid+transfer"].requires_std
    assert "--mixer_kwargs" not in runs[0].args
    with pytest.raises(ValueError, match="Unknown run"):
        mode_runs(["std"], {}, 1)
