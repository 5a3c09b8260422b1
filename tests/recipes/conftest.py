"""Shared fixtures of the SLURP recipe tests: a tiny "pretrained" Wav2Vec2
(random, saved with ``save_pretrained``) and one std run on the mini corpus.

Nothing touches the network; everything is written under pytest's tmp folders.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SLURP"
MINI = RECIPE / "mini_slurp"
PYTHON = sys.executable


def tiny_overrides(source, data_folder=MINI):
    """Command-line arguments for a fast tiny run (1 epoch of the mini corpus)."""
    return [
        "--data_folder", str(data_folder),
        "--source", str(source),
        "--mamba_d_state", "8", "--mamba_headdim", "8", "--mamba_chunk_size", "16",
        "--number_of_epochs", "1", "--batch_size", "12", "--test_batch_size", "20",
        "--num_workers", "0", "--sorting", "ascending",
        "--warmup_steps", "2", "--decay_total_steps", "20", "--lr", "0.002",
        "--grad_accumulation_factor", "1",
        "--waypoint_interval", "4", "--distill_until", "4", "--update_interval", "2",
        "--device", "cpu", "--noprogressbar",
    ]


def run_recipe(args, cwd=REPO, check=True):
    """Runs ``recipes/SLURP/train.py`` in a subprocess (as users do)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    script = "train.py" if Path(cwd) == RECIPE else "recipes/SLURP/train.py"
    proc = subprocess.run(
        [PYTHON, script, *map(str, args)], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"train.py {' '.join(map(str, args))} failed:\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory):
    """A random 2-layer, width-32 Wav2Vec2 saved like a hub model."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(10, 8, 8),
        conv_kernel=(10, 8, 8), num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    path = tmp_path_factory.mktemp("slurp") / "source"
    Wav2Vec2Model(config).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def std_run(tiny_source, tmp_path_factory):
    """The std run every guided mode reads (waypoints + best checkpoint)."""
    out = tmp_path_factory.mktemp("slurp") / "std"
    run_recipe(["hparams/std.yaml", "--output_folder", out, *tiny_overrides(tiny_source)])
    return out


@pytest.fixture(scope="session")
def tiny_whisper_source(tmp_path_factory):
    """A random 2-layer, width-32 Whisper saved like a hub model (encoder used)."""
    import torch
    from transformers import WhisperConfig, WhisperModel

    torch.manual_seed(0)
    config = WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
        num_mel_bins=80, max_source_positions=400,
    )
    path = tmp_path_factory.mktemp("slurp") / "whisper_source"
    WhisperModel(config).save_pretrained(path)
    return path
