#!/usr/bin/env python3
"""Recipe for TED-LIUM 3 speech recognition with CALD (Wav2Vec2 / Whisper -> BiMamba2).

A pretrained speech encoder (its hidden states exposed to the distillation
engine) and a linear CTC head over characters (the paper's 30 symbols,
blank 0) or SentencePiece units (``--token_type unigram``). The guiding mode
is chosen by the hparams file (std, unguided, target, trajectory, waypoint,
hybrid). Everything that is not TED-LIUM's (hparams, training loop,
checkpoints, results.json, packaging) comes from ``cald_brain.recipe``.

Loss: CTC summed over the batch and divided by its target symbols (the
reference's per-character normalisation), plus, in guided modes, the layer
loss (``alpha_layer``, paper 15) and output distillation on the CTC frame
posteriors (``alpha_kd`` 1, temperature 2; padded frames masked).

Metrics: WER (selects the best checkpoint, lower is better) and CER with
SpeechBrain's ``ErrorRateStats``, greedy CTC decoding. The test stage writes
``<output_folder>/wer_test.txt`` (per-utterance alignments) and
``hyp_test.csv`` (ID, reference, hypothesis).

> python recipes/TEDLIUM/train.py hparams/std.yaml --data_folder /path/to/TEDLIUM_release-3
> python recipes/TEDLIUM/train.py hparams/hybrid.yaml --data_folder /path/to/TEDLIUM_release-3 \
      --std_folder results/TEDLIUM/std/1986

Authors
 * cald-brain developers 2026
"""

import csv
import os
import shutil
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.logger import get_logger
from speechbrain.utils.metric_stats import ErrorRateStats

RECIPE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(os.path.dirname(RECIPE_DIR))
for _path in (RECIPE_DIR, REPO_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from cald_brain.asr import (  # noqa: E402
    char_encoder,
    encode_text,
    greedy_transcripts,
    n_outputs,
    train_sentencepiece,
)
from cald_brain.dataio import audio_pipeline, manifest_datasets, use_dynamic_batching  # noqa: E402
from cald_brain.distill import ModelOutputs  # noqa: E402
from cald_brain.inference import CTCTranscriber, SentencePieceCTCTranscriber  # noqa: E402
from cald_brain.recipe import RecipeBrain, run_recipe  # noqa: E402

logger = get_logger(__name__)
TOKEN_TYPES = ("char", "unigram", "bpe")


class TEDLIUMBrain(RecipeBrain):
    """CTC speech recognition: per-character CTC; WER and CER."""

    def forward_model(self, model, batch, stage):
        """Runs a (student or teacher) CTC recogniser on the batch."""
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        out = model(wavs, wav_lens)
        return ModelOutputs(
            predictions=(out.logits, out.mask),
            hidden_states=out.hidden_states,
            mask=out.mask,
            logits=out.logits,
        )

    def compute_task_loss(self, predictions, batch, stage):
        """CTC, summed over utterances, divided by the batch's target symbols."""
        logits, mask = predictions
        tokens, token_lens = batch.tokens
        lengths = torch.round(token_lens * tokens.shape[1]).long().cpu()
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)
        loss = F.ctc_loss(
            log_probs, tokens.to(logits.device), mask.sum(1).long(), lengths.to(logits.device),
            blank=0, reduction="sum", zero_infinity=True,
        )
        return loss / lengths.sum().clamp(min=1)

    def init_metrics(self, stage):
        """Word and character error rates."""
        self.wer_metric = ErrorRateStats()
        self.cer_metric = ErrorRateStats(split_tokens=True)
        self.hypotheses = []

    def update_metrics(self, predictions, batch, stage):
        """Greedy CTC decoding of one batch, added to WER and CER."""
        logits, mask = predictions.predictions
        hyps, _ = greedy_transcripts(logits.detach(), mask, self.tokenizer)
        refs = list(batch.wrd)
        self.wer_metric.append(batch.id, [h.split() for h in hyps], [r.split() for r in refs])
        self.cer_metric.append(batch.id, [h.split() for h in hyps], [r.split() for r in refs])
        self.hypotheses.extend(zip(batch.id, refs, hyps))

    def summarize_metrics(self, stage):
        """WER, CER (percent); the test stage also writes the hypotheses."""
        stats = {"WER": self.wer_metric.summarize("error_rate"), "CER": self.cer_metric.summarize("error_rate")}
        if stage == sb.Stage.TEST and sb.utils.distributed.if_main_process():
            folder = self.hparams.output_folder
            with open(os.path.join(folder, "wer_test.txt"), "w", encoding="utf-8") as fo:
                self.wer_metric.write_stats(fo)
            with open(os.path.join(folder, "hyp_test.csv"), "w", encoding="utf-8", newline="") as fo:
                writer = csv.writer(fo)
                writer.writerow(["ID", "reference", "hypothesis"])
                writer.writerows(sorted(self.hypotheses))
        return stats


