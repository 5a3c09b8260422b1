#!/usr/bin/env python3
"""Toy CALD recipe used by the distillation tests (no dataset, no network).

A tiny random Wav2Vec2 (HF ``Wav2Vec2ForSequenceClassification``: conv
feature encoder, 2 transformer layers of width 32, masked mean pooling,
linear classifier) learns to tell three tones apart in synthetic 16 kHz
waveforms of random length. The student is the same model with every
self-attention converted to BiMamba2.

To run this recipe, do the following (PYTHONPATH=<repo root>):
> python toy_recipe.py hparams/std.yaml --output_folder /tmp/std \
      --source_checkpoint /tmp/source.ckpt
> python toy_recipe.py hparams/waypoint.yaml --output_folder /tmp/wp \
      --source_checkpoint /tmp/source.ckpt --std_folder /tmp/std

Every mode file ``!include``s ``hparams/base.yaml`` under the key ``base``;
:func:`load_hparams` lifts the base keys to the top level (mode keys win).
Base keys are overridden on the command line through the include, e.g.
``--base "{lr: 0.01, number_of_epochs: 5}"``.

Authors
 * cald-brain developers 2026
"""

import json
import math
import os
import sys
import time

import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.integrations.huggingface.huggingface import make_padding_masks
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from cald_brain.distill import DistillBrain, ModelOutputs, unwrap_module

SAMPLE_RATE = 16000


def build_toy_model(n_classes=3, source=None, config=None, hidden_dropout=0.1):
    """A tiny random Wav2Vec2 classifier, optionally loaded from ``source``.

    Arguments
    ---------
    n_classes : int
        Number of classes.
    source : str, optional
        State dict of the "pretrained" model.
    config : dict, optional
        Overrides of the transformer size (``hidden_size``,
        ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``)
        or of any other ``Wav2Vec2Config`` field set here (e.g.
        ``feat_extract_norm: layer`` for a model whose real frames do not
        depend on the padding).
    hidden_dropout : float
        Dropout of the residual branches (exercises RNG restoration).

    Returns
    -------
    model : Wav2Vec2ForSequenceClassification
    """
    fields = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="group",
        hidden_dropout=hidden_dropout,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
        num_labels=n_classes,
        classifier_proj_size=16,
        use_weighted_layer_sum=False,
    )
    fields.update(config or {})
    model = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**fields))
    if source is not None:
        model.load_state_dict(torch.load(source, weights_only=True))
    return model


def make_dataset(n_examples, seed, n_classes=3, min_seconds=0.15, max_seconds=0.25):
    """Synthetic tones: class ``c`` is a sine at ``300 * (c + 1)`` Hz plus noise.

    Every waveform is generated from its own seed, so the data never draws
    from the global random generators.

    Arguments
    ---------
    n_examples : int
        Number of utterances.
    seed : int
        Base seed.
    n_classes : int
        Number of classes.
    min_seconds : float
        Shortest utterance.
    max_seconds : float
        Longest utterance.

    Returns
    -------
    dataset : DynamicItemDataset
        Output keys ``id``, ``sig``, ``label``.
    """
    generator = torch.Generator().manual_seed(seed)
    low, high = int(min_seconds * SAMPLE_RATE), int(max_seconds * SAMPLE_RATE)
    data = {}
    for i in range(n_examples):
        data[f"utt{i:03d}"] = {
            "cls": i % n_classes,
            "n_samples": int(torch.randint(low, high, (1,), generator=generator)),
            "seed": seed * 10000 + i,
        }
    dataset = DynamicItemDataset(data)

    @sb.utils.data_pipeline.takes("cls", "n_samples", "seed")
    @sb.utils.data_pipeline.provides("sig", "label")
    def tone_pipeline(cls, n_samples, seed):
        gen = torch.Generator().manual_seed(seed)
        t = torch.arange(n_samples) / SAMPLE_RATE
        phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
        sig = torch.sin(2 * math.pi * 300 * (cls + 1) * t + phase)
        yield sig + 0.3 * torch.randn(n_samples, generator=gen)
        yield torch.LongTensor([cls])

    dataset.add_dynamic_item(tone_pipeline)
    dataset.set_output_keys(["id", "sig", "label"])
    return dataset


