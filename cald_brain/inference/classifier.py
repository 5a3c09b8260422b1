"""``IntentClassifier``: utterance classification with a packaged CALD model.

A packaged folder (see :func:`cald_brain.inference.package_model`) holds an
inference-only ``hyperparams.yaml`` that rebuilds the architecture (the HF
config of the encoder plus the mixer that replaced its attention) with no
network access, the weights (``model.ckpt``) and the label encoder
(``label_encoder.txt``)::

    from cald_brain.inference import IntentClassifier
    clf = IntentClassifier.from_hparams(source="packaged/", savedir="/tmp/clf")
    label, score = clf.classify_file("some.wav")

Authors
 * cald-brain developers 2026
"""

import logging

import torch
from speechbrain.inference.interfaces import Pretrained

from cald_brain.dataio import read_audio
from cald_brain.inference.package import OfflinePackageLoading, check_label_encoder

logger = logging.getLogger(__name__)


class IntentClassifier(OfflinePackageLoading, Pretrained):
    """Classifies utterances (intents, or any utterance-level label).

    Arguments
    ---------
    *args : tuple
        As for ``speechbrain.inference.interfaces.Pretrained``.
    **kwargs : dict
        As for ``speechbrain.inference.interfaces.Pretrained``.

    Example
    -------
    >>> from cald_brain.lobes import build_speech_classifier
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> cfg = dict(model_type="wav2vec2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4),
    ...     conv_kernel=(10, 8), num_conv_pos_embeddings=8,
    ...     num_conv_pos_embedding_groups=2)
    >>> encoder = CategoricalEncoder()
    >>> encoder.update_from_iterable(["alarm_set", "play_music"])
    >>> encoder.ignore_len()
    >>> clf = IntentClassifier(
    ...     modules={"model": build_speech_classifier(2, config=cfg)},
    ...     hparams={"label_encoder": encoder})
    >>> probs, score, index, labels = clf.classify_batch(torch.randn(1, 4000))
    >>> probs.shape, labels[0] in ("alarm_set", "play_music")
    (torch.Size([1, 2]), True)
    """

    HPARAMS_NEEDED = ["label_encoder"]
    MODULES_NEEDED = ["model"]
    # What cald_brain.inference.package_model adds for this interface.
    INTERFACE_YAML = """
audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
"""
    PACKAGE_FILES = {"label_encoder": "label_encoder.txt"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_label_encoder(self.hparams.label_encoder, getattr(self.mods.model, "n_classes", None))


    def classify_batch(self, wavs, wav_lens=None):
        """Classifies a batch of 16 kHz waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]``.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths; None: no padding.

        Returns
        -------
        out_prob : torch.Tensor
            Posterior probabilities ``[batch, n_classes]``.
        score : torch.Tensor
            Probability of the best class ``[batch]``.
        index : torch.Tensor
            Index of the best class ``[batch]``.
        text_lab : list of str
            The best labels.
        """
        wavs = wavs.to(self.device).float()
        if wav_lens is not None:
            wav_lens = wav_lens.to(self.device)
        with torch.no_grad():
            logits = self.mods.model(wavs, wav_lens).logits
        out_prob = torch.softmax(logits.float(), dim=-1)
        score, index = out_prob.max(dim=-1)
        text_lab = self.hparams.label_encoder.decode_torch(index.cpu())
        return out_prob, score, index, text_lab

    def classify_file(self, path):
        """Classifies one audio file (any sample rate; resampled, mixed to mono).

        Arguments
        ---------
        path : str
            Audio file.

        Returns
        -------
        label : str
            The predicted label.
        score : float
            Its posterior probability.
        """
        normalizer = self.audio_normalizer
        signal = read_audio(path, normalizer.sample_rate, normalizer)
        _, score, _, labels = self.classify_batch(signal.unsqueeze(0))
        return labels[0], float(score[0])

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`classify_batch`.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]``.
        wav_lens : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        See :meth:`classify_batch`.
        """
        return self.classify_batch(wavs, wav_lens)
