"""Utterance classifier on a pretrained speech encoder (intent, speaker ...).

The head of CALD's classification tasks (cald-reference section 3.7): masked
mean pooling over the valid frames of the encoder's *last* hidden state
(after the final encoder LayerNorm where the encoder has one), then one
linear layer. The encoder is any of :mod:`cald_brain.lobes.speech_encoders`
(Wav2Vec2 family or Whisper, chosen by the source), so
:func:`cald_brain.convert.convert` turns the whole classifier into a
linear-time student and the state dict of either is a plain PyTorch one.

Every hidden state the distillation compares is returned with the frame
mask, so the recipe hands them to :class:`cald_brain.distill.DistillBrain`
as they are.

Authors
 * cald-brain developers 2026
"""

from dataclasses import dataclass

import torch
from torch import nn

from cald_brain.lobes.speech_encoders import build_speech_encoder


@dataclass
class ClassifierOutput:
    """What :class:`SpeechClassifier` returns.

    Arguments
    ---------
    logits : torch.Tensor
        ``[B, n_classes]``.
    hidden_states : tuple of torch.Tensor
        One ``[B, T, C]`` tensor per encoder layer (the encoder's input is
        left out, as in the reference, section 3.8).
    mask : torch.Tensor
        ``[B, T]`` boolean frame mask (True on real frames).
    embeddings : torch.Tensor, optional
        ``[B, D]`` the pooled utterance vectors the classifier reads (a
        speaker embedding, for speaker identification).
    """

    logits: torch.Tensor
    hidden_states: tuple
    mask: torch.Tensor
    embeddings: torch.Tensor = None


#: Pooling of :class:`SpeechClassifier`: ``mean`` (the paper's), or
#: ``attentive`` (SpeechBrain's attentive statistics pooling, ECAPA-TDNN's).
POOLINGS = ("mean", "attentive")


class AttentiveStatsPooling(nn.Module):
    """SpeechBrain's ``AttentiveStatisticsPooling`` on ``[B, T, C]`` frames with a boolean mask.

    Attention-weighted mean and standard deviation over the real frames
    (``[B, 2C]``); padded frames get no weight.

    Arguments
    ---------
    channels : int
    attention_channels : int
    global_context : bool
        Whether the attention also sees the utterance's mean and deviation.

    Example
    -------
    >>> pool = AttentiveStatsPooling(8, 4)
    >>> x = torch.randn(2, 10, 8)
    >>> mask = torch.arange(10)[None] < torch.tensor([[10], [6]])
    >>> out = pool(x, mask)
    >>> out.shape
    torch.Size([2, 16])
    >>> x2 = x.clone(); x2[1, 6:] = 1e3  # padding does not matter
    >>> torch.allclose(pool(x2, mask), out, atol=1e-5)
    True
    """

    def __init__(self, channels, attention_channels=128, global_context=True):
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import AttentiveStatisticsPooling

        self.pool = AttentiveStatisticsPooling(channels, attention_channels, global_context)

    def forward(self, x, mask):
        """Pools ``x`` ``[B, T, C]`` over the frames where ``mask`` ``[B, T]`` is True."""
        lengths = mask.sum(1).to(x.dtype) / mask.shape[1]
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        return self.pool(x.transpose(1, 2), lengths).squeeze(-1)


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


class SpeechClassifier(nn.Module):
    """Speech encoder, masked mean (or attentive statistics) pooling, linear classifier.

    Arguments
    ---------
    encoder : torch.nn.Module
        A :mod:`cald_brain.lobes.speech_encoders` encoder.
    n_classes : int
        Number of output classes.
    pooling : str
        One of :data:`POOLINGS`: ``mean`` (the paper's) or ``attentive``.
    attention_channels : int
        Hidden size of the attentive pooling's attention.

    Example
    -------
    >>> TINY_CONFIG = dict(model_type="wav2vec2", hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
    ...     conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2, layerdrop=0.0)
    >>> model = build_speech_classifier(3, config=TINY_CONFIG)
    >>> out = model(torch.randn(2, 4000), torch.tensor([1.0, 0.5]))
    >>> out.logits.shape, len(out.hidden_states), out.mask.sum(1).tolist()
    (torch.Size([2, 3]), 2, [198, 98])
    >>> build_speech_classifier(3, config=TINY_CONFIG, pooling="attentive")(torch.randn(1, 4000)).embeddings.shape
    torch.Size([1, 64])
    """

    builder = "cald_brain.lobes.build_speech_classifier"

    def __init__(self, encoder, n_classes, pooling="mean", attention_channels=128):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"Unknown pooling '{pooling}': choose among {POOLINGS}.")
        self.encoder = encoder
        self.pooling = pooling
        self.attention_channels = attention_channels
        width = encoder.hidden_size
        if pooling == "attentive":
            self.pool = AttentiveStatsPooling(width, attention_channels)
            width *= 2
        self.classifier = nn.Linear(width, n_classes)

    @property
    def n_classes(self):
        """Number of output classes."""
        return self.classifier.out_features

    def builder_kwargs(self):
        """Arguments of :func:`build_speech_classifier` that rebuild this model untrained.

        Returns
        -------
        dict
        """
        kwargs = dict(self.encoder.builder_kwargs(), n_classes=self.n_classes)
        kwargs["freeze_feature_encoder"] = False
        if self.pooling != "mean":
            kwargs.update(pooling=self.pooling, attention_channels=self.attention_channels)
        return kwargs

    def pool_frames(self, hidden, mask):
        """The utterance vectors ``[B, D]`` of frames ``[B, T, C]`` (mask ``[B, T]``)."""
        if self.pooling == "attentive":
            return self.pool(hidden, mask)
        return masked_mean(hidden, mask)

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
        out = self.encoder(wavs, wav_lens)
        embeddings = self.pool_frames(out.last_hidden_state, out.mask)
        logits = self.classifier(embeddings)
        return ClassifierOutput(logits=logits, hidden_states=out.hidden_states, mask=out.mask, embeddings=embeddings)


def build_speech_classifier(n_classes, pooling="mean", attention_channels=128, **encoder_kwargs):
    """Builds a :class:`SpeechClassifier` on :func:`build_speech_encoder`.

    Meant for YAML (``!apply:cald_brain.lobes.build_speech_classifier``)::

        model: !apply:cald_brain.lobes.build_speech_classifier
            n_classes: 10
            source: whisper-tiny.en      # or facebook/wav2vec2-large-lv60, a folder ...

    Arguments
    ---------
    n_classes : int
        Number of output classes.
    pooling : str
        ``mean`` (the paper's) or ``attentive`` (attentive statistics).
    attention_channels : int
        Hidden size of the attentive pooling's attention.
    **encoder_kwargs
        ``source`` or ``config``, ``config_overrides``,
        ``freeze_feature_encoder``, ``normalize_input``, ``cache_dir``: see
        :func:`cald_brain.lobes.build_speech_encoder`.

    Returns
    -------
    model : SpeechClassifier

    Example
    -------
    >>> TINY_CONFIG = dict(model_type="whisper", d_model=16, encoder_layers=2,
    ...     encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
    ...     decoder_attention_heads=2, decoder_ffn_dim=32)
    >>> model = build_speech_classifier(4, config=TINY_CONFIG)
    >>> model.n_classes, type(model.encoder).__name__
    (4, 'WhisperEncoder')
    """
    return SpeechClassifier(build_speech_encoder(**encoder_kwargs), n_classes, pooling, attention_channels)
