"""Unit tests of guides, waypoints, checkpoint helpers and student init."""

import functools
import json
import types

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from cald_brain.distill import (
    HybridCutoff,
    NoGuide,
    TargetGuide,
    TrajectoryGuide,
    WaypointGuide,
    WaypointSaver,
    build_student,
    find_checkpoint,
    read_waypoint_manifest,
)
from cald_brain.distill.checkpointing import load_state_dict_checked
from cald_brain.distill.outputs import ModelOutputs


class _FakeBrain:
    """Just what guides read from a brain."""

    def __init__(self, accum=1):
        self.device = "cpu"
        self.device_type = "cpu"
        self.teacher_mode = "eval"
        self.max_grad_norm = 5.0
        self.distributed_launch = False
        self.find_unused_parameters = False
        self.grad_accumulation_factor = accum
        self.scaler = torch.GradScaler("cpu", enabled=False)
        self.optimizer_step = 0
        self.step = 0
        self.modules = {}
        self.forwards = []

    def teacher_forward(self, teacher, batch, stage):
        self.forwards.append(teacher.training)
        out = teacher(batch)
        return ModelOutputs(out, [out.unsqueeze(1)])

    def compute_task_loss(self, predictions, batch, stage):
        return predictions.pow(2).mean()


def _save_waypoints(folder, steps, module=None):
    saver = WaypointSaver(folder, interval_steps=1)
    for step in steps:
        brain = types.SimpleNamespace(
            modules={"model": module or torch.nn.Linear(3, 3)}, optimizer_step=step
        )
        if module is None:
            torch.nn.init.constant_(brain.modules["model"].weight, float(step))
        saver.save(brain)


def test_waypoint_rule_and_lazy_loading(tmp_path):
    _save_waypoints(tmp_path, [3, 6, 9])
    guide = WaypointGuide(torch.nn.Linear(3, 3), tmp_path)
    brain = _FakeBrain()
    guide.setup(brain)
    assert guide.current_waypoint is None  # nothing loaded before it is needed
    used = []
    for step in range(1, 13):  # current step s = optimizer_step + 1
        brain.optimizer_step = step - 1
        guide.teacher_outputs(brain, torch.ones(1, 3), None)
        used.append(guide.current_waypoint)
        assert guide.teacher.weight[0, 0].item() == guide.current_waypoint
    assert used == [3, 3, 3, 6, 6, 6, 9, 9, 9, 9, 9, 9]
    assert guide.n_loads == 3  # one load per switch, one teacher in memory
    assert brain.forwards == [False] * 12  # eval mode by default


def test_waypoint_state_roundtrip(tmp_path):
    _save_waypoints(tmp_path / "wp", [2, 4])
    guide = WaypointGuide(torch.nn.Linear(3, 3), tmp_path / "wp")
    brain = _FakeBrain()
    guide.setup(brain)
    brain.optimizer_step = 2
    guide.teacher_outputs(brain, torch.ones(1, 3), None)
    ckpt = Checkpointer(tmp_path / "save", {"guide": guide})
    ckpt.save_checkpoint()

    fresh = WaypointGuide(torch.nn.Linear(3, 3), tmp_path / "wp")
    fresh.setup(brain)
    Checkpointer(tmp_path / "save", {"guide": fresh}).recover_if_possible()
    assert fresh.current_waypoint == 4
    assert fresh.teacher.weight[0, 0].item() == 4.0
    assert (fresh.n_loads, fresh.n_teacher_forwards) == (1, 1)