def make_tokenizer(hparams):
    """The CTC targets' tokenizer: characters, or SentencePiece trained on train.csv.

    The tokenizer is saved in the save folder (``tokenizer.txt`` or
    ``tokenizer.model``), where packaging finds it.
    """
    token_type = hparams["token_type"]
    if token_type not in TOKEN_TYPES:
        raise ValueError(f"token_type must be one of {TOKEN_TYPES}, got '{token_type}'.")
    save_folder = hparams["save_folder"]
    os.makedirs(save_folder, exist_ok=True)
    if token_type == "char":
        tokenizer = char_encoder()
        tokenizer.save(os.path.join(save_folder, "tokenizer.txt"))
    else:
        sp = train_sentencepiece(
            os.path.join(save_folder, "sentencepiece"), hparams["sp_vocab_size"],
            os.path.join(save_folder, "train.csv"), model_type=token_type,
        )
        shutil.copyfile(sp.prefix_model_file + ".model", os.path.join(save_folder, "tokenizer.model"))
        tokenizer = sp.sp
    needed = n_outputs(tokenizer)
    if needed > hparams["n_tokens"]:
        raise ValueError(
            f"The {token_type} tokenizer needs {needed} CTC outputs (blank included) but the model has "
            f"n_tokens={hparams['n_tokens']}: pass --n_tokens {needed} (or more)."
        )
    return tokenizer


def dataio_prepare(hparams):
    """Builds the datasets, their pipelines and the tokenizer.

    Arguments
    ---------
    hparams : dict

    Returns
    -------
    datasets : dict of str to DynamicItemDataset
        ``train``, ``valid`` (dev), ``test``.
    tokenizer : CTCTextEncoder or sentencepiece.SentencePieceProcessor
    """
    save_folder = hparams["save_folder"]
    csvs = {"train": "train.csv", "valid": "dev.csv", "test": "test.csv"}
    datasets = manifest_datasets(
        {k: os.path.join(save_folder, v) for k, v in csvs.items()}, hparams["data_folder"],
        sorting=hparams["sorting"], train_loader_opts=hparams["train_dataloader_opts"],
    )
    if hparams["max_train_duration"]:
        limit = float(hparams["max_train_duration"])
        datasets["train"] = datasets["train"].filtered_sorted(key_max_value={"duration": limit})
    if hparams["dynamic_batching"]:
        use_dynamic_batching(datasets["train"], hparams["train_dataloader_opts"],
                             hparams["max_batch_length"], hparams["num_buckets"], seed=hparams["seed"])
    tokenizer = make_tokenizer(hparams)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("wrd", "tokens")
    def text_pipeline(wrd):
        yield wrd
        yield torch.LongTensor(encode_text(wrd, tokenizer))

    all_sets = list(datasets.values())
    sb.dataio.dataset.add_dynamic_item(all_sets, audio_pipeline(hparams["sample_rate"]))
    sb.dataio.dataset.add_dynamic_item(all_sets, text_pipeline)
    sb.dataio.dataset.set_output_keys(all_sets, ["id", "sig", "wrd", "tokens"])
    return datasets, tokenizer


def prepare(hparams):
    """TED-LIUM manifests (``tedlium_prepare``), on the main process."""
    from tedlium_prepare import prepare_tedlium

    prepare_tedlium(
        hparams["data_folder"], hparams["save_folder"], split_type=hparams["split_type"],
        min_duration=hparams["min_duration"], skip_prep=hparams["skip_prep"], progress=False,
    )


def setup(brain, tokenizer):
    """Gives the Brain its tokenizer (decoding for the metrics)."""
    brain.tokenizer = tokenizer


def interface(hparams):
    """The packaged model's interface: by the kind of targets."""
    return CTCTranscriber if hparams["token_type"] == "char" else SentencePieceCTCTranscriber


def main(argv):
    """Trains one mode, evaluates the best (lowest dev WER) checkpoint on test, writes results.json.

    Arguments
    ---------
    argv : list of str

    Returns
    -------
    TEDLIUMBrain
    """
    return run_recipe(argv, RECIPE_DIR, TEDLIUMBrain, dataio_prepare, prepare, interface, setup)


if __name__ == "__main__":
    main(sys.argv[1:])
