"""Pretrained speech encoders behind one interface: waveforms in, layer outputs out.

CALD's speech tasks (cald-reference sections 3.7-3.8) need, from the encoder,
every layer's output and a frame mask, for a batch of zero-padded waveforms
with SpeechBrain relative lengths. Two families are supported, chosen by the
source's config (``model_type``), never by the caller:

* **Wav2Vec2** (and HuBERT, WavLM, Data2VecAudio, which share its layout):
  HF ``Wav2Vec2Model``; raw 16 kHz waveform in, 50 frames per second out.
  The paper's source (``facebook/wav2vec2-large-lv60``).
* **Whisper** (the encoder only): log-mel features computed here, in torch,
  on the batch, then HF's convolutional front end, positions and layers,
  *called one by one* so that inputs shorter than Whisper's 30 s window work
  without padding to 30 s, and padded frames are masked out of attention
  (HF's ``WhisperEncoder.forward`` insists on 3000 mel frames and ignores
  attention masks). The offline demos' source (Whisper tiny.en, see
  :mod:`cald_brain.pretrained`).

For both, padded input never changes a real frame's output: the padded
batch gives each utterance what it gives alone (to float tolerance), for the
transformer and for its converted (BiMamba2) student.

Authors
 * cald-brain developers 2026
"""

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)

WAV2VEC2_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")
WHISPER_TYPES = ("whisper",)


@dataclass
class EncoderOutput:
    """What a speech encoder of this module returns.

    Arguments
    ---------
    last_hidden_state : torch.Tensor
        ``[B, T, C]``, the encoder's output (after its final LayerNorm where
        it has one).
    hidden_states : tuple of torch.Tensor
        One ``[B, T, C]`` tensor per encoder layer (the layers' own outputs;
        the embedding output is left out, as in the reference, section 3.8).
    mask : torch.Tensor
        ``[B, T]`` boolean frame mask (True on real frames).
    """

    last_hidden_state: torch.Tensor
    hidden_states: tuple
    mask: torch.Tensor


def relative_to_mask(wav_lens, n_samples, device=None, batch_size=None):
    """Absolute lengths and a sample mask from SpeechBrain relative lengths.

    Arguments
    ---------
    wav_lens : torch.Tensor or None
        ``[B]`` relative lengths in (0, 1]; None: nothing is padded.
    n_samples : int
        Padded length of the batch.
    device : torch.device, optional
    batch_size : int, optional
        Needed when ``wav_lens`` is None.

    Returns
    -------
    abs_lens : torch.Tensor
        ``[B]`` lengths in samples (at least 1).
    mask : torch.Tensor
        ``[B, n_samples]`` boolean, True on real samples.

    Example
    -------
    >>> lens, mask = relative_to_mask(torch.tensor([1.0, 0.5]), 4)
    >>> lens.tolist(), mask.sum(1).tolist()
    ([4, 2], [4, 2])
    """
    if wav_lens is None:
        if batch_size is None:
            raise ValueError("relative_to_mask needs lengths, or batch_size when nothing is padded.")
        wav_lens = torch.ones(batch_size, device=device)
    wav_lens = wav_lens.to(device) if device is not None else wav_lens
    if bool(((wav_lens <= 0) | (wav_lens > 1.0 + 1e-6)).any()):
        raise ValueError(f"Relative lengths must lie in (0, 1], got {wav_lens.tolist()}.")
    abs_lens = torch.round(wav_lens * n_samples).long().clamp(1, n_samples)
    mask = torch.arange(n_samples, device=abs_lens.device)[None, :] < abs_lens[:, None]
    return abs_lens, mask


