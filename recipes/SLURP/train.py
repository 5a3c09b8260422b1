#!/usr/bin/env python3
"""Recipe for SLURP intent classification with CALD (Wav2Vec2 / Whisper -> BiMamba2).

A pretrained speech encoder (its hidden states exposed to the distillation
engine), masked mean pooling and a linear classifier over the intents; the
guiding mode is chosen by the hparams file (std, unguided, target,
trajectory, waypoint, hybrid). Everything that is not SLURP's (hparams,
training loop, checkpoints, results.json) comes from ``cald_brain.recipe``.

Metrics: intent accuracy (``ACC``, picks the best checkpoint), scenario and
action accuracy derived from the predicted intent and their mean (the
paper's "IC accuracy", cald-reference section 3.12), and accuracy on test
phrasings unseen in training where the corpus marks them.

> python recipes/SLURP/train.py hparams/std.yaml --data_folder /path/to/slurp
> python recipes/SLURP/train.py hparams/waypoint.yaml --data_folder /path/to/slurp \
      --std_folder results/SLURP/std/1986

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
# The YAML names `slurp_prepare` (this folder) and `cald_brain` (the repo).
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.dataio import (  # noqa: E402
    audio_pipeline,
    check_n_classes,
    check_unseen_labels,
    csv_header,
    exact_match,
    manifest_datasets,
    read_csv_column,
    use_dynamic_batching,
)
from cald_brain.distill import ModelOutputs  # noqa: E402
from cald_brain.inference import IntentClassifier  # noqa: E402
from cald_brain.recipe import RecipeBrain, run_recipe  # noqa: E402

logger = get_logger(__name__)


class SLURPBrain(RecipeBrain):
    """Intent classification: CE on the intent; intent, scenario, action accuracy."""

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
        """Cross-entropy of the intent."""
        intents, _ = batch.intent_encoded
        return F.cross_entropy(predictions.float(), intents[:, 0].to(predictions.device))

    def init_metrics(self, stage):
        """Intent (exact), scenario and action accuracy; intent accuracy on unseen phrasings."""
        self.metrics = {key: MetricStats(metric=exact_match) for key in ("ACC", "scenario", "action", "unseen")}

    def update_metrics(self, predictions, batch, stage):
        """Adds one batch's predictions to the accuracies."""
        pred = predictions.predictions.argmax(-1).cpu()
        intent = batch.intent_encoded.data[:, 0].cpu()
        self.metrics["ACC"].append(batch.id, pred, intent)
        self.metrics["scenario"].append(
            batch.id, self.intent_to_scenario[pred], batch.scenario_encoded.data[:, 0].cpu()
        )
        self.metrics["action"].append(
            batch.id, self.intent_to_action[pred], batch.action_encoded.data[:, 0].cpu()
        )
        flags = getattr(batch, "unseen_phrasing_flag", None)
        unseen = [] if flags is None else torch.as_tensor(flags).nonzero().flatten().tolist()
        if unseen:
            self.metrics["unseen"].append([batch.id[i] for i in unseen], pred[unseen], intent[unseen])

    def summarize_metrics(self, stage):
        """Accuracies (fractions); unseen-phrasing ones only where the corpus marks them."""
        stats = {"ACC": self.metrics["ACC"].summarize("average")}
        stats["scenario_acc"] = self.metrics["scenario"].summarize("average")
        stats["action_acc"] = self.metrics["action"].summarize("average")
        stats["mean_scenario_action_acc"] = (stats["scenario_acc"] + stats["action_acc"]) / 2
        n_unseen = len(self.metrics["unseen"].ids)
        if n_unseen:
            stats["unseen_phrasing_acc"] = self.metrics["unseen"].summarize("average")
            stats["n_unseen_phrasing"] = n_unseen
            n_seen = len(self.metrics["ACC"].ids) - n_unseen
            if n_seen:
                total = stats["ACC"] * len(self.metrics["ACC"].ids)
                stats["seen_phrasing_acc"] = (total - stats["unseen_phrasing_acc"] * n_unseen) / n_seen
        return stats