@pytest.mark.parametrize(
    "prepare, message",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "has no waypoints.json: it is empty"),
        (
            lambda p: (p.mkdir(), (p / "waypoints.json").write_text('{"waypoints": []}')),
            "lists no waypoints",
        ),
        (
            lambda p: (
                p.mkdir(),
                (p / "waypoints.json").write_text(
                    json.dumps({"waypoints": [{"step": 5, "path": "step_5/model.ckpt"}]})
                ),
            ),
            "lists step 5",
        ),
        (lambda p: (p.mkdir(), (p / "waypoints.json").write_text("{oops")), "not valid JSON"),
    ],
)
def test_bad_waypoint_folder_is_refused(tmp_path, prepare, message):
    folder = tmp_path / "waypoints"
    prepare(folder)
    guide = WaypointGuide(torch.nn.Linear(3, 3), folder)
    with pytest.raises(ValueError, match=message) as err:
        guide.setup(_FakeBrain())
    assert str(folder) in str(err.value)


def test_waypoint_of_another_architecture_is_refused(tmp_path):
    _save_waypoints(tmp_path, [1], module=torch.nn.Linear(3, 4))
    guide = WaypointGuide(torch.nn.Linear(3, 3), tmp_path)
    with pytest.raises(ValueError, match=r"step_1.*another architecture"):
        guide.setup(_FakeBrain())


def test_waypoint_saver_overwrites_same_step(tmp_path):
    _save_waypoints(tmp_path, [2, 4, 2])
    waypoints = read_waypoint_manifest(tmp_path)
    assert [w.step for w in waypoints] == [2, 4]
    assert not list(tmp_path.rglob("*.tmp"))
    with pytest.raises(ValueError, match="saves nothing"):
        WaypointSaver(tmp_path)


def test_target_guide_loads_and_refuses_other_architecture(tmp_path):
    good = torch.nn.Linear(3, 3)
    torch.save(good.state_dict(), tmp_path / "good.ckpt")
    torch.save(torch.nn.Linear(3, 5).state_dict(), tmp_path / "bad.ckpt")
    guide = TargetGuide(torch.nn.Linear(3, 3), tmp_path / "good.ckpt")
    guide.setup(_FakeBrain())
    assert torch.equal(guide.teacher.weight, good.weight)
    assert not any(p.requires_grad for p in guide.teacher.parameters())
    with pytest.raises(ValueError, match=r"bad\.ckpt.*another architecture.*weight"):
        TargetGuide(torch.nn.Linear(3, 3), tmp_path / "bad.ckpt").setup(_FakeBrain())
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        TargetGuide(torch.nn.Linear(3, 3), tmp_path / "missing.ckpt").setup(_FakeBrain())


