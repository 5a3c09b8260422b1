#!/usr/bin/env python3
"""Speed and memory of our Mamba2 / BiMamba2 against the alternatives.

For the paper's speech configuration (d_model 768, expand 1, headdim 64,
d_state 128, chunk 256) and T = 250, 1500, 6000 frames (5 s, 30 s, 2 min of
speech at 50 frames/s), prints forward and forward+backward time and peak
memory of:

* ``ours Mamba2`` / ``ours BiMamba2``: cald_brain.nnet (pure PyTorch on CPU;
  mamba_ssm's fused kernel on CUDA when installed);
* ``HF Mamba2``: transformers' ``Mamba2Mixer`` with the same weights, on its
  PyTorch path (the kernels it would use are absent on CPU);
* ``MHA``: ``torch.nn.MultiheadAttention`` of the same width (SDPA inside);
* ``matmul floor``: only the in_proj and out_proj matrix products of one
  Mamba2 (``x2`` for BiMamba2), i.e. what no implementation can beat.

It also checks our output against transformers' (relative error).

Usage::

    python benchmarks/bench_mamba2.py                 # CPU, float32
    python benchmarks/bench_mamba2.py --lengths 250 1500 --repeats 5
    python benchmarks/bench_mamba2.py --device cuda --dtype bfloat16

Authors
 * cald-brain developers 2026
"""

import argparse
import gc
import logging
import os
import warnings
import platform
import statistics
import time

import torch

from cald_brain.nnet import BiMamba2, Mamba2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_interleaved(fns, device, repeats):
    """Median wall time (ms) of each function, timed round-robin.

    Interleaving the candidates spreads any background load over all of them
    instead of penalising whichever ran during a burst.
    """
    for fn in fns.values():  # warm-up (allocator, kernels, autotuning)
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def peak_memory(fn, device):
    """Peak extra memory (MiB) while ``fn()`` runs."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    # CPU: replay the profiler's allocation record (each op's own
    # allocations and frees, in time order) and keep the running maximum.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20


def build_hf_mamba2(ours, d_model, args):
    from transformers import Mamba2Config
    from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer

    config = Mamba2Config(
        hidden_size=d_model,
        expand=args.expand,
        head_dim=args.headdim,
        num_heads=args.expand * d_model // args.headdim,
        state_size=args.d_state,
        n_groups=1,
        conv_kernel=4,
        chunk_size=args.chunk_size,
        use_bias=False,
        use_conv_bias=True,
        layer_norm_epsilon=1e-5,
        num_hidden_layers=1,
    )
    hf = Mamba2Mixer(config, layer_idx=0)
    hf.load_state_dict(ours.state_dict())
    return hf


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--expand", type=int, default=1)
    parser.add_argument("--headdim", type=int, default=64)
    parser.add_argument("--d-state", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[250, 1500, 6000])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--skip-hf", action="store_true", help="do not time transformers' layer")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # transformers' "fast path not available"
    warnings.filterwarnings("ignore", module="torch.profiler")

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    d = args.d_model
    cfg = dict(d_state=args.d_state, expand=args.expand, headdim=args.headdim, chunk_size=args.chunk_size)
    mamba2 = Mamba2(d, **cfg).to(device)
    bimamba2 = BiMamba2(d, **cfg).to(device)
    hf = None if args.skip_hf else build_hf_mamba2(mamba2, d, args).to(device)
    mha = torch.nn.MultiheadAttention(d, d // 64, batch_first=True).to(device)
    in_proj = torch.nn.Linear(d, mamba2.in_proj.out_features, bias=False).to(device)
    out_proj = torch.nn.Linear(mamba2.d_inner, d, bias=False).to(device)
    d_inner = mamba2.d_inner

    def floor(x):
        return out_proj(in_proj(x)[..., :d_inner])

    impls = [
        ("ours Mamba2", lambda x: mamba2(x), 1),
        ("ours BiMamba2", lambda x: bimamba2(x), 2),
    ]
    if hf is not None:
        impls.append(("HF Mamba2 (torch path)", lambda x: hf(x), 1))
    impls += [
        ("MHA (SDPA)", lambda x: mha(x, x, x, need_weights=False)[0], None),
        ("matmul floor", floor, None),
    ]

    print(
        f"# device: {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), dtype {args.dtype}, torch {torch.__version__}"
    )
    print(
        f"# d_model {d}, expand {args.expand}, headdim {args.headdim}, "
        f"d_state {args.d_state}, chunk {args.chunk_size}, batch {args.batch}"
    )
    header = f"| {'T':>5} | {'module':<24} | {'fwd ms':>8} | {'fwd+bwd ms':>10} | {'fwd MiB':>8} | {'fwd+bwd MiB':>11} | {'fwd vs HF':>9} | {'f+b vs HF':>9} | {'fwd / floor':>11} | {'f+b / floor':>11} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for T in args.lengths:
        x = torch.randn(args.batch, T, d, device=device)
        forward, forward_backward = {}, {}
        for name, fn, _ in impls:

            def fwd(fn=fn):
                with torch.no_grad(), autocast:
                    fn(x)

            def fwd_bwd(fn=fn):
                xg = x.detach().requires_grad_(True)
                with autocast:
                    y = fn(xg)
                y.float().square().mean().backward()

            forward[name], forward_backward[name] = fwd, fwd_bwd
        fwd_ms = time_interleaved(forward, device, args.repeats)
        fb_ms = time_interleaved(forward_backward, device, args.repeats)
        results = {
            name: (
                (fwd_ms[name], peak_memory(forward[name], device)),
                (fb_ms[name], peak_memory(forward_backward[name], device)),
            )
            for name, _, _ in impls
        }
        floor_fwd, floor_fb = results["matmul floor"][0][0], results["matmul floor"][1][0]
        hf_res = results.get("HF Mamba2 (torch path)")
        for name, _, n_mixers in impls:
            (fwd_ms, fwd_mib), (fb_ms, fb_mib) = results[name]
            vs_hf = vs_hf_fb = fl = fl_fb = ""
            if hf_res is not None and name.startswith("ours Mamba2"):
                vs_hf = f"{hf_res[0][0] / fwd_ms:.2f}x"
                vs_hf_fb = f"{hf_res[1][0] / fb_ms:.2f}x"
            if n_mixers:
                fl = f"{fwd_ms / (n_mixers * floor_fwd):.2f}"
                fl_fb = f"{fb_ms / (n_mixers * floor_fb):.2f}"
            print(
                f"| {T:>5} | {name:<24} | {fwd_ms:>8.1f} | {fb_ms:>10.1f} | {fwd_mib:>8.0f} | "
                f"{fb_mib:>11.0f} | {vs_hf:>9} | {vs_hf_fb:>9} | {fl:>11} | {fl_fb:>11} |"
            )
        if hf is not None:
            with torch.no_grad(), autocast:
                ours_y, hf_y = mamba2(x).float(), hf(x).float()
            err = ((ours_y - hf_y).norm() / hf_y.norm()).item()
            print(f"|       | relative error ours vs HF Mamba2 at T={T}: {err:.2e} |")
    print(
        "# 'vs HF' = HF time / our time (higher is better); '/ floor' = our time / time of"
        " the projections' matrix products alone (1.00 is the floor; BiMamba2 counts two)."
    )
    if device.type == "cpu" and os.environ.get("OMP_NUM_THREADS") is None:
        print(f"# threads: {torch.get_num_threads()} (set OMP_NUM_THREADS to change)")


if __name__ == "__main__":
    main()
