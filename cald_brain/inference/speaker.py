"""Speaker identification with SpeechBrain's own ``EncoderClassifier``.

A packaged speaker model (:func:`cald_brain.inference.package_model` of a
:class:`cald_brain.lobes.SpeechClassifier` run) declares the four modules
``EncoderClassifier`` calls, all views of the one trained model:

* ``compute_features``: the waveform itself (the encoder computes its own
  features: Whisper's log-mel, Wav2Vec2's convolutions);
* ``mean_var_norm``: none (the encoder normalises its input);
* ``embedding_model``: encoder + pooling -> ``[B, 1, D]`` utterance vectors;
* ``classifier``: the linear layer -> ``[B, 1, n_speakers]`` log-posteriors.

So the folder loads with SpeechBrain's class unchanged, offline::

    from speechbrain.inference.classifiers import EncoderClassifier
    spk = EncoderClassifier.from_hparams(source="packaged/", savedir="/tmp/spk")
    spk.classify_file("id10001/1zcIwhmdeo4/00001.wav")   # (log-probs, score, index, [speaker])
    spk.encode_batch(wavs, wav_lens)                     # embeddings [B, 1, D]

:class:`SpeakerClassifier` is that class with the packaging description and
a ``from_hparams`` that keeps a local folder offline wherever it was moved.

Authors
 * cald-brain developers 2026
"""

import torch
from speechbrain.inference.classifiers import EncoderClassifier
from torch import nn

from cald_brain.inference.package import OfflinePackageLoading, check_label_encoder


class WaveformFeatures(nn.Module):
    """``compute_features`` of a model that takes waveforms: returns them unchanged.

    Example
    -------
    >>> WaveformFeatures()(torch.ones(1, 4)).shape
    torch.Size([1, 4])
    """

    def forward(self, wavs):
        """The waveforms ``[B, samples]``."""
        return wavs


class NoNormalization(nn.Module):
    """``mean_var_norm`` of a model that normalises its own input: identity.

    Example
    -------
    >>> NoNormalization()(torch.ones(1, 4), torch.ones(1)).sum().item()
    4.0
    """

    def forward(self, feats, lengths=None):
        """``feats`` unchanged."""
        return feats


class UtteranceEmbedding(nn.Module):
    """``embedding_model``: a :class:`SpeechClassifier`'s pooled vectors, ``[B, 1, D]``.

    Arguments
    ---------
    model : cald_brain.lobes.SpeechClassifier
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, wavs, wav_lens=None):
        """Pooled encoder output of 16 kHz waveforms ``[B, samples]`` (relative lengths ``[B]``)."""
        out = self.model.encoder(wavs, wav_lens)
        return self.model.pool_frames(out.last_hidden_state, out.mask).unsqueeze(1)


class LogSoftmaxClassifier(nn.Module):
    """``classifier``: the model's linear layer on embeddings, as log-posteriors.

    Arguments
    ---------
    model : cald_brain.lobes.SpeechClassifier
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, embeddings):
        """Log-posteriors ``[B, 1, n_classes]`` of embeddings ``[B, 1, D]``."""
        return self.model.classifier(embeddings).float().log_softmax(-1)


class SpeakerClassifier(OfflinePackageLoading, EncoderClassifier):
    """SpeechBrain's ``EncoderClassifier`` for packaged CALD speaker models.

    Nothing of ``EncoderClassifier``'s behaviour changes: the class adds what
    :func:`cald_brain.inference.package_model` writes for it, and
    :meth:`from_hparams` reads a local folder offline (the folder loads with
    ``EncoderClassifier.from_hparams`` as well).

    Arguments
    ---------
    *args, **kwargs
        As for ``EncoderClassifier``.

    Example
    -------
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> from cald_brain.lobes import build_speech_classifier
    >>> cfg = dict(model_type="wav2vec2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
    ...     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    >>> model = build_speech_classifier(2, config=cfg)
    >>> labels = CategoricalEncoder()
    >>> labels.update_from_iterable(["id10001", "id10002"])
    >>> labels.ignore_len()
    >>> spk = SpeakerClassifier(modules={"compute_features": WaveformFeatures(),
    ...     "mean_var_norm": NoNormalization(), "embedding_model": UtteranceEmbedding(model),
    ...     "classifier": LogSoftmaxClassifier(model)}, hparams={"label_encoder": labels})
    >>> log_probs, score, index, names = spk.classify_batch(torch.randn(1, 8000))
    >>> log_probs.shape, spk.encode_batch(torch.randn(1, 8000)).shape, names[0] in ("id10001", "id10002")
    (torch.Size([1, 2]), torch.Size([1, 1, 32]), True)
    """

    MODULES_YAML = """
compute_features: !new:cald_brain.inference.speaker.WaveformFeatures
mean_var_norm: !new:cald_brain.inference.speaker.NoNormalization
embedding_model: !new:cald_brain.inference.speaker.UtteranceEmbedding
    model: !ref <model>
classifier: !new:cald_brain.inference.speaker.LogSoftmaxClassifier
    model: !ref <model>

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>
"""
    INTERFACE_YAML = """
audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
"""
    PACKAGE_FILES = {"label_encoder": "label_encoder.txt"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_label_encoder(self.hparams.label_encoder, self.mods.classifier.model.n_classes)

