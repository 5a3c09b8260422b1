#!/usr/bin/env python3
"""Training-step time of each CALD guiding mode, relative to unguided.

A Wav2Vec2-shaped CTC model (HF ``Wav2Vec2ForCTC``, random weights, conv
feature encoder frozen as in the reference) is converted to BiMamba2 for the
student; every mode then trains through :class:`cald_brain.distill.DistillBrain`
(``fit_batch`` with its precision and accumulation machinery) on the same
synthetic batch, with the layerwise loss over all layers and output KD
(alpha 1, beta 2), as in the TED-LIUM reference runs:

* ``std``         the transformer itself (no conversion, no teacher);
* ``unguided``    the student, no teacher (the reference of the ratios);
* ``target``      + a frozen transformer teacher, forward only;
* ``waypoint``    + a frozen teacher reloaded from disk every
  ``--waypoint-every`` steps (the switch cost amortised);
* ``trajectory``  + a teacher that also trains once every ``--tu`` steps;
* ``hybrid-on``   hybrid before its cut-off (``distill_until`` not reached);
* ``hybrid-off``  hybrid after its cut-off (no teacher forward).

Time is measured over blocks of ``lcm(--tu, --waypoint-every)`` steps, so
that each sample amortises one trajectory update and one waypoint load. The
blocks of all modes are interleaved (round robin, in a shuffled order each
round), so that load from other processes on the machine hits all modes
alike; the median block is reported, and the fastest block (the least
disturbed) as a second estimate.

Example
-------
python benchmarks/bench_distill.py --sizes tiny,base --batch-size 2 --seconds 1 --blocks 3
"""

import argparse
import functools
import logging
import math
import random
import statistics
import tempfile
import time
import types

import torch
import torch.nn.functional as F
from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

from cald_brain.distill import (
    DistillBrain,
    HybridCutoff,
    ModelOutputs,
    NoGuide,
    TargetGuide,
    TrajectoryGuide,
    WaypointGuide,
    WaypointSaver,
    build_student,
    unwrap_module,
)

SIZES = {
    # hidden, layers, heads, ffn, conv channels, mixer kwargs
    "tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        conv_dim=(32,) * 7, mixer_kwargs=dict(d_state=16, headdim=16),
    ),
    "base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        conv_dim=(512,) * 7, mixer_kwargs={},  # the paper's Mamba2 (d_state 128, headdim 64, expand 1)
    ),
}
MODES = ("std", "unguided", "target", "waypoint", "trajectory", "hybrid-on", "hybrid-off")
VOCAB = 32


def make_model(size):
    """A random Wav2Vec2ForCTC of the given size, feature encoder frozen."""
    spec = dict(SIZES[size])
    spec.pop("mixer_kwargs")
    config = Wav2Vec2Config(
        **spec,
        vocab_size=VOCAB,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
        mask_time_prob=0.0,
        layerdrop=0.0,
        ctc_zero_infinity=True,
    )
    model = Wav2Vec2ForCTC(config)
    model.freeze_feature_encoder()
    return model


class BenchBrain(DistillBrain):
    """CTC recipe hooks: HF forward, masked hidden states, CTC task loss."""

    def forward_model(self, model, batch, stage):
        wavs, attention_mask, _ = batch
        out = model(wavs, attention_mask=attention_mask, output_hidden_states=True)
        mask = unwrap_module(model).wav2vec2._get_feature_vector_attention_mask(
            out.logits.shape[1], attention_mask
        )
        return ModelOutputs(
            predictions=(out.logits, mask),
            hidden_states=out.hidden_states[1:],
            mask=mask,
            logits=out.logits,
        )

    def compute_task_loss(self, predictions, batch, stage):
        logits, mask = predictions
        targets = batch[2]
        log_probs = F.log_softmax(logits.float(), -1).transpose(0, 1)
        target_lengths = torch.full((targets.shape[0],), targets.shape[1], dtype=torch.long)
        return F.ctc_loss(log_probs, targets, mask.sum(1), target_lengths, zero_infinity=True)


def make_batch(batch_size, seconds):
    samples = int(16000 * seconds)
    wavs = torch.randn(batch_size, samples)
    attention_mask = torch.ones(batch_size, samples, dtype=torch.long)
    if batch_size > 1:  # one shorter utterance, so masks are exercised
        attention_mask[-1, int(0.8 * samples):] = 0
        wavs[-1, int(0.8 * samples):] = 0
    targets = torch.randint(1, VOCAB, (batch_size, max(2, int(seconds * 10))))
    return wavs, attention_mask, targets


class SharedModels:
    """Modules shared by the brains of all modes.

    Timing does not depend on the values of the weights, so every converted
    mode trains the same student (with one optimizer) and every forward-only
    guide runs the same frozen teacher. This keeps one copy of each model in
    memory instead of one per mode (about 12 GB at base width otherwise),
    which would make the machine page and disturb the measurement.
    """

    def __init__(self, size, source_state, modes):
        self.size, self.source_state = size, source_state
        converted = [m for m in modes if m != "std"]
        self.std = self.transformer() if "std" in modes else None
        self.student = (
            build_student(
                self.transformer, mixer="bimamba2", mixer_kwargs=SIZES[size]["mixer_kwargs"]
            )
            if converted
            else None
        )
        fixed = {"target", "waypoint", "hybrid-on", "hybrid-off"}
        self.teacher = self.transformer() if fixed & set(modes) else None
        self._optimizers = {}

    def transformer(self):
        model = make_model(self.size)
        model.load_state_dict(self.source_state)
        return model

    def opt_class(self, model):
        """An opt_class giving each model one AdamW, whichever brain asks."""

        def make(params):
            if id(model) not in self._optimizers:
                self._optimizers[id(model)] = torch.optim.AdamW(params, lr=1e-5)
            return self._optimizers[id(model)]

        return make