class ToyBrain(DistillBrain):
    """The whole recipe side of CALD: two hooks and the usual stage end."""

    def forward_model(self, model, batch, stage):
        """Runs a (student or teacher) Wav2Vec2 classifier on the batch."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        attention_mask = make_padding_masks(wavs, wav_lens).long()
        out = model(wavs, attention_mask=attention_mask, output_hidden_states=True)
        # Frame mask at the encoder's rate (cald-reference section 3.4).
        mask = unwrap_module(model).wav2vec2._get_feature_vector_attention_mask(
            out.hidden_states[-1].shape[1], attention_mask
        )
        # Index 0 is the encoder input (after the positional conv): skipped,
        # as in the reference (section 3.8).
        return ModelOutputs(
            predictions=out.logits,
            hidden_states=out.hidden_states[1:],
            mask=mask,
            logits=out.logits,
        )

    def teacher_forward(self, teacher, batch, stage):
        """Counts teacher forwards (tests check unguided runs none)."""
        self.teacher_forward_calls += 1
        return super().teacher_forward(teacher, batch, stage)

    def compute_task_loss(self, predictions, batch, stage):
        """Cross-entropy of the utterance class."""
        labels, _ = batch.label
        return F.cross_entropy(predictions.float(), labels[:, 0].to(self.device))

    def compute_objectives(self, predictions, batch, stage):
        """Adds the accuracy count in VALID/TEST."""
        loss = super().compute_objectives(predictions, batch, stage)
        if stage != sb.Stage.TRAIN:
            pred = predictions.student.predictions.argmax(-1).cpu()
            self.n_correct += int((pred == batch.label.data[:, 0].cpu()).sum())
            self.n_seen += len(pred)
        return loss

    def on_fit_start(self):
        """Test instrumentation, then the engine's start-up."""
        self.teacher_forward_calls = 0
        self.history = []
        self.epoch_stats = []
        super().on_fit_start()

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Records what the tests check, step by step."""
        guide = getattr(self.guide, "guide", self.guide)
        self.history.append(
            {
                "optimizer_step": self.optimizer_step,
                "distilled": outputs.teacher is not None,
                "transfer": outputs.transfer is not None,
                "terms": dict(self.last_loss_terms),
                "waypoint": getattr(guide, "current_waypoint", None),
                "teacher_updates": getattr(guide, "n_updates", None),
            }
        )
        if self.hparams.step_delay:
            time.sleep(self.hparams.step_delay)
        super().on_fit_batch_end(batch, outputs, loss, should_step)  # lr_annealing

    def on_stage_start(self, stage, epoch=None):
        """Resets the accuracy counts."""
        self.n_correct, self.n_seen = 0, 0

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs every loss term; keeps the best-accuracy checkpoint."""
        stats = self.stage_stats(stage_loss, stage)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["ACC"] = self.n_correct / max(self.n_seen, 1)
        if stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            self.epoch_stats.append(
                {"epoch": epoch, "train": self.train_stats, "valid": stats}
            )
            self.checkpointer.save_and_keep_only(
                meta={"ACC": stats["ACC"]}, max_keys=["ACC"]
            )


def load_hparams(hparams_file, overrides=None):
    """Loads a mode file and lifts its ``base`` keys to the top level.

    Arguments
    ---------
    hparams_file : str
        A mode file (``hparams/<mode>.yaml``).
    overrides : dict or str, optional
        HyperPyYAML overrides of the mode file's top-level keys.

    Returns
    -------
    hparams : dict
    """
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    merged = dict(hparams.pop("base", {}))
    merged.update(hparams)
    return merged


class CountingSchedule:
    """A stand-in ``lr_annealing``: records, at each call, how many steps the
    optimizer it is given has taken (AdamW's per-parameter step count)."""

    def __init__(self):
        self.calls = []

    def __call__(self, optimizer):
        """Records the call.

        Arguments
        ---------
        optimizer : torch.optim.AdamW
        """
        first = optimizer.param_groups[0]["params"][0]
        state = optimizer.state.get(first, {})
        self.calls.append(int(state["step"]) if "step" in state else 0)


def run(hparams_file, overrides=None, run_opts=None, hparams_update=None, brain_class=None):
    """Trains one mode; returns the brain.

    Arguments
    ---------
    hparams_file : str
        A mode file.
    overrides : dict or str, optional
        HyperPyYAML overrides.
    run_opts : dict, optional
        SpeechBrain run options (``device``, ``precision``,
        ``grad_accumulation_factor``, ``ckpt_interval_steps`` ...).
    hparams_update : dict, optional
        Python objects added to the loaded hparams (e.g. ``lr_annealing``).
    brain_class : type, optional
        A :class:`ToyBrain` subclass (test instrumentation).

    Returns
    -------
    brain : ToyBrain
    """
    hparams = load_hparams(hparams_file, overrides)
    hparams.update(hparams_update or {})
    os.makedirs(hparams["output_folder"], exist_ok=True)
    train_set = make_dataset(hparams["n_train"], seed=1, n_classes=hparams["n_classes"])
    valid_set = make_dataset(hparams["n_valid"], seed=2, n_classes=hparams["n_classes"])
    run_opts = dict(run_opts or {})
    run_opts.setdefault("device", "cpu")
    run_opts.setdefault("noprogressbar", True)
    brain = (brain_class or ToyBrain)(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(
        hparams["epoch_counter"],
        train_set,
        valid_set,
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    return brain


def write_results(brain, output_folder):
    """Writes the final weights and stats that the resume test compares.

    Arguments
    ---------
    brain : ToyBrain
        A trained brain.
    output_folder : str
        Where ``final_state.pt`` and ``final.json`` go.
    """
    state = {
        "student": {
            k: v.detach().cpu()
            for k, v in brain.modules[brain.student_module].state_dict().items()
        }
    }
    teacher = brain.guide.teacher_modules()
    if hasattr(brain.guide, "optimizer") and teacher:
        state["teacher"] = {
            k: v.detach().cpu() for k, v in teacher[0].state_dict().items()
        }
    torch.save(state, os.path.join(output_folder, "final_state.pt"))
    with open(os.path.join(output_folder, "final.json"), "w", encoding="utf-8") as fo:
        json.dump(
            {
                "optimizer_step": brain.optimizer_step,
                "epoch_stats": brain.epoch_stats,
                "history": brain.history,
            },
            fo,
        )


if __name__ == "__main__":
    torch.set_num_threads(1)
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    # Only the options given on the command line override the YAML's.
    opts = {key: getattr(run_opts, key) for key in run_opts.overridden_args}
    brain = run(hparams_file, overrides, opts)
    write_results(brain, brain.hparams.output_folder)
