#!/usr/bin/env python3
"""Recipe for SLURP intent classification with CALD (Wav2Vec2 -> BiMamba2).

A Wav2Vec2 encoder (its hidden states exposed to the distillation engine),
masked mean pooling over the last hidden state and a linear classifier over
the intents. The guiding mode is chosen by the hparams file: ``std`` (the
transformer itself; saves waypoints), ``unguided``, ``target``,
``trajectory``, ``waypoint`` and ``hybrid`` (linear-time BiMamba2 students).

Metrics: intent accuracy (exact match; ``ACC``, used to keep the best
checkpoint), and scenario and action accuracy with their mean (the figure the
paper reports as "IC accuracy", cald-reference section 3.12). Scenario and
action are *derived* from the predicted intent (each SLURP intent is one
scenario_action pair), not predicted by separate heads as in the reference.

To run this recipe, do the following:
> python train.py hparams/std.yaml --data_folder /path/to/slurp
> python train.py hparams/waypoint.yaml --data_folder /path/to/slurp \
      --std_folder results/SLURP/std/1986

The hparams path may be given from the current folder or from this recipe's
folder, so ``python recipes/SLURP/train.py hparams/waypoint.yaml`` works from
the repository root.

Authors
 * cald-brain developers 2026
"""

import csv
import json
import os
import shutil
import sys
import time
from collections import Counter

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.preprocess import AudioNormalizer
from speechbrain.utils.distributed import if_main_process, run_on_main
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import MetricStats

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
# The YAML names `slurp_prepare` (this folder) and `cald_brain` (the repo).
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.distill import DistillBrain, ModelOutputs  # noqa: E402
from cald_brain.dataio import read_audio  # noqa: E402
from cald_brain.hparams import load_recipe_hparams  # noqa: E402
from cald_brain.inference import write_model_spec  # noqa: E402

logger = get_logger(__name__)


class SLURPBrain(DistillBrain):
    """Intent classification: CE on the intent, accuracies at stage end."""

    def forward_model(self, model, batch, stage):
        """Runs a (student or teacher) Wav2Vec2 classifier on the batch."""
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

    def compute_objectives(self, predictions, batch, stage):
        """Adds the accuracy statistics in VALID/TEST."""
        loss = super().compute_objectives(predictions, batch, stage)
        if stage != sb.Stage.TRAIN:
            pred = predictions.student.predictions.argmax(-1).cpu()
            self.intent_metrics.append(
                batch.id, pred, batch.intent_encoded.data[:, 0].cpu()
            )
            self.scenario_metrics.append(
                batch.id, self.intent_to_scenario[pred], batch.scenario_encoded.data[:, 0].cpu()
            )
            self.action_metrics.append(
                batch.id, self.intent_to_action[pred], batch.action_encoded.data[:, 0].cpu()
            )
        return loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Steps the learning-rate schedule once per optimizer step."""
        if should_step:
            self.hparams.lr_annealing(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        """Resets the accuracy statistics."""
        if stage != sb.Stage.TRAIN:
            self.intent_metrics = MetricStats(metric=exact_match)
            self.scenario_metrics = MetricStats(metric=exact_match)
            self.action_metrics = MetricStats(metric=exact_match)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs the losses and accuracies; keeps the best-ACC checkpoint."""
        stats = self.stage_stats(stage_loss, stage)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["ACC"] = self.intent_metrics.summarize("average")
        stats["scenario_acc"] = self.scenario_metrics.summarize("average")
        stats["action_acc"] = self.action_metrics.summarize("average")
        stats["mean_scenario_action_acc"] = (stats["scenario_acc"] + stats["action_acc"]) / 2
        if stage == sb.Stage.VALID:
            stats_meta = {
                "epoch": epoch,
                "step": self.optimizer_step,
                "lr": self.optimizer.param_groups[0]["lr"],
            }
            self.hparams.train_logger.log_stats(
                stats_meta=stats_meta,
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stats,
            )
            self.checkpointer.save_and_keep_only(
                meta={"ACC": stats["ACC"], "step": self.optimizer_step},
                max_keys=["ACC"],
            )
        elif stage == sb.Stage.TEST:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats=stats,
            )
            self.test_stats = stats


def exact_match(predict, target):
    """Per-item 0/1 correctness (for ``MetricStats``).

    Arguments
    ---------
    predict : torch.Tensor
        Predicted class indices.
    target : torch.Tensor
        True class indices.

    Returns
    -------
    torch.Tensor
    """
    return (predict == target).float()


def _read_csv_column(path, column):
    with open(path, encoding="utf-8", newline="") as fin:
        return [row[column] for row in csv.DictReader(fin)]


