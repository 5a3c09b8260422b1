"""The six guiding modes on the toy recipe (std, then each guided mode).

Toy schedule: 16 training utterances, batch 4, 3 epochs = 12 optimizer steps;
the std run saves waypoints every 3 steps and at every epoch end (steps 3, 4,
6, 8, 9, 12).
"""

import math
import pathlib

import pytest
import torch
import yaml

import toy_recipe
from cald_brain.distill import NoGuide, read_waypoint_manifest
HPARAMS = pathlib.Path(__file__).resolve().parent / "hparams"

N_STEPS = 12
STD_WAYPOINTS = [3, 4, 6, 8, 9, 12]


@pytest.fixture(scope="module")
def runs(run_mode):
    """Every guided mode, run once for the whole module."""
    modes = ("unguided", "target", "waypoint", "trajectory", "hybrid")
    return {mode: run_mode(mode) for mode in modes}


def _mixer_types(model):
    return {type(m).__name__ for m in model.modules()}


def test_std_saves_waypoints_with_manifest(std_run):
    folder = pathlib.Path(std_run["folder"]) / "waypoints"
    waypoints = read_waypoint_manifest(folder)
    assert [w.step for w in waypoints] == STD_WAYPOINTS
    assert [w.epoch for w in waypoints] == [1, 1, 2, 2, 3, 3]
    assert all(w.path.exists() for w in waypoints)
    brain = std_run["brain"]
    assert isinstance(brain.guide, NoGuide) and brain.teacher_forward_calls == 0
    # std keeps the transformer: no conversion
    assert "BiMamba2" not in _mixer_types(brain.modules.model)
    # the waypoint of the last step is the final model
    final = brain.modules.model.state_dict()
    saved = torch.load(waypoints[-1].path, weights_only=True)
    assert all(torch.equal(final[k], saved[k]) for k in final)


def test_unguided_computes_no_teacher_forward(runs):
    brain = runs["unguided"]
    assert isinstance(brain.guide, NoGuide)
    assert brain.teacher_forward_calls == 0
    assert brain.guide.n_teacher_forwards == 0
    assert not any(h["distilled"] for h in brain.history)
    assert all(set(h["terms"]) == {"task"} for h in brain.history)
    assert "BiMamba2" in _mixer_types(brain.modules.model)


@pytest.mark.parametrize("mode", ["target", "waypoint", "trajectory"])
def test_layer_loss_falls_and_each_term_is_logged(runs, mode):
    brain = runs[mode]
    first, last = brain.epoch_stats[0]["train"], brain.epoch_stats[-1]["train"]
    assert last["loss_layer"] < 0.85 * first["loss_layer"], brain.epoch_stats
    assert "loss_task" in last
    log = (pathlib.Path(brain.hparams.output_folder) / "train_log.txt").read_text()
    assert "loss_layer" in log and "loss_task" in log
    assert all(h["distilled"] for h in brain.history)


def test_target_student_starts_from_target(runs, std_run):
    # Every non-attention weight of the converted student comes from the target.
    target = torch.load(std_run["target_checkpoint"], weights_only=True)
    student = runs["target"].modules.model
    initial = toy_recipe.load_hparams(
        str(HPARAMS / "target.yaml"),
        {
            "output_folder": str(pathlib.Path(runs["target"].hparams.output_folder) / "reload"),
            "source_checkpoint": runs["target"].hparams.source_checkpoint,
            "target_checkpoint": std_run["target_checkpoint"],
        },
    )["model"].state_dict()
    shared = [k for k in initial if k in target]
    assert len(shared) > 10
    assert all(torch.equal(initial[k], target[k]) for k in shared)
    assert "BiMamba2" in _mixer_types(student)


def test_waypoint_switches_teacher_at_the_right_steps(runs):
    brain = runs["waypoint"]
    used = [h["waypoint"] for h in brain.history]
    # student step s (1-based) uses the first waypoint with step >= s
    expected = [next(w for w in STD_WAYPOINTS if w >= s) for s in range(1, N_STEPS + 1)]
    assert used == expected
    assert brain.guide.n_loads == len(STD_WAYPOINTS)  # lazy: one load per switch