def make_brain(mode, shared, waypoint_folder, args):
    student = shared.std if mode == "std" else shared.student
    if mode in ("std", "unguided"):
        guide = NoGuide()
    elif mode == "target":
        guide = TargetGuide(shared.teacher)
    elif mode == "waypoint":
        guide = WaypointGuide(shared.teacher, waypoint_folder)
    elif mode == "trajectory":
        guide = TrajectoryGuide(
            shared.transformer(),
            functools.partial(torch.optim.AdamW, lr=1e-5),
            update_interval=args.tu,
        )
    elif mode == "hybrid-on":
        guide = HybridCutoff(TargetGuide(shared.teacher), distill_until=10**9)
    elif mode == "hybrid-off":
        guide = HybridCutoff(TargetGuide(shared.teacher), distill_until=0)
    brain = BenchBrain(
        modules={"model": student},
        opt_class=shared.opt_class(student),
        hparams={"guide": guide, "alpha_layer": 1.0, "alpha_kd": 1.0},
        run_opts={
            "device": args.device,
            "precision": args.precision,
            "noprogressbar": True,
            "grad_accumulation_factor": 1,
        },
    )
    brain.on_fit_start()
    brain.modules.train()
    return brain


def bench_size(size, args):
    torch.manual_seed(0)
    source_state = make_model(size).state_dict()
    batch = make_batch(args.batch_size, args.seconds)
    batch = tuple(t.to(args.device) for t in batch)
    block = math.lcm(args.tu, args.waypoint_every)
    total_steps = block * (args.warmup_blocks + args.blocks)
    modes = args.modes.split(",")
    order = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        # Waypoints every --waypoint-every steps (copies of the source).
        saver = WaypointSaver(tmp, interval_steps=1)
        holder = types.SimpleNamespace(modules={"model": make_model(size)}, optimizer_step=0)
        holder.modules["model"].load_state_dict(source_state)
        for step in range(args.waypoint_every, total_steps + 1, args.waypoint_every):
            holder.optimizer_step = step
            saver.save(holder)
        del holder

        shared = SharedModels(size, source_state, modes)
        brains = {m: make_brain(m, shared, tmp, args) for m in modes}
        blocks = {m: [] for m in modes}
        for round_ in range(args.warmup_blocks + args.blocks):
            for mode in order.sample(modes, len(modes)):
                brain = brains[mode]
                _sync(args.device)
                start = time.perf_counter()
                for _ in range(block):
                    brain.step += 1
                    brain.fit_batch(batch)
                _sync(args.device)
                if round_ >= args.warmup_blocks:
                    blocks[mode].append((time.perf_counter() - start) / block)
        params = {
            m: sum(p.numel() for p in brains[m].modules.parameters()) / 1e6 for m in modes
        }
        forwards = {m: brains[m].guide.n_teacher_forwards for m in modes}
        load_time = None
        if "waypoint" in brains:
            # Time of one teacher switch (read + copy), measured on its own.
            guide, loads = brains["waypoint"].guide, []
            for step in (1, args.waypoint_every + 1) * 2:
                _sync(args.device)
                start = time.perf_counter()
                guide.select(step)
                _sync(args.device)
                loads.append(time.perf_counter() - start)
            load_time = statistics.median(loads)
    return blocks, params, forwards, block, load_time


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,base", help="comma list of: tiny, base")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="utterance length")
    parser.add_argument("--blocks", type=int, default=3, help="measured blocks per mode")
    parser.add_argument("--warmup-blocks", type=int, default=1)
    parser.add_argument("--tu", type=int, default=4, help="trajectory T_u")
    parser.add_argument("--waypoint-every", type=int, default=4, help="steps between waypoints")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("speechbrain").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(
        f"device={args.device} threads={torch.get_num_threads()} precision={args.precision} "
        f"batch={args.batch_size}x{args.seconds}s, {args.blocks} blocks "
        f"(+{args.warmup_blocks} warm-up) of lcm(T_u={args.tu}, waypoint every "
        f"{args.waypoint_every}) steps per mode"
    )
    for size in args.sizes.split(","):
        blocks, params, forwards, block, load_time = bench_size(size, args)
        medians = {m: statistics.median(b) for m, b in blocks.items()}
        fastest = {m: min(b) for m, b in blocks.items()}
        spec = SIZES[size]
        print(
            f"\n{size}: hidden {spec['hidden_size']}, {spec['num_hidden_layers']} layers, "
            f"{spec['num_attention_heads']} heads; {block} steps per block"
        )
        print(
            "| mode | step (s), median block | x unguided | step (s), fastest block "
            "| x unguided | student params (M) | teacher forwards |"
        )
        print("|---|---|---|---|---|---|---|")
        for mode in blocks:
            ratio = _ratio(medians, mode)
            ratio_fast = _ratio(fastest, mode)
            print(
                f"| {mode} | {medians[mode]:.3f} | {ratio} | {fastest[mode]:.3f} "
                f"| {ratio_fast} | {params[mode]:.1f} | {forwards[mode]} |"
            )
        if load_time is not None:
            print(
                f"waypoint switch (load + copy into the teacher): {load_time:.3f} s, "
                f"amortised over every {args.waypoint_every} steps above "
                "(the reference switches every 10 000 steps)"
            )


def _ratio(times, mode):
    return f"{times[mode] / times['unguided']:.2f}" if "unguided" in times else "-"


if __name__ == "__main__":
    main()
