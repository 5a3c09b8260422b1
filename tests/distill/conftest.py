"""Fixtures of the distillation tests: a "pretrained" toy model and a std run.

Everything is built in code (tiny random HF Wav2Vec2 configs, synthetic
tones); nothing touches the network.
"""

import contextlib
import logging
import os
import pathlib
import sys

import pytest
import torch

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
HPARAMS = HERE / "hparams"

# toy_recipe must be importable by name: the YAML files say !apply:toy_recipe...
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import toy_recipe  # noqa: E402

from cald_brain.distill import find_checkpoint  # noqa: E402


@contextlib.contextmanager
def one_thread():
    """The toy models are tiny: one thread is as fast, and it avoids OpenMP
    oversubscription on a busy machine and while the resume test runs two
    training processes at once. Restored afterwards, for other test folders."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _one_thread_quiet_logs():
    sb_logger = logging.getLogger("speechbrain")
    level = sb_logger.level
    sb_logger.setLevel(logging.WARNING)
    with one_thread():
        yield
    sb_logger.setLevel(level)


@pytest.fixture(scope="session")
def source_checkpoint(tmp_path_factory):
    """The "pretrained" transformer: a random toy model, saved once."""
    path = tmp_path_factory.mktemp("source") / "source.ckpt"
    torch.manual_seed(0)
    torch.save(toy_recipe.build_toy_model().state_dict(), path)
    return str(path)


@pytest.fixture(scope="session")
def std_run(tmp_path_factory, source_checkpoint):
    """A finished std run: waypoints every 3 steps and every epoch, and a
    best checkpoint (the target)."""
    folder = tmp_path_factory.mktemp("std")
    with one_thread():
        brain = toy_recipe.run(
            str(HPARAMS / "std.yaml"),
            {"output_folder": str(folder), "source_checkpoint": source_checkpoint},
        )
    return {
        "folder": str(folder),
        "target_checkpoint": find_checkpoint(folder / "save", max_key="ACC"),
        "brain": brain,
    }


def mode_overrides(mode, output_folder, source_checkpoint, std_run=None, **extra):
    """Top-level overrides each mode file needs."""
    overrides = {"output_folder": str(output_folder), "source_checkpoint": source_checkpoint}
    if mode == "waypoint":
        overrides["std_folder"] = std_run["folder"]
    if mode in ("target", "hybrid"):
        overrides["target_checkpoint"] = std_run["target_checkpoint"]
    overrides.update(extra)
    return overrides


@pytest.fixture(scope="session")
def run_mode(source_checkpoint, std_run, tmp_path_factory):
    """Runs the toy recipe in one mode: ``run_mode(mode, run_opts=None,
    hparams_update=None, brain_class=None, **overrides)``."""

    def _run(mode, run_opts=None, hparams_update=None, brain_class=None, **extra):
        out = tmp_path_factory.mktemp(mode)
        source = extra.pop("source_checkpoint", source_checkpoint)
        overrides = mode_overrides(mode, out, source, std_run, **extra)
        with one_thread():
            return toy_recipe.run(
                str(HPARAMS / f"{mode}.yaml"),
                overrides,
                run_opts,
                hparams_update=hparams_update,
                brain_class=brain_class,
            )

    return _run


@pytest.fixture
def single_process_group(monkeypatch):
    """A one-process gloo group, so that the Brain takes its DDP code path."""
    import socket

    import torch.distributed as dist

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for key, value in dict(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    ).items():
        monkeypatch.setenv(key, value)
    try:
        dist.init_process_group("gloo", rank=0, world_size=1)
    except Exception as err:  # pragma: no cover - platform without gloo
        pytest.skip(f"cannot start a gloo process group: {err}")
    yield
    dist.destroy_process_group()
