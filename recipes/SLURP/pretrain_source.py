#!/usr/bin/env python3
"""Pretrains a small Wav2Vec2 on SLURP transcripts with CTC: a *source* model.

CALD starts from a pretrained transformer (the paper: ``wav2vec2-large-lv60``,
cald-reference section 3.1). Without network access no pretrained Wav2Vec2
can be downloaded, so the demo makes its own, honestly: a randomly
initialised ``transformers.Wav2Vec2ForCTC`` in the lv60 layout (layer-norm
convolutional feature encoder with a total stride of 320, i.e. 50 frames per
second at 16 kHz; positional convolution; pre-LayerNorm transformer layers,
``do_stable_layer_norm=True``) at a small width is trained with CTC on the
character transcripts of the *train* split, then saved with
``save_pretrained``. The task the CALD modes then solve (intent
classification) is a different objective, as in the paper, where the source
was pretrained with a self-supervised objective.

The folder written holds ``config.json`` and the weights
(``Wav2Vec2ForCTC.from_pretrained(folder)`` loads them offline), the
character vocabulary ``vocab.json`` with its ``Wav2Vec2CTCTokenizer`` files,
the ``Wav2Vec2FeatureExtractor`` settings (per-utterance zero-mean,
unit-variance input, as used in training here) and ``pretrain_summary.json``
(sizes, steps, losses, greedy CER on devel, time).

Vocabulary: ``<pad>`` = 0 is the CTC blank and the padding id, ``|`` = 1 the
word delimiter, then the characters seen in the train transcripts, then
``<unk>``.

Usage::

    python recipes/SLURP/pretrain_source.py --data_folder recipes/SLURP/mini_slurp \
        --output results/slurp_demo/source --steps 400 --seed 1234

Authors
 * cald-brain developers 2026
"""

import argparse
import csv
import json
import logging
import math
import os
import random
import sys
import time

import soundfile as sf
import torch
from tqdm import tqdm

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
PAD_TOKEN = "<pad>"
WORD_DELIMITER = "|"
UNK_TOKEN = "<unk>"
# A light convolutional front end with the lv60 total stride (5 * 4 * 4 * 4 =
# 320 samples, i.e. 20 ms frames): the kernels overlap like lv60's.
CONV_KERNEL = (10, 8, 4, 4)
CONV_STRIDE = (5, 4, 4, 4)


# ---------------------------------------------------------------------------
# Vocabulary
# ---------------------------------------------------------------------------


def build_vocab(transcripts):
    """Character vocabulary for CTC: blank/pad 0, word delimiter 1, chars, unk.

    Arguments
    ---------
    transcripts : iterable of str
        Sentences whose characters make the vocabulary (spaces become ``|``).

    Returns
    -------
    vocab : dict
        Token -> id.

    Example
    -------
    >>> build_vocab(["ab a", "b"])
    {'<pad>': 0, '|': 1, 'a': 2, 'b': 3, '<unk>': 4}
    """
    chars = sorted({c for text in transcripts for c in normalise_text(text) if c != " "})
    vocab = {PAD_TOKEN: 0, WORD_DELIMITER: 1}
    for c in chars:
        vocab[c] = len(vocab)
    vocab[UNK_TOKEN] = len(vocab)
    return vocab


def normalise_text(text):
    """Lower case, single spaces (what the CTC targets spell).

    Arguments
    ---------
    text : str

    Returns
    -------
    str

    Example
    -------
    >>> normalise_text("  Wake ME   up ")
    'wake me up'
    """
    return " ".join(text.lower().split())


def encode(text, vocab):
    """Character ids of ``text`` (spaces as the word delimiter).

    Arguments
    ---------
    text : str
    vocab : dict

    Returns
    -------
    ids : list of int

    Example
    -------
    >>> encode("ab c", build_vocab(["ab c"]))
    [2, 3, 1, 4]
    """
    unk = vocab[UNK_TOKEN]
    return [vocab[WORD_DELIMITER] if c == " " else vocab.get(c, unk) for c in normalise_text(text)]