def test_trajectory_steps_every_tu_with_accumulation():
    torch.manual_seed(0)
    guide = TrajectoryGuide(
        torch.nn.Linear(3, 3),
        functools.partial(torch.optim.SGD, lr=0.1),
        update_interval=3,
        lr_scheduler=functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    brain = _FakeBrain(accum=2)
    guide.setup(brain)
    changed_at = []
    for step in range(1, 10):  # student steps (1-based), 2 micro-batches each
        before = guide.teacher.weight.detach().clone()
        for micro in (1, 2):
            brain.step = (step - 1) * 2 + micro
            brain.optimizer_step = step - 1
            out = guide.teacher_outputs(brain, torch.randn(2, 3), None)
            assert not out.hidden_states[0].requires_grad
        guide.before_student_step(brain)
        if not torch.equal(before, guide.teacher.weight):
            changed_at.append(step)
    assert changed_at == [3, 6, 9]
    assert guide.n_updates == 3 and guide.last_update_step == 9
    assert guide.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_trajectory_targets_come_before_the_update():
    guide = TrajectoryGuide(
        torch.nn.Linear(3, 3, bias=False), functools.partial(torch.optim.SGD, lr=1.0)
    )
    brain = _FakeBrain()
    guide.setup(brain)
    x = torch.ones(1, 3)
    expected = guide.teacher(x).detach()
    out = guide.teacher_outputs(brain, x, None)
    guide.before_student_step(brain)
    assert torch.equal(out.predictions, expected)
    assert not torch.equal(guide.teacher(x), expected)
    # eval-mode targets, then a train-mode forward for the update
    assert brain.forwards == [False, True]


def test_trajectory_state_roundtrip(tmp_path):
    def make(setup=True):
        torch.manual_seed(0)
        guide = TrajectoryGuide(
            torch.nn.Linear(3, 3),
            functools.partial(torch.optim.AdamW, lr=0.01),
            update_interval=1,
            lr_scheduler=functools.partial(torch.optim.lr_scheduler.LinearLR, total_iters=5),
        )
        if setup:
            guide.setup(_FakeBrain())
        return guide

    guide, brain = make(), _FakeBrain()
    for _ in range(2):
        guide.teacher_outputs(brain, torch.randn(2, 3), None)
        guide.before_student_step(brain)
        brain.optimizer_step += 1
    Checkpointer(tmp_path, {"guide": guide}).save_checkpoint()
    fresh = make()
    Checkpointer(tmp_path, {"guide": fresh}).recover_if_possible()
    assert torch.equal(fresh.teacher.weight, guide.teacher.weight)
    assert fresh.n_updates == 2
    assert fresh.lr_scheduler.state_dict() == guide.lr_scheduler.state_dict()
    state_a = guide.optimizer.state_dict()["state"]
    state_b = fresh.optimizer.state_dict()["state"]
    assert all(torch.equal(state_a[k]["exp_avg"], state_b[k]["exp_avg"]) for k in state_a)
    # recovered before setup (evaluate() without fit()): applied at setup
    late = make(setup=False)
    Checkpointer(tmp_path, {"guide": late}).recover_if_possible()
    assert torch.equal(late.teacher.weight, guide.teacher.weight)
    late.setup(_FakeBrain())
    state_c = late.optimizer.state_dict()["state"]
    assert all(torch.equal(state_a[k]["exp_avg"], state_c[k]["exp_avg"]) for k in state_a)
    assert late.lr_scheduler.state_dict() == guide.lr_scheduler.state_dict()


def test_hybrid_composes_with_any_guide(tmp_path):
    traj = TrajectoryGuide(torch.nn.Linear(3, 3), functools.partial(torch.optim.SGD, lr=0.1))
    hybrid = HybridCutoff(traj, distill_until=2)
    assert [hybrid.is_active(s) for s in (1, 2, 3, 10)] == [True, True, False, False]
    assert hybrid.teacher_modules() == [traj.teacher]
    hybrid.setup(_FakeBrain())
    hybrid.teacher_outputs(_FakeBrain(), torch.ones(1, 3), None)
    Checkpointer(tmp_path, {"guide": hybrid}).save_checkpoint()
    other = HybridCutoff(
        TrajectoryGuide(torch.nn.Linear(3, 3), functools.partial(torch.optim.SGD, lr=0.1)), 2
    )
    other.setup(_FakeBrain())
    Checkpointer(tmp_path, {"guide": other}).recover_if_possible()
    assert other.n_teacher_forwards == hybrid.n_teacher_forwards == 2
    assert not NoGuide().is_active(1)
    with pytest.raises(ValueError, match="distill_until"):
        HybridCutoff(traj, distill_until=-1)


def test_build_student_target_init_and_errors(tmp_path):
    target = torch.nn.Linear(3, 3)
    torch.save(target.state_dict(), tmp_path / "target.ckpt")
    student = build_student(
        lambda: torch.nn.Linear(3, 3), init="target", target_checkpoint=tmp_path / "target.ckpt"
    )
    assert torch.equal(student.weight, target.weight)
    with pytest.raises(ValueError, match="target_checkpoint"):
        build_student(torch.nn.Linear(3, 3), init="target")
    with pytest.raises(ValueError, match="init"):
        build_student(torch.nn.Linear(3, 3), init="pretrained")
    torch.save(torch.nn.Linear(4, 3).state_dict(), tmp_path / "other.ckpt")
    with pytest.raises(ValueError, match="another architecture"):
        build_student(
            torch.nn.Linear(3, 3), init="target", target_checkpoint=tmp_path / "other.ckpt"
        )


def test_find_checkpoint_and_ckpt_dirs(tmp_path):
    model = torch.nn.Linear(3, 3)
    ckpt = Checkpointer(tmp_path, {"model": model})
    best = ckpt.save_checkpoint(meta={"ACC": 0.9})
    ckpt.save_checkpoint(meta={"ACC": 0.1})
    path = find_checkpoint(tmp_path, max_key="ACC")
    assert path == str(best.paramfiles["model"])
    load_state_dict_checked(torch.nn.Linear(3, 3), best.path)  # a CKPT+ folder works too
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        find_checkpoint(tmp_path, max_key="WER")


def test_half_written_checkpoint_is_skipped(tmp_path):
    from cald_brain.distill.checkpointing import (
        COMPLETION_MARKER_NAME,
        CompletionMarker,
        usable_checkpoint_predicate,
    )

    model = torch.nn.Linear(3, 3)
    ckpt = Checkpointer(tmp_path, {"model": model, COMPLETION_MARKER_NAME: CompletionMarker()})
    good = ckpt.save_checkpoint()
    saved = model.weight.detach().clone()
    # What SIGKILL during a save leaves: a newer CKPT.yaml, a truncated file,
    # no marker (SpeechBrain writes the meta file first).
    torch.nn.init.zeros_(model.weight)
    partial = ckpt.save_checkpoint()
    (partial.path / f"{COMPLETION_MARKER_NAME}.ckpt").unlink()
    (partial.path / "model.ckpt").write_bytes(b"\x00" * 10)
    loaded = ckpt.recover_if_possible(ckpt_predicate=usable_checkpoint_predicate(ckpt))
    assert loaded.path == good.path
    assert torch.equal(model.weight, saved)


def test_brain_refuses_bad_hparams():
    from cald_brain.distill import DistillBrain

    teacher = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match="also listed in `modules`"):
        DistillBrain(
            modules={"model": torch.nn.Linear(3, 3), "teacher": teacher},
            hparams={"guide": TargetGuide(teacher)},
            run_opts={"device": "cpu"},
        )
    with pytest.raises(ValueError, match="teacher_mode"):
        DistillBrain(
            modules={"model": torch.nn.Linear(3, 3)},
            hparams={"teacher_mode": "inference"},
            run_opts={"device": "cpu"},
        )
    with pytest.raises(ValueError, match="student_module"):
        DistillBrain(modules={"net": torch.nn.Linear(3, 3)}, run_opts={"device": "cpu"})
    with pytest.raises(TypeError, match="Guide"):
        DistillBrain(
            modules={"model": torch.nn.Linear(3, 3)},
            hparams={"guide": "target"},
            run_opts={"device": "cpu"},
        )


def test_teacher_train_mode_as_in_the_reference():
    brain = _FakeBrain()
    brain.teacher_mode = "train"
    target = TargetGuide(torch.nn.Linear(3, 3))
    target.setup(brain)
    target.teacher_outputs(brain, torch.ones(1, 3), None)
    # a trajectory teacher in train mode: one forward serves targets and update
    traj = TrajectoryGuide(torch.nn.Linear(3, 3), functools.partial(torch.optim.SGD, lr=0.1))
    traj.setup(brain)
    traj.teacher_outputs(brain, torch.ones(1, 3), None)
    assert brain.forwards == [True, True]
    assert traj.n_teacher_forwards == 1
    # an explicit guide setting wins over the brain's hparam
    explicit = TargetGuide(torch.nn.Linear(3, 3), teacher_mode="eval")
    explicit.setup(brain)
    assert explicit.teacher_mode == "eval"


def test_unreadable_checkpoint_is_named(tmp_path):
    (tmp_path / "broken.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read checkpoint.*broken.ckpt"):
        TargetGuide(torch.nn.Linear(3, 3), tmp_path / "broken.ckpt").setup(_FakeBrain())
