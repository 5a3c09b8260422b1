"""CTC speech recogniser on a pretrained speech encoder.

The head of CALD's ASR task (cald-reference section 3.7): the encoder's last
hidden state (after its final LayerNorm where it has one), dropout, and one
linear layer to the CTC symbols (blank at 0), per frame. The encoder is any
of :mod:`cald_brain.lobes.speech_encoders` (Wav2Vec2 family or Whisper), so
:func:`cald_brain.convert.convert` turns the whole recogniser into a
linear-time student.

Every layer's output and the frame mask are returned with the frame logits,
so a recipe hands them to :class:`cald_brain.distill.DistillBrain` as they
are (layerwise distillation, and output distillation on the frame
posteriors).

Authors
 * cald-brain developers 2026
"""

from dataclasses import dataclass

import torch
from torch import nn

from cald_brain.lobes.speech_encoders import build_speech_encoder


@dataclass
class CTCOutput:
    """What :class:`SpeechCTC` returns.

    Arguments
    ---------
    logits : torch.Tensor
        ``[B, T, n_tokens]`` frame logits.
    hidden_states : tuple of torch.Tensor
        One ``[B, T, C]`` tensor per encoder layer.
    mask : torch.Tensor
        ``[B, T]`` boolean frame mask (True on real frames).
    """

    logits: torch.Tensor
    hidden_states: tuple
    mask: torch.Tensor


class SpeechCTC(nn.Module):
    """Speech encoder, dropout, linear layer to the CTC symbols.

    Arguments
    ---------
    encoder : torch.nn.Module
        A :mod:`cald_brain.lobes.speech_encoders` encoder.
    n_tokens : int
        CTC outputs, blank included.
    head_dropout : float
        Dropout before the linear layer (the reference: the HF CTC head's
        ``final_dropout``).

    Example
    -------
    >>> TINY_CONFIG = dict(model_type="wav2vec2", hidden_size=32, num_hidden_layers=2,
    ...     num_attention_heads=2, intermediate_size=64, conv_dim=(16, 16),
    ...     conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2, layerdrop=0.0)
    >>> model = build_speech_ctc(30, config=TINY_CONFIG)
    >>> out = model(torch.randn(2, 4000), torch.tensor([1.0, 0.5]))
    >>> out.logits.shape, len(out.hidden_states), out.mask.sum(1).tolist()
    (torch.Size([2, 198, 30]), 2, [198, 98])
    """

    builder = "cald_brain.lobes.build_speech_ctc"

    def __init__(self, encoder, n_tokens, head_dropout=0.1):
        super().__init__()
        self.encoder = encoder
        self.head_dropout = head_dropout
        self.dropout = nn.Dropout(head_dropout)
        self.ctc_head = nn.Linear(encoder.hidden_size, n_tokens)

    @property
    def n_tokens(self):
        """CTC outputs, blank included."""
        return self.ctc_head.out_features

    def builder_kwargs(self):
        """Arguments of :func:`build_speech_ctc` that rebuild this model untrained.

        Returns
        -------
        dict
        """
        kwargs = dict(self.encoder.builder_kwargs(), n_tokens=self.n_tokens, head_dropout=self.head_dropout)
        kwargs["freeze_feature_encoder"] = False
        return kwargs

    def forward(self, wavs, wav_lens=None):
        """Frame logits for a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]`` at 16 kHz, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths; None: no padding.

        Returns
        -------
        output : CTCOutput
        """
        out = self.encoder(wavs, wav_lens)
        logits = self.ctc_head(self.dropout(out.last_hidden_state))
        return CTCOutput(logits=logits, hidden_states=out.hidden_states, mask=out.mask)


def build_speech_ctc(n_tokens, head_dropout=0.1, **encoder_kwargs):
    """Builds a :class:`SpeechCTC` on :func:`build_speech_encoder`.

    Meant for YAML (``!apply:cald_brain.lobes.build_speech_ctc``).

    Arguments
    ---------
    n_tokens : int
        CTC outputs, blank included.
    head_dropout : float
    **encoder_kwargs
        ``source`` or ``config``, ``config_overrides``,
        ``freeze_feature_encoder``, ``normalize_input``, ``cache_dir``: see
        :func:`cald_brain.lobes.build_speech_encoder`.

    Returns
    -------
    model : SpeechCTC

    Example
    -------
    >>> TINY_CONFIG = dict(model_type="whisper", d_model=16, encoder_layers=2,
    ...     encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
    ...     decoder_attention_heads=2, decoder_ffn_dim=32)
    >>> build_speech_ctc(30, config=TINY_CONFIG).n_tokens
    30
    """
    return SpeechCTC(build_speech_encoder(**encoder_kwargs), n_tokens, head_dropout)