def greedy_decode(frame_ids, inverse_vocab):
    """CTC greedy decoding: collapse repeats, drop blanks, ``|`` -> space.

    Arguments
    ---------
    frame_ids : sequence of int
        Argmax id per frame.
    inverse_vocab : dict
        Id -> token.

    Returns
    -------
    str

    Example
    -------
    >>> inv = {0: "<pad>", 1: "|", 2: "a", 3: "b"}
    >>> greedy_decode([2, 2, 0, 2, 1, 1, 3, 0], inv)
    'aa b'
    """
    out, previous = [], None
    for i in frame_ids:
        i = int(i)
        if i != previous and i != 0:
            token = inverse_vocab.get(i, "")
            if token == WORD_DELIMITER:
                out.append(" ")
            elif token not in (PAD_TOKEN, UNK_TOKEN):
                out.append(token)
        previous = i
    return " ".join("".join(out).split())


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def build_source_model(vocab_size, hidden=96, layers=3, heads=4, ffn=None, conv_dim=64):
    """A random ``Wav2Vec2ForCTC`` in the lv60 layout, at a small size.

    Arguments
    ---------
    vocab_size : int
        Size of the CTC output layer (blank = pad = 0).
    hidden : int
        Transformer width.
    layers : int
        Transformer layers.
    heads : int
        Attention heads.
    ffn : int, optional
        Feed-forward width (default ``4 * hidden``).
    conv_dim : int
        Channels of every convolution of the feature encoder.

    Returns
    -------
    model : transformers.Wav2Vec2ForCTC

    Example
    -------
    >>> model = build_source_model(8, hidden=32, layers=1, heads=2, conv_dim=16)
    >>> model.config.do_stable_layer_norm, model.config.feat_extract_norm
    (True, 'layer')
    >>> int(model._get_feat_extract_output_lengths(torch.tensor(16000)))
    49
    """
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    config = Wav2Vec2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn or 4 * hidden,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        conv_dim=(conv_dim,) * len(CONV_KERNEL),
        conv_kernel=CONV_KERNEL,
        conv_stride=CONV_STRIDE,
        conv_bias=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        hidden_dropout=0.1,
        activation_dropout=0.0,
        attention_dropout=0.0,
        feat_proj_dropout=0.0,
        final_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.05,
        mask_time_length=5,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=None,
        ctc_loss_reduction="mean",
        ctc_zero_infinity=True,
    )
    return Wav2Vec2ForCTC(config)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def read_manifest(csv_path, data_folder):
    """Reads a ``slurp_prepare`` CSV and loads its audio into memory.

    Arguments
    ---------
    csv_path : str
        ``train.csv`` / ``devel.csv`` / ``test.csv``.
    data_folder : str
        Replaces ``$data_root`` in the ``wav`` column.

    Returns
    -------
    items : list of dict
        ``id``, ``wav`` (float tensor, 16 kHz, normalised) and ``transcript``.
    """
    items = []
    with open(csv_path, newline="", encoding="utf-8") as fin:
        for row in csv.DictReader(fin):
            path = row["wav"].replace("$data_root", data_folder)
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
            if rate != SAMPLE_RATE:
                raise ValueError(f"{path}: sample rate {rate}, expected {SAMPLE_RATE} Hz.")
            wav = torch.from_numpy(audio.mean(axis=1))
            items.append({"id": row["ID"], "wav": normalise_wav(wav), "transcript": row["transcript"]})
    return items


def normalise_wav(wav):
    """Zero mean, unit variance per utterance (``Wav2Vec2FeatureExtractor``).

    Arguments
    ---------
    wav : torch.Tensor
        ``[samples]``.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> w = normalise_wav(torch.tensor([1.0, 3.0]))
    >>> [round(v, 3) for v in w.tolist()]
    [-1.0, 1.0]
    """
    return (wav - wav.mean()) / torch.sqrt(wav.var(unbiased=False) + 1e-7)


def collate(items, vocab):
    """Pads waveforms (zeros) and labels (-100) into one batch.

    Arguments
    ---------
    items : list of dict
        From :func:`read_manifest`.
    vocab : dict

    Returns
    -------
    batch : dict
        ``input_values`` [B, T], ``attention_mask`` [B, T], ``labels`` [B, L].
    """
    n = max(len(it["wav"]) for it in items)
    targets = [encode(it["transcript"], vocab) for it in items]
    m = max(len(t) for t in targets)
    wavs = torch.zeros(len(items), n)
    mask = torch.zeros(len(items), n, dtype=torch.long)
    labels = torch.full((len(items), m), -100, dtype=torch.long)
    for i, (it, t) in enumerate(zip(items, targets)):
        wavs[i, : len(it["wav"])] = it["wav"]
        mask[i, : len(it["wav"])] = 1
        labels[i, : len(t)] = torch.tensor(t)
    return {"input_values": wavs, "attention_mask": mask, "labels": labels}