class Wav2Vec2Encoder(nn.Module):
    """HF Wav2Vec2-family encoder with SpeechBrain lengths and per-layer outputs.

    Arguments
    ---------
    model : transformers.Wav2Vec2Model
        Or a HuBERT / WavLM / Data2VecAudio model.
    normalize_input : bool
        Zero-mean, unit-variance normalisation of each waveform over its own
        length, as ``Wav2Vec2FeatureExtractor(do_normalize=True)`` does for
        the ``lv60`` models.

    Example
    -------
    >>> enc = build_speech_encoder(config=dict(model_type="wav2vec2", hidden_size=32,
    ...     num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
    ...     conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
    ...     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2, layerdrop=0.0))
    >>> out = enc(torch.randn(2, 4000), torch.tensor([1.0, 0.5]))
    >>> out.last_hidden_state.shape, len(out.hidden_states), out.mask.sum(1).tolist()
    (torch.Size([2, 198, 32]), 2, [198, 98])
    """

    def __init__(self, model, normalize_input=True):
        super().__init__()
        self.model = model
        self.normalize_input = normalize_input

    @property
    def config(self):
        """The HF config of the encoder."""
        return self.model.config

    @property
    def hidden_size(self):
        """Width of the encoder's output."""
        return self.model.config.hidden_size

    def freeze_feature_encoder(self):
        """Freezes the convolutional feature encoder (as HF and the reference)."""
        self.model.freeze_feature_encoder()

    def builder_kwargs(self):
        """What :func:`build_speech_encoder` needs to rebuild this encoder untrained.

        Returns
        -------
        dict
        """
        return {"config": self.model.config.to_dict(), "normalize_input": bool(self.normalize_input)}

    def forward(self, wavs, wav_lens=None):
        """Encodes a batch of 16 kHz waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]``, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths; None: no padding.

        Returns
        -------
        EncoderOutput
        """
        _, sample_mask = relative_to_mask(wav_lens, wavs.shape[1], wavs.device, wavs.shape[0])
        if self.normalize_input:
            wavs = _normalize_waveforms(wavs, sample_mask)
        out = self.model(wavs, attention_mask=sample_mask.long(), output_hidden_states=True)
        hidden = out.hidden_states
        mask = self.model._get_feature_vector_attention_mask(hidden[-1].shape[1], sample_mask.long()).bool()
        return EncoderOutput(out.last_hidden_state, tuple(hidden[1:]), mask)


def _normalize_waveforms(wavs, sample_mask):
    m = sample_mask.to(wavs.dtype)
    n = m.sum(1, keepdim=True).clamp(min=1.0)
    mean = (wavs * m).sum(1, keepdim=True) / n
    var = (((wavs - mean) * m) ** 2).sum(1, keepdim=True) / n
    return (wavs - mean) / torch.sqrt(var + 1e-7) * m


