"""Utterance classifier on a Wav2Vec2-family encoder (intent, speaker ...).

The head of CALD's classification tasks (cald-reference section 3.7): masked
mean pooling over the valid frames of the encoder's *last* hidden state
(after the final encoder LayerNorm in the stable-layer-norm layout of
``wav2vec2-large-lv60``), then one linear layer. The encoder is an HF
``Wav2Vec2Model`` (HuBERT, WavLM and Data2VecAudio share its layout), so
:func:`cald_brain.convert.convert` turns the whole classifier into a
linear-time student and the state dict of either is a plain PyTorch one.

Every hidden state the distillation compares is returned with the frame
mask, so the recipe hands them to :class:`cald_brain.distill.DistillBrain`
as they are.

Authors
 * cald-brain developers 2026
"""

import logging
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class ClassifierOutput:
    """What :class:`Wav2Vec2Classifier` returns.

    Arguments
    ---------
    logits : torch.Tensor
        ``[B, n_classes]``.
    hidden_states : tuple of torch.Tensor
        One ``[B, T, C]`` tensor per encoder layer (the encoder's input,
        index 0 of HF's tuple, is left out as in the reference, section 3.8).
    mask : torch.Tensor
        ``[B, T]`` boolean frame mask (True on real frames).
    """

    logits: torch.Tensor
    hidden_states: tuple
    mask: torch.Tensor


def masked_mean(x, mask):
    """Mean over time of the frames where ``mask`` is True.

    Arguments
    ---------
    x : torch.Tensor
        ``[B, T, C]``.
    mask : torch.Tensor
        ``[B, T]``, True (or 1) on real frames.

    Returns
    -------
    pooled : torch.Tensor
        ``[B, C]``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0], [100.0]]])
    >>> masked_mean(x, torch.tensor([[1, 1, 0]]))
    tensor([[2.]])
    """
    mask = mask.to(x.dtype).unsqueeze(-1)
    return (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)


class Wav2Vec2Classifier(nn.Module):
    """Wav2Vec2 encoder, masked mean pooling, linear classifier.

    Arguments
    ---------
    encoder : transformers.Wav2Vec2Model
        The encoder (or a HuBERT / WavLM / Data2VecAudio model).
    n_classes : int
        Number of output classes.
    normalize_input : bool
        Zero-mean, unit-variance normalisation of each waveform over its own
        length, as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does for
        the ``lv60`` models.

    Example
    -------
    >>> TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
    ...     conv_kernel=(10, 8), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2, layerdrop=0.0)
    >>> model = build_wav2vec2_classifier(3, config=TINY_CONFIG)
    >>> out = model(torch.randn(2, 4000), torch.tensor([1.0, 0.5]))
    >>> out.logits.shape, len(out.hidden_states), out.mask.sum(1).tolist()
    (torch.Size([2, 3]), 2, [198, 98])
    """

    def __init__(self, encoder, n_classes, normalize_input=True):
        super().__init__()
        self.encoder = encoder
        self.normalize_input = normalize_input
        self.classifier = nn.Linear(encoder.config.hidden_size, n_classes)

    @property
    def n_classes(self):
        """Number of output classes."""
        return self.classifier.out_features

    def forward(self, wavs, wav_lens=None):
        """Classifies a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]`` at 16 kHz, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths (SpeechBrain convention); None: no padding.

        Returns
        -------
        output : ClassifierOutput
        """
        n_samples = wavs.shape[1]
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        abs_lens = torch.round(wav_lens * n_samples).long().clamp(1, n_samples)
        sample_mask = torch.arange(n_samples, device=wavs.device)[None, :] < abs_lens[:, None]
        if self.normalize_input:
            wavs = self._normalize(wavs, sample_mask)
        out = self.encoder(
            wavs,
            attention_mask=sample_mask.long(),
            output_hidden_states=True,
        )
        hidden = out.hidden_states
        mask = self.encoder._get_feature_vector_attention_mask(
            hidden[-1].shape[1], sample_mask.long()
        ).bool()
        logits = self.classifier(masked_mean(out.last_hidden_state, mask))
        return ClassifierOutput(logits=logits, hidden_states=tuple(hidden[1:]), mask=mask)

    @staticmethod
    def _normalize(wavs, sample_mask):
        m = sample_mask.to(wavs.dtype)
        n = m.sum(1, keepdim=True).clamp(min=1.0)
        mean = (wavs * m).sum(1, keepdim=True) / n
        var = (((wavs - mean) * m) ** 2).sum(1, keepdim=True) / n
        return (wavs - mean) / torch.sqrt(var + 1e-7) * m


def build_wav2vec2_classifier(
    n_classes,
    source=None,
    config=None,
    config_overrides=None,
    freeze_feature_encoder=True,
    normalize_input=True,
    cache_dir=None,
):
    """Builds a :class:`Wav2Vec2Classifier` from pretrained weights or a config.

    Meant for YAML (``!apply:cald_brain.lobes.build_wav2vec2_classifier``).

    Arguments
    ---------
    n_classes : int
        Number of output classes.
    source : str, optional
        HF hub id (``facebook/wav2vec2-large-lv60``) or a local folder written
        by ``save_pretrained``; loaded with ``Wav2Vec2Model.from_pretrained``
        (a local folder needs no network).
    config : dict, optional
        ``Wav2Vec2Config`` keyword arguments: a randomly initialised encoder
        of that shape (what packaged models use before their weights are
        loaded). Exactly one of ``source`` and ``config`` is given.
    config_overrides : dict, optional
        Config attributes changed on top of ``source``'s (dropouts,
        ``layerdrop``, ``mask_time_prob`` ...).
    freeze_feature_encoder : bool
        Freeze the convolutional feature encoder (as HF and the reference do).
    normalize_input : bool
        See :class:`Wav2Vec2Classifier`.
    cache_dir : str, optional
        HF cache folder for hub downloads.

    Returns
    -------
    model : Wav2Vec2Classifier

    Example
    -------
    >>> TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
    ...     conv_kernel=(10, 8), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2)
    >>> model = build_wav2vec2_classifier(4, config=TINY_CONFIG)
    >>> model.n_classes, model.encoder.config.num_hidden_layers
    (4, 2)
    """
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    if (source is None) == (config is None):
        raise ValueError(
            "build_wav2vec2_classifier needs exactly one of `source` (pretrained "
            "weights) and `config` (random init)."
        )
    overrides = dict(config_overrides or {})
    if source is not None:
        try:
            encoder = Wav2Vec2Model.from_pretrained(
                source, cache_dir=cache_dir, **overrides
            )
        except OSError as err:
            raise OSError(
                f"Could not load the pretrained Wav2Vec2 '{source}': give a local "
                "folder written by save_pretrained, or a hub id with network "
                f"access (or a filled HF cache). Cause: {err}"
            ) from err
        logger.info("Loaded pretrained encoder %s", source)
    else:
        config = dict(config)
        config.update(overrides)
        encoder = Wav2Vec2Model(Wav2Vec2Config(**config))
    if freeze_feature_encoder:
        encoder.freeze_feature_encoder()
    return Wav2Vec2Classifier(encoder, n_classes, normalize_input=normalize_input)