# ---------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------


def seed_everything(seed):
    """Seeds Python, NumPy (HF's time masks draw from it) and torch."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step, steps, lr, warmup):
    """Linear warm-up, then cosine decay to 5 % of ``lr``.

    Example
    -------
    >>> lr_at(0, 100, 1.0, 10), lr_at(10, 100, 1.0, 10)
    (0.1, 1.0)
    """
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def evaluate(model, items, vocab, batch_size=16):
    """Mean CTC loss and greedy character error rate on ``items``.

    Arguments
    ---------
    model : transformers.Wav2Vec2ForCTC
    items : list of dict
    vocab : dict
    batch_size : int

    Returns
    -------
    stats : dict
        ``ctc_loss``, ``cer`` and a few ``examples`` (reference, hypothesis).
    """
    import jiwer

    model.eval()
    inverse = {i: t for t, i in vocab.items()}
    losses, refs, hyps = [], [], []
    ordered = sorted(items, key=lambda it: len(it["wav"]))
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        batch = collate(chunk, vocab)
        out = model(**batch)
        losses.append(float(out.loss) * len(chunk))
        frames = model._get_feat_extract_output_lengths(batch["attention_mask"].sum(-1))
        for it, logits, n in zip(chunk, out.logits, frames):
            refs.append(normalise_text(it["transcript"]))
            hyps.append(greedy_decode(logits[: int(n)].argmax(-1).tolist(), inverse))
    cer = jiwer.cer(refs, hyps) if refs else float("nan")
    return {
        "ctc_loss": sum(losses) / max(1, len(items)),
        "cer": float(cer),
        "examples": list(zip(refs, hyps))[:3],
    }


def train_ctc(model, items, vocab, steps, batch_size=8, lr=2e-3, seed=1234, progress=True):
    """Trains ``model`` with CTC on ``items`` for ``steps`` optimiser steps.

    Arguments
    ---------
    model : transformers.Wav2Vec2ForCTC
    items : list of dict
        Training utterances (audio in memory).
    vocab : dict
    steps : int
    batch_size : int
    lr : float
        Peak learning rate (AdamW, warm-up then cosine decay).
    seed : int
        Seeds the batch order.
    progress : bool
        Show a tqdm bar.

    Returns
    -------
    losses : list of float
        Training loss per step.
    """
    model.train()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "layer_norm" in name else decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    rng = random.Random(seed)
    order = []
    losses = []
    bar = tqdm(range(steps), desc="pretraining source (CTC)", disable=not progress, dynamic_ncols=True)
    for step in bar:
        if len(order) < batch_size:
            fresh = list(range(len(items)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chunk = [items[i] for i in order[:batch_size]]
        del order[:batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup=max(1, steps // 10))
        loss = model(**collate(chunk, vocab)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(ctc=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    return losses


def save_source(model, vocab, output, summary):
    """Writes the model, vocabulary, tokenizer, feature extractor and summary.

    Arguments
    ---------
    model : transformers.Wav2Vec2ForCTC
    vocab : dict
    output : str
        Folder (created).
    summary : dict
        Saved as ``pretrain_summary.json``.
    """
    from transformers import Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor

    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output)
    vocab_path = os.path.join(output, "vocab.json")
    with open(vocab_path, "w", encoding="utf-8") as fout:
        json.dump(vocab, fout, indent=1)
    tokenizer = Wav2Vec2CTCTokenizer(
        vocab_path,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        word_delimiter_token=WORD_DELIMITER,
        bos_token=None,
        eos_token=None,
    )
    tokenizer.save_pretrained(output)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=True,
    ).save_pretrained(output)
    with open(os.path.join(output, "pretrain_summary.json"), "w", encoding="utf-8") as fout:
        json.dump(summary, fout, indent=2)


def pretrain_source(
    data_folder,
    output,
    steps=400,
    seed=1234,
    hidden=96,
    layers=3,
    heads=4,
    ffn=None,
    conv_dim=64,
    batch_size=8,
    lr=2e-3,
    manifest_folder=None,
    progress=True,
):
    """Prepares the manifests, pretrains the source with CTC, saves it.

    Arguments
    ---------
    data_folder : str
        SLURP root (e.g. ``recipes/SLURP/mini_slurp``).
    output : str
        Folder for the ``save_pretrained`` model and vocabulary.
    steps : int
        Optimiser steps.
    seed : int
        Seeds the initialisation and the batch order.
    hidden, layers, heads, ffn, conv_dim : int
        Model sizes (see :func:`build_source_model`).
    batch_size : int
        Utterances per step.
    lr : float
        Peak learning rate.
    manifest_folder : str, optional
        Where ``slurp_prepare`` writes its CSVs (default ``<output>/manifests``).
    progress : bool
        Show progress bars.

    Returns
    -------
    summary : dict
        What was trained and how well (also saved to the folder).
    """
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from slurp_prepare import prepare_slurp

    start = time.time()
    data_folder = os.path.abspath(data_folder)
    manifest_folder = manifest_folder or os.path.join(output, "manifests")
    prepared = prepare_slurp(data_folder, manifest_folder, splits=("train", "devel"))
    train = read_manifest(prepared["csv"]["train"], data_folder)
    devel = read_manifest(prepared["csv"]["devel"], data_folder)
    logger.info("Source pretraining on %d train / %d devel recordings", len(train), len(devel))

    vocab = build_vocab(it["transcript"] for it in train)
    seed_everything(seed)
    model = build_source_model(len(vocab), hidden, layers, heads, ffn, conv_dim)
    n_params = sum(p.numel() for p in model.parameters())
    before = evaluate(model, devel, vocab)
    seed_everything(seed)
    losses = train_ctc(model, train, vocab, steps, batch_size, lr, seed, progress)
    after = evaluate(model, devel, vocab)
    model.eval()
    summary = {
        "data_folder": data_folder,
        "objective": "CTC on character transcripts (train split)",
        "sizes": {
            "hidden": hidden,
            "layers": layers,
            "heads": heads,
            "ffn": ffn or 4 * hidden,
            "conv_dim": conv_dim,
            "conv_kernel": list(CONV_KERNEL),
            "conv_stride": list(CONV_STRIDE),
        },
        "params": n_params,
        "vocab_size": len(vocab),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "train_recordings": len(train),
        "train_ctc_loss_last10": sum(losses[-10:]) / max(1, len(losses[-10:])),
        "devel_ctc_loss_before": before["ctc_loss"],
        "devel_ctc_loss": after["ctc_loss"],
        "devel_cer_before": before["cer"],
        "devel_cer": after["cer"],
        "devel_examples": after["examples"],
        "time_s": round(time.time() - start, 1),
    }
    save_source(model, vocab, output, summary)
    logger.info(
        "Source saved to %s: %d params, devel CTC loss %.3f -> %.3f, greedy CER %.3f -> %.3f",
        output,
        n_params,
        before["ctc_loss"],
        after["ctc_loss"],
        before["cer"],
        after["cer"],
    )
    return summary


def main(argv=None):
    """Command line entry point; returns the summary dict."""
    parser = argparse.ArgumentParser(
        description="Pretrain a small Wav2Vec2 with CTC on SLURP transcripts (the CALD source model)."
    )
    parser.add_argument("--data_folder", default="recipes/SLURP/mini_slurp", help="SLURP root")
    parser.add_argument("--output", default="results/slurp_demo/source", help="save_pretrained folder")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=None, help="default 4 * hidden")
    parser.add_argument("--conv_dim", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--manifest_folder", default=None)
    parser.add_argument("--no_progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = pretrain_source(
        args.data_folder,
        args.output,
        steps=args.steps,
        seed=args.seed,
        hidden=args.hidden,
        layers=args.layers,
        heads=args.heads,
        ffn=args.ffn,
        conv_dim=args.conv_dim,
        batch_size=args.batch_size,
        lr=args.lr,
        manifest_folder=args.manifest_folder,
        progress=not args.no_progress,
    )
    print(
        f"source: {summary['params']:,} params, {summary['steps']} steps in {summary['time_s']} s; "
        f"devel CTC loss {summary['devel_ctc_loss_before']:.3f} -> {summary['devel_ctc_loss']:.3f}, "
        f"greedy CER {summary['devel_cer_before']:.3f} -> {summary['devel_cer']:.3f}"
    )
    for ref, hyp in summary["devel_examples"]:
        print(f"  ref: {ref}\n  hyp: {hyp}")
    return summary


if __name__ == "__main__":
    main()
