"""CTC targets and greedy decoding for speech recognition recipes.

Two kinds of targets, both with the CTC blank at index 0:

* **characters** (the paper's, cald-reference section 3.11): a SpeechBrain
  ``CTCTextEncoder`` laid out as the reference vocabulary, blank (0), a-z
  (1-26), ``'`` (27), the word delimiter (28, written as a space here,
  ``|`` in the reference) and an unknown symbol (29): 30 symbols;
* **SentencePiece units**: SpeechBrain's ``SentencePiece`` tokenizer (a
  ``sentencepiece`` model trained on the training transcripts); unit ``i`` is
  CTC output ``i + 1``, so the blank stays 0.

:func:`encode_text`, :func:`decode_ids`, :func:`n_outputs` and
:func:`greedy_transcripts` work with either.

Authors
 * cald-brain developers 2026
"""

import torch

CHARACTERS = list("abcdefghijklmnopqrstuvwxyz' ")
BLANK = "<blank>"
UNK = "<unk>"


def char_encoder():
    """The character ``CTCTextEncoder`` of the paper's vocabulary (30 symbols).

    Returns
    -------
    speechbrain.dataio.encoder.CTCTextEncoder

    Example
    -------
    >>> enc = char_encoder()
    >>> len(enc), enc.encode_label("a"), enc.encode_label(" "), enc.get_blank_index()
    (30, 1, 28, 0)
    """
    from speechbrain.dataio.encoder import CTCTextEncoder

    encoder = CTCTextEncoder()
    encoder.insert_blank(BLANK, index=0)
    for char in CHARACTERS:
        encoder.add_label(char)
    encoder.add_unk(UNK)
    encoder.expect_len(len(CHARACTERS) + 2)
    return encoder


def _is_sentencepiece(tokenizer):
    return hasattr(tokenizer, "encode_as_ids") or hasattr(getattr(tokenizer, "sp", None), "encode_as_ids")


def _processor(tokenizer):
    """The ``SentencePieceProcessor`` of SpeechBrain's wrapper (or the processor itself)."""
    return getattr(tokenizer, "sp", tokenizer)


def n_outputs(tokenizer):
    """CTC outputs a tokenizer needs (its symbols, blank included).

    Arguments
    ---------
    tokenizer : CTCTextEncoder or SentencePiece or SentencePieceProcessor

    Returns
    -------
    int

    Example
    -------
    >>> n_outputs(char_encoder())
    30
    """
    if _is_sentencepiece(tokenizer):
        return _processor(tokenizer).get_piece_size() + 1
    return len(tokenizer)


def encode_text(text, tokenizer):
    """A transcript -> CTC target ids (never the blank).

    Arguments
    ---------
    text : str
    tokenizer : CTCTextEncoder or SentencePiece or SentencePieceProcessor

    Returns
    -------
    list of int

    Example
    -------
    >>> encode_text("hi you", char_encoder())
    [8, 9, 28, 25, 15, 21]
    """
    if _is_sentencepiece(tokenizer):
        return [i + 1 for i in _processor(tokenizer).encode_as_ids(text)]
    return tokenizer.encode_sequence(list(text), allow_unk=True)


def decode_ids(ids, tokenizer):
    """CTC output ids (already collapsed, no blanks) -> text.

    Arguments
    ---------
    ids : sequence of int
    tokenizer : CTCTextEncoder or SentencePiece or SentencePieceProcessor

    Returns
    -------
    str

    Example
    -------
    >>> decode_ids([8, 9, 28, 25, 15, 21], char_encoder())
    'hi you'
    """
    ids = [int(i) for i in ids]
    if _is_sentencepiece(tokenizer):
        return _processor(tokenizer).decode_ids([i - 1 for i in ids if i > 0])
    # A head may have more outputs than symbols (the paper's 32 for 30): never emitted once trained.
    labels = tokenizer.decode_ndim([i for i in ids if i < len(tokenizer)])
    return " ".join("".join(label for label in labels if label not in (BLANK, UNK)).split())


def greedy_transcripts(logits, mask, tokenizer):
    """Best path CTC decoding: argmax per frame, repeats merged, blanks dropped.

    Arguments
    ---------
    logits : torch.Tensor
        ``[B, T, V]`` (or log-probabilities).
    mask : torch.Tensor or None
        ``[B, T]``, True on real frames.
    tokenizer : CTCTextEncoder or SentencePiece

    Returns
    -------
    texts : list of str
    ids : list of list of int

    Example
    -------
    >>> enc = char_encoder()
    >>> logits = torch.full((1, 6, 30), -5.0)
    >>> for t, i in enumerate([8, 8, 0, 9, 9, 0]):
    ...     logits[0, t, i] = 5.0
    >>> greedy_transcripts(logits, None, enc)[0]
    ['hi']
    """
    best = logits.argmax(-1).cpu()
    lengths = [best.shape[1]] * best.shape[0] if mask is None else mask.sum(1).tolist()
    texts, ids = [], []
    for row, length in zip(best, lengths):
        path = row[: int(length)].tolist()
        collapsed = [p for k, p in enumerate(path) if p != 0 and (k == 0 or p != path[k - 1])]
        ids.append(collapsed)
        texts.append(decode_ids(collapsed, tokenizer))
    return texts, ids


def frame_lengths(mask):
    """``[B]`` frame counts of a ``[B, T]`` mask (int64), for CTC.

    Example
    -------
    >>> frame_lengths(torch.tensor([[True, True, False]])).tolist()
    [2]
    """
    return mask.sum(1).long()


def train_sentencepiece(model_dir, vocab_size, train_csv, model_type="unigram", text_column="wrd"):
    """Trains (or loads, when there) SpeechBrain's SentencePiece on the training transcripts.

    Arguments
    ---------
    model_dir : str
    vocab_size : int
        Units (CTC has one output more, the blank).
    train_csv : str
    model_type : str
        ``unigram``, ``bpe`` or ``char``.
    text_column : str

    Returns
    -------
    speechbrain.tokenizers.SentencePiece.SentencePiece
    """
    from speechbrain.tokenizers.SentencePiece import SentencePiece

    return SentencePiece(
        model_dir=model_dir,
        vocab_size=vocab_size,
        annotation_train=train_csv,
        annotation_read=text_column,
        model_type=model_type,
        character_coverage=1.0,
        bos_id=-1,
        eos_id=-1,
    )


def word_error_rate(references, hypotheses):
    """WER (percent) of hypotheses against references, with SpeechBrain's ``ErrorRateStats``.

    Arguments
    ---------
    references, hypotheses : str or list of str
        One text, or one per utterance (words split on white space).

    Returns
    -------
    float

    Example
    -------
    >>> word_error_rate("the cat sat on the mat", "the cat sat on mat")
    16.666666666666668
    >>> word_error_rate(["a b", "c d"], ["a b", "x"])
    50.0
    """
    from speechbrain.utils.metric_stats import ErrorRateStats

    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses.")
    stats = ErrorRateStats()
    ids = [str(i) for i in range(len(references))]
    stats.append(ids, [h.split() for h in hypotheses], [r.split() for r in references])
    return stats.summarize("error_rate")


def char_error_rate(references, hypotheses):
    """CER (percent): :func:`word_error_rate` over characters (spaces count as symbols).

    Example
    -------
    >>> char_error_rate("the cat", "the bat")
    14.285714285714286
    """
    if isinstance(references, str):
        references, hypotheses = [references], [hypotheses]
    return word_error_rate([" ".join(r.replace(" ", "_")) for r in references],
                           [" ".join(h.replace(" ", "_")) for h in hypotheses])
