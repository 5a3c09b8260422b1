#!/usr/bin/env python3
"""Recipe for VoxCeleb1 speaker identification with CALD (Wav2Vec2 / Whisper -> BiMamba2).

A pretrained speech encoder (its hidden states exposed to the distillation
engine), masked mean pooling (the paper's; ``--pooling attentive`` for
SpeechBrain's attentive statistics pooling) and a linear layer over the
speakers; the guiding mode is chosen by the hparams file (std, unguided,
target, trajectory, waypoint, hybrid). Training reads random crops of
``crop_seconds`` (``null``: whole utterances); dev and test read whole
utterances. Everything that is not VoxCeleb's (hparams, training loop,
checkpoints, results.json) comes from ``cald_brain.recipe``.

Metrics: top-1 accuracy (``ACC``, picks the best checkpoint) and top-5
accuracy; the test stage writes each utterance's prediction to
``predictions_test.csv``. The packaged model loads with SpeechBrain's own
``EncoderClassifier.from_hparams`` (see :mod:`cald_brain.inference.speaker`).

> python recipes/VoxCeleb/train.py hparams/std.yaml --data_folder /data/voxceleb1
> python recipes/VoxCeleb/train.py hparams/waypoint.yaml --data_folder /data/voxceleb1 \
      --std_folder results/VoxCeleb/std/1986

Authors
 * cald-brain developers 2026
"""

import csv
import os
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import MetricStats

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
# The YAML names `voxceleb_prepare` (this folder) and `cald_brain` (the repo).
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.dataio import (  # noqa: E402
    audio_crop_pipeline,
    audio_pipeline,
    cap_durations,
    check_n_classes,
    exact_match,
    manifest_datasets,
    use_dynamic_batching,
)
from cald_brain.distill import ModelOutputs  # noqa: E402
from cald_brain.inference import SpeakerClassifier  # noqa: E402
from cald_brain.recipe import RecipeBrain, run_recipe  # noqa: E402

logger = get_logger(__name__)


def top_k_hits(logits, targets, k):
    """Whether each target is among the ``k`` highest logits (1.0 / 0.0).

    Example
    -------
    >>> logits = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    >>> top_k_hits(logits, torch.tensor([2, 1]), 2).tolist()
    [1.0, 1.0]
    >>> top_k_hits(logits, torch.tensor([2, 1]), 1).tolist()
    [0.0, 0.0]
    """
    k = min(k, logits.shape[-1])
    best = logits.topk(k, dim=-1).indices
    return (best == targets[:, None]).any(-1).float()


class VoxCelebBrain(RecipeBrain):
    """Speaker identification: CE over the speakers; top-1 and top-5 accuracy."""

    def forward_model(self, model, batch, stage):
        """Runs a (student or teacher) speech classifier on the batch."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        out = model(wavs, wav_lens)
        return ModelOutputs(
            predictions=out.logits,
            hidden_states=out.hidden_states,
            mask=out.mask,
            logits=out.logits,
        )

    def compute_task_loss(self, predictions, batch, stage):
        """Cross-entropy of the speaker."""
        speakers, _ = batch.spk_id_encoded
        return F.cross_entropy(predictions.float(), speakers[:, 0].to(predictions.device))

    def init_metrics(self, stage):
        """Top-1 (exact) and top-5 accuracy."""
        self.metrics = {"ACC": MetricStats(metric=exact_match), "top5": MetricStats(metric=_identity)}
        self.predictions = []

    def update_metrics(self, predictions, batch, stage):
        """Adds one batch's predictions to the accuracies."""
        logits = predictions.predictions.detach().float().cpu()
        speakers = batch.spk_id_encoded.data[:, 0].cpu()
        best = logits.argmax(-1)
        self.metrics["ACC"].append(batch.id, best, speakers)
        self.metrics["top5"].append(batch.id, top_k_hits(logits, speakers, 5))
        if stage == sb.Stage.TEST:
            decode = self.label_encoder.decode_ndim
            self.predictions.extend(zip(batch.id, decode(speakers.tolist()), decode(best.tolist())))

    def summarize_metrics(self, stage):
        """Accuracies (fractions); the test stage also writes each utterance's prediction."""
        if stage == sb.Stage.TEST and sb.utils.distributed.if_main_process():
            with open(os.path.join(self.hparams.output_folder, "predictions_test.csv"), "w", encoding="utf-8",
                      newline="") as fo:
                writer = csv.writer(fo)
                writer.writerow(["ID", "speaker", "predicted"])
                writer.writerows(sorted(self.predictions))
        return {"ACC": self.metrics["ACC"].summarize("average"), "top5_ACC": self.metrics["top5"].summarize("average")}


