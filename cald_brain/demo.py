"""Offline demo: convert a Wav2Vec2-shaped encoder to BiMamba2 and compare.

Builds a randomly initialised Wav2Vec2 encoder with the layout of
``wav2vec2-large-lv60`` (convolutional feature encoder with 320x stride,
positional convolution, pre-LayerNorm transformer layers) at a small width,
converts it with :func:`cald_brain.convert.convert`, checks the conversion
(every non-attention weight identical, padded batches equal single
utterances), and prints a before/after table of parameters and forward time
for several audio durations.

Run with::

    python -m cald_brain.demo [--hidden 256 --layers 4 --seconds 5 30 120]

Authors
 * cald-brain developers 2026
"""

import argparse
import copy
import logging
import statistics
import time

import torch
from tqdm import tqdm

from cald_brain.convert import convert

SAMPLE_RATE = 16000


def build_wav2vec2(hidden, layers, heads, ffn):
    """A random Wav2Vec2 encoder in the lv60 layout (no download needed).

    Arguments
    ---------
    hidden : int
        Model width.
    layers : int
        Number of transformer layers.
    heads : int
        Attention heads.
    ffn : int
        Feed-forward width.

    Returns
    -------
    model : transformers.Wav2Vec2Model

    Example
    -------
    >>> model = build_wav2vec2(32, 1, 2, 64)
    >>> model.config.do_stable_layer_norm
    True
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    config = Wav2Vec2Config(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        conv_dim=(128,) * 7,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        num_conv_pos_embeddings=32,
        num_conv_pos_embedding_groups=8,
        attn_implementation="sdpa",
    )
    return Wav2Vec2Model(config).eval()


def time_encoder(model, frames, repeats):
    """Median time (ms) of the encoder stack on ``frames`` feature frames.

    The convolutional feature encoder is left out: conversion does not touch
    it, and its cost is the same for teacher and student.
    """
    features = torch.randn(1, frames, model.config.hidden_size)
    with torch.no_grad():
        model.encoder(features)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.encoder(features)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def check_padding(model):
    """Largest difference between a padded batch and utterances run alone."""
    torch.manual_seed(1)
    lengths = [SAMPLE_RATE, SAMPLE_RATE * 6 // 10]
    batch = torch.zeros(2, lengths[0])
    mask = torch.zeros(2, lengths[0], dtype=torch.long)
    for i, n in enumerate(lengths):
        batch[i, :n] = torch.randn(n)
        mask[i, :n] = 1
    worst = 0.0
    with torch.no_grad():
        out = model(batch, attention_mask=mask).last_hidden_state
        for i, n in enumerate(lengths):
            alone = model(batch[i : i + 1, :n]).last_hidden_state[0]
            worst = max(worst, (out[i, : alone.shape[0]] - alone).abs().max().item())
    return worst


def main(argv=None):
    """Runs the demo; returns the rows of the results table.

    Arguments
    ---------
    argv : list of str, optional
        Command-line arguments (default: ``sys.argv``).

    Returns
    -------
    rows : list of dict
    """
    parser = argparse.ArgumentParser(description="Convert a Wav2Vec2-shaped model to BiMamba2.")
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--ffn", type=int, default=3072)
    parser.add_argument("--seconds", type=float, nargs="+", default=[5, 30, 120])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(args.seed)

    teacher = build_wav2vec2(args.hidden, args.layers, args.heads, args.ffn)
    student = copy.deepcopy(teacher)
    report = convert(student, "bimamba2", expand=1, headdim=64 if args.hidden >= 64 else 8)
    student.eval()
    print(report)

    before = teacher.state_dict()
    after = student.state_dict()
    replaced = tuple(r.path + "." for r in report.replaced)
    kept = [k for k in before if not k.startswith(replaced)]
    identical = sum(torch.equal(before[k], after.get(k, torch.empty(0))) for k in kept)
    print(f"\nnon-attention tensors kept bit-identical: {identical}/{len(kept)}")
    print(f"padded batch vs single utterances, max |diff|: {check_padding(student):.2e}")

    frames = {
        s: int(teacher._get_feat_extract_output_lengths(torch.tensor(int(s * SAMPLE_RATE))))
        for s in args.seconds
    }
    jobs = [(s, name, m) for s in args.seconds for name, m in (("transformer", teacher), ("BiMamba2", student))]
    times = {}
    for seconds, name, model in tqdm(jobs, desc="timing encoder forward passes", leave=False):
        times[(seconds, name)] = time_encoder(model, frames[seconds], args.repeats)

    def encoder_params(model):
        return sum(p.numel() for p in model.encoder.parameters())

    rows = []
    print(f"\n{'audio':>8} | {'frames':>6} | {'transformer ms':>14} | {'BiMamba2 ms':>11} | {'speed-up':>8}")
    print(f"{'-' * 8}-+-{'-' * 6}-+-{'-' * 14}-+-{'-' * 11}-+-{'-' * 8}")
    for seconds in args.seconds:
        t, s = times[(seconds, "transformer")], times[(seconds, "BiMamba2")]
        rows.append({"seconds": seconds, "frames": frames[seconds], "transformer_ms": t, "bimamba2_ms": s})
        print(f"{seconds:>7.0f}s | {frames[seconds]:>6} | {t:>14.1f} | {s:>11.1f} | {t / s:>7.2f}x")
    print(
        f"\nencoder parameters: transformer {encoder_params(teacher):,} -> "
        f"BiMamba2 {encoder_params(student):,}; whole model {report.params_before:,} -> "
        f"{report.params_after:,} ({report.params_after / report.params_before:.2f}x)"
    )
    print(
        f"(width {args.hidden}, {args.layers} layers, {torch.get_num_threads()} CPU threads, "
        "encoder stack only: the shared convolutional front end is not timed. Attention "
        "grows with T^2, BiMamba2 with T: the gap widens with the audio's length.)"
    )
    return rows


if __name__ == "__main__":
    main()