def dataio_prepare(hparams):
    """Builds the datasets, their pipelines and the label encoders.

    Arguments
    ---------
    hparams : dict
        The recipe's hparams.

    Returns
    -------
    datasets : dict of str to DynamicItemDataset
        ``train``, ``valid``, ``test``.
    encoders : dict of str to CategoricalEncoder
        ``intent`` (saved to ``<save_folder>/label_encoder.txt``),
        ``scenario``, ``action``.
    """
    data_folder = hparams["data_folder"]
    save_folder = hparams["save_folder"]
    csvs = {s: os.path.join(save_folder, f"{s}.csv") for s in ("train", "devel", "test")}
    train_intents = set(read_csv_column(csvs["train"], "intent"))
    unseen = check_unseen_labels({"devel": csvs["devel"], "test": csvs["test"]}, "intent",
                                 train_intents, hparams["unseen_intents"], option="--unseen_intents")

    seen = {split: {"intent": lambda intent: intent in train_intents} for split in unseen}
    datasets = manifest_datasets(
        {"train": csvs["train"], "valid": csvs["devel"], "test": csvs["test"]},
        data_folder,
        sorting=hparams["sorting"],
        train_loader_opts=hparams["train_dataloader_opts"],
        keep={"valid": seen.get("devel"), "test": seen.get("test")},
    )
    if hparams["dynamic_batching"]:
        use_dynamic_batching(datasets["train"], hparams["train_dataloader_opts"],
                             hparams["max_batch_length"], hparams["num_buckets"], seed=hparams["seed"])

    encoders = {key: sb.dataio.encoder.CategoricalEncoder() for key in ("intent", "scenario", "action")}

    def label_pipeline(key):
        @sb.utils.data_pipeline.takes(key)
        @sb.utils.data_pipeline.provides(f"{key}_encoded")
        def pipeline(label):
            return encoders[key].encode_sequence_torch([label])

        return pipeline

    @sb.utils.data_pipeline.takes("unseen_phrasing")
    @sb.utils.data_pipeline.provides("unseen_phrasing_flag")
    def phrasing_pipeline(flag):
        # Optional column of generated corpora; real SLURP leaves it empty.
        return str(flag).strip().lower() in ("1", "true", "yes")

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline(hparams["sample_rate"]))
    for key in encoders:
        sb.dataio.dataset.add_dynamic_item(all_sets, label_pipeline(key))

    # The intent encoder is what inference needs: saved with the checkpoints.
    encoders["intent"].load_or_create(
        path=os.path.join(save_folder, "label_encoder.txt"),
        from_didatasets=[datasets["train"]],
        output_key="intent",
    )
    for key in ("scenario", "action"):
        encoders[key].update_from_didataset(datasets["train"], key)
        encoders[key].add_label("<unseen>")  # eval-only values never match
        _unseen_tolerant(encoders[key])
        encoders[key].ignore_len()
    keys = ["id", "sig", "intent_encoded", "scenario_encoded", "action_encoded"]
    if "unseen_phrasing" in csv_header(csvs["train"]):
        sb.dataio.dataset.add_dynamic_item(all_sets, phrasing_pipeline)
        keys.append("unseen_phrasing_flag")
    sb.dataio.dataset.set_output_keys(all_sets, keys)
    check_n_classes(hparams["n_intents"], encoders["intent"], "n_intents")
    return datasets, encoders


def _scenario_action_lookup(train_csv, encoders):
    """Index tensors mapping an intent index to its scenario / action index."""
    intent_enc = encoders["intent"]
    scen = torch.zeros(len(intent_enc), dtype=torch.long)
    act = torch.zeros(len(intent_enc), dtype=torch.long)
    with open(train_csv, encoding="utf-8", newline="") as fin:
        for row in csv.DictReader(fin):
            i = intent_enc.encode_label(row["intent"])
            scen[i] = encoders["scenario"].encode_label(row["scenario"])
            act[i] = encoders["action"].encode_label(row["action"])
    return scen, act


def _unseen_tolerant(encoder):
    """Maps labels the encoder lacks (devel/test only) to ``<unseen>``."""
    original = encoder.encode_label

    def encode_label(label, allow_unk=True):
        if label not in encoder.lab2ind:
            label = "<unseen>"
        return original(label, allow_unk)

    encoder.encode_label = encode_label


def prepare(hparams):
    """SLURP manifests (``slurp_prepare``), on the main process."""
    from slurp_prepare import prepare_slurp

    keys = ("data_folder", "save_folder", "use_synthetic", "recording_type", "skip_prep")
    prepare_slurp(splits=("train", "devel", "test"), **{key: hparams[key] for key in keys})


def setup(brain, encoders):
    """Gives the Brain the intent -> scenario / action lookups."""
    brain.intent_to_scenario, brain.intent_to_action = _scenario_action_lookup(
        os.path.join(brain.hparams.save_folder, "train.csv"), encoders
    )


def main(argv):
    """Trains one mode, evaluates the best checkpoint on test, writes results.json.

    Arguments
    ---------
    argv : list of str
        Command-line arguments (``hparams_file`` then options and overrides).

    Returns
    -------
    SLURPBrain
    """
    return run_recipe(argv, RECIPE_DIR, SLURPBrain, dataio_prepare, prepare, IntentClassifier, setup)


if __name__ == "__main__":
    main(sys.argv[1:])