def _identity(hits):
    return hits


def dataio_prepare(hparams):
    """Builds the datasets, their pipelines and the speaker encoder.

    Arguments
    ---------
    hparams : dict
        The recipe's hparams.

    Returns
    -------
    datasets : dict of str to DynamicItemDataset
        ``train``, ``valid``, ``test``.
    encoders : dict of str to CategoricalEncoder
        ``spk_id`` (saved to ``<save_folder>/label_encoder.txt``).
    """
    save_folder = hparams["save_folder"]
    csvs = {"train": "train.csv", "valid": "dev.csv", "test": "test.csv"}
    datasets = manifest_datasets(
        {name: os.path.join(save_folder, file) for name, file in csvs.items()},
        hparams["data_folder"],
        sorting=hparams["sorting"],
        train_loader_opts=hparams["train_dataloader_opts"],
    )
    crop = hparams["crop_seconds"]
    if crop and hparams.get("cache_teacher"):
        raise ValueError(
            "cache_teacher keeps one teacher output per utterance, but with crop_seconds "
            f"{crop} each epoch reads another window: set --crop_seconds null or --cache_teacher False."
        )
    if hparams["dynamic_batching"]:
        if crop:  # batches are sized by what is read: at most a crop per utterance
            cap_durations(datasets["train"], crop)
        use_dynamic_batching(datasets["train"], hparams["train_dataloader_opts"],
                             hparams["max_batch_length"], hparams["num_buckets"], seed=hparams["seed"])

    rate = hparams["sample_rate"]
    train_audio = audio_crop_pipeline(rate, crop) if crop else audio_pipeline(rate)
    sb.dataio.dataset.add_dynamic_item([datasets["train"]], train_audio)
    sb.dataio.dataset.add_dynamic_item([datasets["valid"], datasets["test"]], audio_pipeline(rate))

    speakers = sb.dataio.encoder.CategoricalEncoder()

    @sb.utils.data_pipeline.takes("spk_id")
    @sb.utils.data_pipeline.provides("spk_id_encoded")
    def speaker_pipeline(spk_id):
        return speakers.encode_sequence_torch([spk_id])

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, speaker_pipeline)
    # The speaker encoder is what inference needs: saved with the checkpoints.
    speakers.load_or_create(
        path=os.path.join(save_folder, "label_encoder.txt"),
        from_didatasets=[datasets["train"]],
        output_key="spk_id",
    )
    sb.dataio.dataset.set_output_keys(all_sets, ["id", "sig", "spk_id_encoded"])
    check_n_classes(hparams["n_speakers"], speakers, "n_speakers")
    return datasets, {"spk_id": speakers}


def prepare(hparams):
    """VoxCeleb1 manifests (``voxceleb_prepare``), on the main process."""
    from voxceleb_prepare import prepare_voxceleb

    keys = ("data_folder", "save_folder", "split_file", "wav_folders", "unseen_speakers", "skip_prep")
    prepare_voxceleb(splits=("train", "dev", "test"), **{key: hparams[key] for key in keys})


def setup(brain, encoders):
    """Gives the Brain the speaker encoder (test predictions are written by name)."""
    brain.label_encoder = encoders["spk_id"]


def main(argv):
    """Trains one mode, evaluates the best (dev accuracy) checkpoint on test, writes results.json.

    Arguments
    ---------
    argv : list of str
        Command-line arguments (``hparams_file`` then options and overrides).

    Returns
    -------
    VoxCelebBrain
    """
    return run_recipe(argv, RECIPE_DIR, VoxCelebBrain, dataio_prepare, prepare, SpeakerClassifier, setup)


if __name__ == "__main__":
    main(sys.argv[1:])