class WhisperLogMel(nn.Module):
    """Whisper's log-mel features, in torch, for a padded batch.

    The same computation as ``WhisperFeatureExtractor`` (25 ms Hann window,
    10 ms hop, Slaney mel bank, ``log10``, floor at the utterance's maximum
    minus 8, then ``(x + 4) / 4``) with two differences that make each
    utterance's features independent of the batch: the dynamic-range floor
    uses each utterance's own maximum over its real frames, and the signal is
    zero-extended past its end (HF pads with zeros to 30 s, so short clips
    see zeros there too). ``n // hop`` frames come out for ``n`` samples.

    Arguments
    ---------
    n_mels : int
        Mel bins (80 for tiny ... large-v2, 128 for large-v3).
    sample_rate : int
    n_fft : int
    hop_length : int

    Example
    -------
    >>> logmel = WhisperLogMel()
    >>> feats, n_frames = logmel(torch.randn(2, 16000), torch.tensor([16000, 8000]))
    >>> feats.shape, n_frames.tolist()
    (torch.Size([2, 80, 100]), [100, 50])
    """

    def __init__(self, n_mels=80, sample_rate=16000, n_fft=400, hop_length=160):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank

        self.n_fft = n_fft
        self.hop_length = hop_length
        bank = mel_filter_bank(
            num_frequency_bins=1 + n_fft // 2,
            num_mel_filters=n_mels,
            min_frequency=0.0,
            max_frequency=sample_rate / 2,
            sampling_rate=sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        # Derived from the arguments: not part of the state dict.
        self.register_buffer("mel_bank", torch.tensor(bank, dtype=torch.float32).T.contiguous(), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, wavs, abs_lens):
        """Log-mel features of each waveform, padded frames set to zero.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]``.
        abs_lens : torch.Tensor
            ``[B]`` lengths in samples.

        Returns
        -------
        feats : torch.Tensor
            ``[B, n_mels, frames]``.
        n_frames : torch.Tensor
            ``[B]`` real frames of each utterance.
        """
        n_samples = wavs.shape[1]
        if n_samples < self.n_fft // 2 + 1:
            raise ValueError(
                f"Input of {n_samples} samples is too short for Whisper's {self.n_fft}-sample window."
            )
        wavs = wavs.float() * (torch.arange(n_samples, device=wavs.device)[None] < abs_lens[:, None])
        half = self.n_fft // 2
        # Reflect at the start (as torch.stft's centring), zeros past the end.
        padded = torch.cat([wavs[:, 1 : half + 1].flip(1), wavs, wavs.new_zeros(wavs.shape[0], half)], dim=1)
        spec = torch.stft(
            padded, self.n_fft, self.hop_length, window=self.window, center=False, return_complex=True
        )
        n_out = n_samples // self.hop_length
        power = spec[..., :n_out].abs().pow(2)
        mel = torch.matmul(self.mel_bank, power)
        log_spec = mel.clamp(min=1e-10).log10()
        n_frames = torch.div(abs_lens, self.hop_length, rounding_mode="floor").clamp(min=1)
        frame_mask = torch.arange(n_out, device=wavs.device)[None] < n_frames[:, None]
        peak = log_spec.masked_fill(~frame_mask[:, None, :], float("-inf")).amax(dim=(1, 2), keepdim=True)
        log_spec = torch.maximum(log_spec, peak - 8.0)
        feats = (log_spec + 4.0) / 4.0
        return feats * frame_mask[:, None, :], n_frames


def whisper_sinusoids(length, channels, max_timescale=10000.0):
    """Whisper's sinusoidal position table ``[length, channels]`` (sines, then cosines).

    Arguments
    ---------
    length : int
    channels : int
        Even.
    max_timescale : float

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> table = whisper_sinusoids(4, 6)
    >>> table.shape, table[0].tolist()
    (torch.Size([4, 6]), [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    """
    half = channels // 2
    increment = math.log(max_timescale) / (half - 1)
    inverse = torch.exp(-increment * torch.arange(half, dtype=torch.float64))
    scaled = torch.arange(length, dtype=torch.float64)[:, None] * inverse[None]
    return torch.cat([scaled.sin(), scaled.cos()], dim=1).float()


class WhisperEncoder(nn.Module):
    """Whisper's encoder for variable-length batches (no padding to 30 s).

    Runs HF ``WhisperEncoder``'s own modules (``conv1``, ``conv2``,
    ``embed_positions``, ``layers``, ``layer_norm``) around the 30 s check of
    its ``forward``: the first ``T`` rows of the position table for ``T``
    frames, and a key-padding mask so that padded frames take no part in
    attention. Padded positions are zeroed between the two convolutions, so
    a padded batch gives each utterance exactly what it gives alone.

    Arguments
    ---------
    model : transformers.models.whisper.modeling_whisper.WhisperEncoder
        The HF encoder (e.g. ``WhisperModel.from_pretrained(...).encoder``).
    positions : str
        ``table`` (Whisper's own absolute positions) or ``none`` (see
        :func:`build_speech_encoder`).

    Example
    -------
    >>> enc = build_speech_encoder(config=dict(model_type="whisper", d_model=32,
    ...     encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
    ...     decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64,
    ...     num_mel_bins=80, max_source_positions=100))
    >>> out = enc(torch.randn(2, 16000), torch.tensor([1.0, 0.5]))
    >>> out.last_hidden_state.shape, len(out.hidden_states), out.mask.sum(1).tolist()
    (torch.Size([2, 50, 32]), 2, [50, 25])
    >>> enc.model.embed_positions.weight.requires_grad
    False
    """

    def __init__(self, model, positions="table"):
        super().__init__()
        if positions not in WHISPER_POSITIONS:
            raise ValueError(f"Unknown Whisper positions '{positions}': choose among {WHISPER_POSITIONS}.")
        self.model = model
        self.position_mode = positions
        self.features = WhisperLogMel(n_mels=model.config.num_mel_bins)
        # Whisper's positions are fixed sinusoids (HF's loading can leave
        # them trainable): kept fixed, so that they can be continued.
        self.model.embed_positions.weight.requires_grad_(False)

    @property
    def config(self):
        """The HF config of the encoder."""
        return self.model.config

    @property
    def hidden_size(self):
        """Width of the encoder's output."""
        return self.model.config.d_model

    @property
    def max_frames(self):
        """Most encoder frames the position table covers (1500 = 30 s)."""
        return self.model.embed_positions.weight.shape[0]

    def positions(self, n_frames):
        """Position embeddings of ``n_frames`` frames ``[T, C]``.

        Whisper's table holds sinusoids (1500 rows = 30 s). Beyond it, the
        same sinusoids are continued, so a converted (linear-time) encoder
        can take a whole recording in one pass; a table that is not
        sinusoidal cannot be continued and longer inputs are refused.

        Arguments
        ---------
        n_frames : int

        Returns
        -------
        torch.Tensor
        """
        table = self.model.embed_positions.weight
        if n_frames <= table.shape[0]:
            return table[:n_frames]
        extended = whisper_sinusoids(n_frames, table.shape[1]).to(table.device)
        # (A table fine-tuned by an older release drifted by ~1e-2: still sinusoids.)
        if not torch.allclose(extended[: table.shape[0]], table.float(), atol=5e-2):
            raise ValueError(
                f"{n_frames} encoder frames exceed Whisper's position table ({self.max_frames} frames = "
                f"{self.max_frames / 50:.0f} s), which is not sinusoidal and cannot be continued: split "
                "the audio into windows of at most that length."
            )
        return torch.cat([table, extended[table.shape[0]:].to(table.dtype)])

    def freeze_feature_encoder(self):
        """Freezes the two convolutions (the positions are always fixed)."""
        for conv in (self.model.conv1, self.model.conv2):
            for p in conv.parameters():
                p.requires_grad_(False)

    def builder_kwargs(self):
        """What :func:`build_speech_encoder` needs to rebuild this encoder untrained.

        Returns
        -------
        dict
        """
        kwargs = {"config": self.model.config.to_dict()}
        if self.position_mode != "table":
            kwargs["positions"] = self.position_mode
        return kwargs

    def forward(self, wavs, wav_lens=None):
        """Encodes a batch of 16 kHz waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]``, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths; None: no padding.

        Returns
        -------
        EncoderOutput
        """
        m = self.model
        abs_lens, _ = relative_to_mask(wav_lens, wavs.shape[1], wavs.device, wavs.shape[0])
        feats, n_mel = self.features(wavs, abs_lens)
        dtype = m.conv1.weight.dtype
        feats = feats.to(dtype)
        mel_mask = (torch.arange(feats.shape[-1], device=feats.device)[None] < n_mel[:, None]).to(dtype)
        x = nn.functional.gelu(m.conv1(feats)) * mel_mask[:, None, :]
        x = nn.functional.gelu(m.conv2(x)).transpose(1, 2)
        n_frames = torch.div(n_mel + 1, 2, rounding_mode="floor")
        T = x.shape[1]
        mask = torch.arange(T, device=x.device)[None] < n_frames[:, None]
        if self.position_mode == "table":
            x = x + self.positions(T).to(device=x.device, dtype=x.dtype)
        x = nn.functional.dropout(x, p=m.dropout, training=self.training)
        # Additive key-padding mask [B, 1, T, T]: what HF's attention backends
        # take, and what the converted mixers reduce to lengths.
        attn_mask = None
        if not bool(mask.all()):
            attn_mask = torch.zeros(mask.shape[0], 1, T, T, dtype=x.dtype, device=x.device)
            attn_mask = attn_mask.masked_fill(~mask[:, None, None, :], torch.finfo(x.dtype).min)
        hidden = []
        for layer in m.layers:
            x = layer(x, attn_mask)
            if isinstance(x, tuple):  # transformers 4.x layers return tuples
                x = x[0]
            hidden.append(x)
        return EncoderOutput(m.layer_norm(x), tuple(hidden), mask)


#: How a :class:`WhisperEncoder` adds positions: its table, or none.
WHISPER_POSITIONS = ("table", "none")


def _load_config(config, overrides):
    from transformers import AutoConfig

    config = dict(config)
    model_type = config.pop("model_type", None)
    if model_type is None:
        raise ValueError("A speech encoder config needs its 'model_type' (e.g. 'wav2vec2', 'whisper').")
    config.update(overrides)
    return AutoConfig.for_model(model_type, **config)


def build_speech_encoder(
    source=None,
    config=None,
    config_overrides=None,
    freeze_feature_encoder=True,
    normalize_input=True,
    cache_dir=None,
    positions="table",
):
    """Builds a :class:`Wav2Vec2Encoder` or :class:`WhisperEncoder` by its source.

    Arguments
    ---------
    source : str, optional
        A name of :mod:`cald_brain.pretrained` (``whisper-tiny.en``), a local
        HF folder, or a hub id (``facebook/wav2vec2-large-lv60``, needs the
        network or a filled HF cache). The family comes from its config.
    config : dict, optional
        An HF config as a dict, ``model_type`` included: a randomly
        initialised encoder of that shape (what packaged models use before
        their weights are loaded). Exactly one of ``source`` and ``config``.
    config_overrides : dict, optional
        Config attributes changed on top of the source's (dropouts,
        ``layerdrop``, ``mask_time_prob`` ...).
    freeze_feature_encoder : bool
        Freeze the convolutional front end.
    normalize_input : bool
        Wav2Vec2 family only: per-utterance waveform normalisation.
    cache_dir : str, optional
        HF cache folder for hub downloads.
    positions : str
        Whisper only (one of :data:`WHISPER_POSITIONS`): ``table`` adds
        Whisper's absolute position table (continued past 30 s), ``none``
        adds nothing: for a converted encoder whose mixers see order
        themselves and must not meet positions it never trained on (long
        inputs). Wav2Vec2's positions are convolutional (relative) and stay.

    Returns
    -------
    encoder : Wav2Vec2Encoder or WhisperEncoder

    Example
    -------
    >>> enc = build_speech_encoder(config=dict(model_type="whisper", d_model=16,
    ...     encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=32,
    ...     decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32))
    >>> type(enc).__name__, enc.hidden_size
    ('WhisperEncoder', 16)
    """
    from transformers import AutoConfig, AutoModel

    if (source is None) == (config is None):
        raise ValueError(
            "build_speech_encoder needs exactly one of `source` (pretrained weights) and `config` (random init)."
        )
    overrides = dict(config_overrides or {})
    if source is not None:
        from cald_brain.pretrained import resolve_source

        path = resolve_source(source)
        try:
            hf_config = AutoConfig.from_pretrained(path, cache_dir=cache_dir, **overrides)
            model_type = hf_config.model_type
            if model_type in WHISPER_TYPES:
                from transformers import WhisperModel

                hf_model = WhisperModel.from_pretrained(path, config=hf_config, cache_dir=cache_dir).encoder
            else:
                hf_model = AutoModel.from_pretrained(path, config=hf_config, cache_dir=cache_dir)
        except OSError as err:
            raise OSError(
                f"Could not load the pretrained speech encoder '{source}': give a name of "
                "cald_brain.pretrained (e.g. whisper-tiny.en), a local folder written by "
                f"save_pretrained, or a hub id with network access. Cause: {err}"
            ) from err
        logger.info("Loaded pretrained %s encoder from %s", model_type, path)
    else:
        hf_config = _load_config(config, overrides)
        model_type = hf_config.model_type
        if model_type in WHISPER_TYPES:
            from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

            hf_model = HFWhisperEncoder(hf_config)
        else:
            hf_model = AutoModel.from_config(hf_config)
    if model_type not in WHISPER_TYPES and positions != "table":
        raise ValueError(f"positions='{positions}' is for Whisper encoders; {model_type} keeps its own.")
    if model_type in WHISPER_TYPES:
        encoder = WhisperEncoder(hf_model, positions=positions)
    elif model_type in WAV2VEC2_TYPES:
        encoder = Wav2Vec2Encoder(hf_model, normalize_input=normalize_input)
    else:
        raise ValueError(
            f"Unsupported speech encoder type '{model_type}'; supported: "
            + ", ".join(WAV2VEC2_TYPES + WHISPER_TYPES)
            + "."
        )
    if freeze_feature_encoder:
        encoder.freeze_feature_encoder()
    return encoder