def test_trajectory_steps_teacher_every_tu(runs):
    brain = runs["trajectory"]
    t_u = brain.guide.update_interval
    assert t_u == 2
    updates = [h["teacher_updates"] for h in brain.history]
    assert updates == [s // t_u for s in range(1, N_STEPS + 1)]
    # LR schedule stepped once per teacher update
    assert brain.guide.lr_scheduler.last_epoch == N_STEPS // t_u
    # the teacher moved away from the source weights; the student is separate
    source = torch.load(brain.hparams.source_checkpoint, weights_only=True)
    teacher = brain.guide.teacher.state_dict()
    assert not torch.equal(teacher["classifier.weight"], source["classifier.weight"])
    assert brain.guide.teacher is not brain.modules.model


def test_hybrid_stops_distilling_at_distill_until(runs):
    brain = runs["hybrid"]
    until = brain.guide.distill_until
    assert until == 5
    assert [h["distilled"] for h in brain.history] == [s <= until for s in range(1, N_STEPS + 1)]
    # the probe before training + one forward per distilled step, none after
    assert brain.teacher_forward_calls == 1 + until
    assert "loss_layer" not in brain.epoch_stats[-1]["train"]
    # before the cut-off hybrid is exactly target guidance (same init, same data)
    target = runs["target"].history[:until]
    assert [h["terms"] for h in brain.history[:until]] == [h["terms"] for h in target]


@pytest.mark.parametrize(
    "mode, run_opts",
    [
        ("trajectory", {"grad_accumulation_factor": 2}),
        ("waypoint", {"grad_accumulation_factor": 2, "precision": "bf16"}),
    ],
)
def test_grad_accumulation_and_bf16(run_mode, mode, run_opts):
    brain = run_mode(mode, run_opts=run_opts, base={"number_of_epochs": 2})
    n_batches = 8
    assert len(brain.history) == n_batches
    assert brain.optimizer_step == n_batches // 2
    steps = [h["optimizer_step"] for h in brain.history]
    assert steps == [b // 2 for b in range(1, n_batches + 1)]
    for h in brain.history:
        assert all(math.isfinite(v) for v in h["terms"].values()), h
        assert "layer" in h["terms"]
    if mode == "trajectory":
        # T_u = 2 *optimizer* steps: updates after steps 2 and 4
        assert [h["teacher_updates"] for h in brain.history] == [0, 0, 0, 1, 1, 1, 1, 2]
    else:
        # waypoint chosen by optimizer steps (1-based): steps 1..3 -> 3, step 4 -> 4
        assert [h["waypoint"] for h in brain.history] == [3, 3, 3, 3, 3, 3, 4, 4]
    if "precision" in run_opts:
        assert brain.precision == "bf16"
    first, last = brain.epoch_stats[0]["train"], brain.epoch_stats[-1]["train"]
    assert last["loss_layer"] < first["loss_layer"]


# --------------------------------------------------------------------------
# Bad input is refused before training starts
# --------------------------------------------------------------------------
def _no_training_happened(output_folder):
    save = pathlib.Path(output_folder) / "save"
    assert not list(save.glob("CKPT+*")), "a checkpoint was written"
    assert not (pathlib.Path(output_folder) / "train_log.txt").exists()


def _run_expect_error(tmp_path, source_checkpoint, mode_file, overrides, match):
    out = tmp_path / "out"
    all_overrides = {"output_folder": str(out), "source_checkpoint": source_checkpoint}
    all_overrides.update(overrides)
    with pytest.raises(ValueError, match=match) as err:
        toy_recipe.run(str(mode_file), all_overrides)
    _no_training_happened(out)
    return str(err.value)


def test_missing_waypoint_folder_is_refused(tmp_path, source_checkpoint):
    message = _run_expect_error(
        tmp_path, source_checkpoint, HPARAMS / "waypoint.yaml",
        {"std_folder": str(tmp_path / "no_std_run")}, "does not exist",
    )
    assert str(tmp_path / "no_std_run" / "waypoints") in message


def test_empty_waypoint_folder_is_refused(tmp_path, source_checkpoint):
    (tmp_path / "std" / "waypoints").mkdir(parents=True)
    message = _run_expect_error(
        tmp_path, source_checkpoint, HPARAMS / "waypoint.yaml",
        {"std_folder": str(tmp_path / "std")}, "it is empty",
    )
    assert "waypoints.json" in message


def _mismatched_teacher_yaml(tmp_path, n_layers, hidden=32):
    """A target-guided mode file whose teacher differs from the student."""
    teacher_ckpt = tmp_path / f"teacher_{n_layers}x{hidden}.ckpt"
    model = toy_recipe.build_toy_model(
        config={"num_hidden_layers": n_layers, "hidden_size": hidden, "num_attention_heads": 2}
    )
    torch.save(model.state_dict(), teacher_ckpt)
    path = tmp_path / "mismatch.yaml"
    path.write_text(
        yaml.safe_dump({"output_folder": "x", "source_checkpoint": "x", "layer_map": None})
        + f"""
base: !include:{HPARAMS / 'base.yaml'}
    output_folder: !ref <output_folder>
    source_checkpoint: !ref <source_checkpoint>
    number_of_epochs: 1
guide: !new:cald_brain.distill.TargetGuide
    teacher: !apply:toy_recipe.build_toy_model
        config:
            num_hidden_layers: 3
            hidden_size: 32
    checkpoint: {teacher_ckpt}
"""
    )
    return path


def test_layer_count_mismatch_without_map_is_refused(tmp_path, source_checkpoint):
    mode_file = _mismatched_teacher_yaml(tmp_path, n_layers=3)
    message = _run_expect_error(
        tmp_path, source_checkpoint, mode_file, {},
        "student gives 2 hidden states and the teacher 3",
    )
    assert "layer_map" in message and "before training" in message
    # ... and accepted with a layer map
    brain = toy_recipe.run(
        str(mode_file),
        {
            "output_folder": str(tmp_path / "mapped"),
            "source_checkpoint": source_checkpoint,
            "layer_map": [[0, 0], [1, 2]],
        },
    )
    assert brain.optimizer_step == 4 and all("layer" in h["terms"] for h in brain.history)


def test_teacher_checkpoint_of_another_architecture_is_refused(tmp_path, source_checkpoint):
    # the guide's teacher has 3 layers; this checkpoint has 3 layers of width 48
    mode_file = _mismatched_teacher_yaml(tmp_path, n_layers=3, hidden=48)
    message = _run_expect_error(
        tmp_path, source_checkpoint, mode_file, {}, "another architecture"
    )
    assert "teacher_3x48.ckpt" in message and "shape mismatch" in message
    # a target-initialised student refuses it too (at YAML load)
    _run_expect_error(
        tmp_path, source_checkpoint, HPARAMS / "target.yaml",
        {"target_checkpoint": str(tmp_path / "teacher_3x48.ckpt")}, "another architecture",
    )


def test_ddp_wraps_the_teacher_only_when_it_trains(run_mode, single_process_group):
    ddp = torch.nn.parallel.DistributedDataParallel
    opts = {"distributed_backend": "gloo", "grad_accumulation_factor": 2}
    brain = run_mode("trajectory", run_opts=opts, base={"number_of_epochs": 1})
    assert isinstance(brain.modules.model, ddp)
    assert isinstance(brain.guide.train_module, ddp)  # trains: wrapped by its guide
    assert brain.guide.n_updates == 1 and brain.optimizer_step == 2
    brain = run_mode(
        "target", run_opts={"distributed_backend": "gloo"}, base={"number_of_epochs": 1}
    )
    assert isinstance(brain.modules.model, ddp)
    assert not isinstance(brain.guide.teacher, ddp)  # frozen: never wrapped
    assert "teacher" not in brain.modules