def check_intents(csv_files, known, policy):
    """Finds devel/test intents that train lacks; errors or reports them.

    Arguments
    ---------
    csv_files : dict of str to str
        Split name -> manifest of an evaluation split.
    known : set of str
        Intents of the training manifest.
    policy : str
        ``error`` (raise) or ``skip`` (return them; the rows are dropped).

    Returns
    -------
    unseen : dict of str to collections.Counter
        Split -> unseen intent -> number of rows.
    """
    if policy not in ("error", "skip"):
        raise ValueError(f"unseen_intents must be 'error' or 'skip', got '{policy}'.")
    unseen = {}
    for split, path in csv_files.items():
        counts = Counter(i for i in _read_csv_column(path, "intent") if i not in known)
        if counts:
            unseen[split] = counts
    if unseen and policy == "error":
        listing = "; ".join(
            f"{split} ({path}): "
            + ", ".join(f"{intent} x{n}" for intent, n in sorted(unseen[split].items()))
            for split, path in csv_files.items()
            if split in unseen
        )
        raise ValueError(
            f"Intents absent from the training set appear in evaluation: {listing}. "
            "The classifier cannot predict them. Add training data for them, or "
            "run with --unseen_intents skip to drop those rows from evaluation."
        )
    for split, counts in unseen.items():
        logger.warning(
            "unseen_intents=skip: dropping %d %s rows with intents not in train: %s",
            sum(counts.values()), split, ", ".join(sorted(counts)),
        )
    return unseen


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
    train_intents = set(_read_csv_column(csvs["train"], "intent"))
    unseen = check_intents(
        {"devel": csvs["devel"], "test": csvs["test"]},
        train_intents,
        hparams["unseen_intents"],
    )

    datasets = {}
    for name, split in (("train", "train"), ("valid", "devel"), ("test", "test")):
        dataset = sb.dataio.dataset.DynamicItemDataset.from_csv(
            csv_path=csvs[split], replacements={"data_root": data_folder}
        )
        if split in unseen:
            dataset = dataset.filtered_sorted(
                key_test={"intent": lambda intent: intent in train_intents}
            )
        datasets[name] = dataset

    sorting = hparams["sorting"]
    if sorting in ("ascending", "descending"):
        datasets["train"] = datasets["train"].filtered_sorted(
            sort_key="duration", reverse=sorting == "descending"
        )
        hparams["train_dataloader_opts"]["shuffle"] = False
    elif sorting != "random":
        raise ValueError(f"sorting must be random, ascending or descending, got '{sorting}'.")
    for name in ("valid", "test"):
        datasets[name] = datasets[name].filtered_sorted(sort_key="duration")

    normalizer = AudioNormalizer(sample_rate=hparams["sample_rate"])

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return read_audio(wav, hparams["sample_rate"], normalizer)

    encoders = {
        key: sb.dataio.encoder.CategoricalEncoder()
        for key in ("intent", "scenario", "action")
    }

    def label_pipeline(key):
        @sb.utils.data_pipeline.takes(key)
        @sb.utils.data_pipeline.provides(f"{key}_encoded")
        def pipeline(label):
            return encoders[key].encode_sequence_torch([label])

        return pipeline

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline)
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
    sb.dataio.dataset.set_output_keys(
        all_sets,
        ["id", "sig", "intent_encoded", "scenario_encoded", "action_encoded"],
    )
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


def main(argv):
    """Trains one mode, evaluates the best checkpoint on test, writes results.json.

    Arguments
    ---------
    argv : list of str
        Command-line arguments (``hparams_file`` then options and overrides).
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    hparams, merged_file = load_recipe_hparams(hparams_file, overrides, RECIPE_DIR)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=merged_file,
        overrides=overrides,
    )
    # Saved as <output_folder>/hyperparams.yaml now: drop the temporary copy.
    shutil.rmtree(os.path.dirname(merged_file), ignore_errors=True)

    from slurp_prepare import prepare_slurp  # noqa: E402

    run_on_main(
        prepare_slurp,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "splits": ("train", "devel", "test"),
            "use_synthetic": hparams["use_synthetic"],
            "recording_type": hparams["recording_type"],
            "skip_prep": hparams["skip_prep"],
        },
    )
    datasets, encoders = dataio_prepare(hparams)
    n_labels = len(encoders["intent"])
    if n_labels != hparams["n_intents"]:
        raise ValueError(
            f"The classifier has n_intents={hparams['n_intents']} outputs but "
            f"train.csv holds {n_labels} intents (rows may have been skipped "
            f"at preparation). Run with --n_intents {n_labels}."
        )
    encoders["intent"].expect_len(hparams["n_intents"])

    brain = SLURPBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.intent_to_scenario, brain.intent_to_action = _scenario_action_lookup(
        os.path.join(hparams["save_folder"], "train.csv"), encoders
    )
    n_params = sum(p.numel() for p in hparams["model"].parameters())
    if if_main_process():
        # What cald_brain.inference.package_model needs to rebuild the model.
        write_model_spec(
            hparams["model"],
            hparams["save_folder"],
            mixer=hparams["mixer"],
            mixer_kwargs=hparams["mixer_kwargs"],
            sample_rate=hparams["sample_rate"],
            mode=hparams["mode"],
        )
    logger.info("%s student: %.2fM parameters", hparams["mode"], n_params / 1e6)

    start = time.time()
    brain.fit(
        brain.hparams.epoch_counter,
        datasets["train"],
        datasets["valid"],
        train_loader_kwargs=hparams["train_dataloader_opts"],
        valid_loader_kwargs=hparams["valid_dataloader_opts"],
    )
    train_time = time.time() - start

    brain.evaluate(
        datasets["test"],
        max_key="ACC",
        test_loader_kwargs=hparams["test_dataloader_opts"],
    )
    stats = brain.test_stats
    results = {
        "mode": hparams["mode"],
        "test": {
            "intent_acc": stats["ACC"],
            "scenario_acc": stats["scenario_acc"],
            "action_acc": stats["action_acc"],
            "mean_scenario_action_acc": stats["mean_scenario_action_acc"],
            "loss": stats["loss"],
        },
        "params": n_params,
        "train_time_s": train_time,
        "optimizer_steps": brain.optimizer_step,
        "n_test": len(datasets["test"]),
    }
    if if_main_process():
        with open(os.path.join(hparams["output_folder"], "results.json"), "w", encoding="utf-8") as fo:
            json.dump(results, fo, indent=2)
    logger.info("Test results: %s", results["test"])
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
