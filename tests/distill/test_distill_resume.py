"""Exact resume after a real SIGKILL, mid-epoch, for waypoint and trajectory,
and in the middle of an attention-transfer stage.

For each mode two toy-recipe processes start together: an uninterrupted run,
and a run with intra-epoch checkpoints every step that is killed with SIGKILL
once it has checkpointed a step in epoch 2 of 3 (4 batches per epoch). The
trajectory case is also run with gradient accumulation 2, where intra-epoch
checkpoints may only fall between accumulation groups. The transfer case is
a target-guided student with ``mixer_init: attention_transfer`` and 8
transfer steps: killed during the transfer stage, it must resume there (the
transfer optimizer, the step count) and hand over to the guide at the same
step.
The killed run is then started again with the same command and must end
with *bit-identical* student weights (and trajectory teacher weights) and
identical final statistics: on CPU, with one thread, the same operations on
the same data in the same order give the same bits, and every random state
(torch, NumPy, Python, the DataLoader's position and shuffling) is restored,
so any difference would be a resume bug, not rounding.
"""

import json
import math
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
BATCHES_PER_EPOCH = 4
N_BATCHES = 12
KILL_AFTER_BATCH = 5  # killed once a checkpoint covers this many batches
TRANSFER_STEPS = 8
TRANSFER = f"mixer_init: attention_transfer, transfer_steps: {TRANSFER_STEPS}"


def _command(mode, output_folder, source_checkpoint, std_run, step_delay, accum, base=""):
    extra = f", {base}" if base else ""
    cmd = [
        sys.executable,
        str(HERE / "toy_recipe.py"),
        str(HERE / "hparams" / f"{mode}.yaml"),
        f"--output_folder={output_folder}",
        f"--source_checkpoint={source_checkpoint}",
        "--device=cpu",
        "--noprogressbar",
        "--ckpt_interval_steps=1",
        f"--grad_accumulation_factor={accum}",
        f"--base={{step_delay: {step_delay}{extra}}}",
    ]
    if mode == "waypoint":
        cmd.append(f"--std_folder={std_run['folder']}")
    if mode in ("target", "hybrid"):
        cmd.append(f"--target_checkpoint={std_run['target_checkpoint']}")
    return cmd


def _launch(cmd, log_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(HERE)), log


def _complete_intra_epoch_steps(save_folder):
    """Optimizer steps of the complete intra-epoch checkpoints on disk."""
    steps = []
    for ckpt in pathlib.Path(save_folder).glob("CKPT+*"):
        try:
            if not (ckpt / "distill-complete.ckpt").exists():
                continue
            meta = yaml.safe_load((ckpt / "CKPT.yaml").read_text())
            if meta.get("end-of-epoch", True):
                continue
            steps.append(yaml.safe_load((ckpt / "brain.ckpt").read_text())["optimizer_step"])
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            continue  # being written or deleted right now
    return steps


def _kill_mid_epoch(proc, save_folder, kill_after_step, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        if proc.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        if any(s >= kill_after_step for s in _complete_intra_epoch_steps(save_folder)):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no mid-epoch checkpoint appeared")


def _wait(proc, log, log_path, timeout=180):
    try:
        proc.wait(timeout=timeout)
    finally:
        log.close()
    assert proc.returncode == 0, pathlib.Path(log_path).read_text()[-3000:]


def _results(folder):
    folder = pathlib.Path(folder)
    return (
        torch.load(folder / "final_state.pt", weights_only=True),
        json.loads((folder / "final.json").read_text()),
    )


@pytest.mark.parametrize(
    "mode, accum, base",
    [
        ("waypoint", 1, ""),
        ("trajectory", 1, ""),
        ("trajectory", 2, ""),
        ("target", 1, TRANSFER),
    ],
    ids=["waypoint-1", "trajectory-1", "trajectory-2", "target-transfer"],
)
def test_sigkill_mid_epoch_then_resume_is_exact(
    mode, accum, base, tmp_path, source_checkpoint, std_run
):
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    command = lambda folder, delay: _command(  # noqa: E731
        mode, folder, source_checkpoint, std_run, delay, accum, base
    )
    full, full_log = _launch(command(full_dir, 0.0), tmp_path / "full.log")
    # The step delay only opens a window for the kill; it changes no number.
    victim, victim_log = _launch(command(killed_dir, 0.4), tmp_path / "killed.log")
    try:
        _kill_mid_epoch(victim, killed_dir / "save", math.ceil(KILL_AFTER_BATCH / accum))
    finally:
        victim_log.close()
    assert victim.returncode == -signal.SIGKILL
    assert not (killed_dir / "final.json").exists()

    resumed, resumed_log = _launch(command(killed_dir, 0.0), tmp_path / "resumed.log")
    _wait(resumed, resumed_log, tmp_path / "resumed.log")
    _wait(full, full_log, tmp_path / "full.log")

    full_state, full_info = _results(full_dir)
    resumed_state, resumed_info = _results(killed_dir)

    # The second process really resumed mid-epoch (history has one entry per
    # batch it trained on), after a whole accumulation group.
    done = N_BATCHES - len(resumed_info["history"])
    assert KILL_AFTER_BATCH <= done < N_BATCHES
    assert done % BATCHES_PER_EPOCH != 0, done
    assert done % accum == 0, done
    assert resumed_info["optimizer_step"] == full_info["optimizer_step"] == N_BATCHES // accum
    # ... saw the same teachers and losses as the uninterrupted run ...
    assert resumed_info["history"] == full_info["history"][done:]
    if base == TRANSFER:
        # killed during the transfer stage; both hand over at the same step
        assert done < TRANSFER_STEPS
        transferring = [h["transfer"] for h in full_info["history"]]
        assert transferring == [True] * TRANSFER_STEPS + [False] * (N_BATCHES - TRANSFER_STEPS)
    assert resumed_info["epoch_stats"][-1] == full_info["epoch_stats"][-1]

    # ... and ends with bit-identical weights.
    assert set(full_state) == set(resumed_state)
    for part in full_state:  # "student", and "teacher" for trajectory
        for name, tensor in full_state[part].items():
            assert torch.equal(tensor, resumed_state[part][name]), f"{part}.{name} differs"
    assert ("teacher" in full_state) == (mode == "trajectory")
