"""Data helpers shared by the recipes.

Authors
 * cald-brain developers 2026
"""

import os

import torch  # noqa: F401  (used by the doctest)
from speechbrain.dataio import audio_io
from speechbrain.dataio.preprocess import AudioNormalizer


def read_audio(path, sample_rate, normalizer=None):
    """Reads a mono waveform at ``sample_rate``, resampling when needed.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Rate the model expects (16 kHz).
    normalizer : AudioNormalizer, optional
        Reused resampler cache.

    Returns
    -------
    sig : torch.Tensor
        ``[samples]``.

    Example
    -------
    >>> import soundfile
    >>> path = str(getfixture("tmpdir").join("tone.wav"))
    >>> soundfile.write(path, torch.sin(torch.arange(8000.0)).numpy(), 8000)
    >>> read_audio(path, 16000).shape
    torch.Size([16000])
    >>> read_audio("missing.wav", 16000)
    Traceback (most recent call last):
    ...
    FileNotFoundError: Audio file 'missing.wav' does not exist ...
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Audio file '{path}' does not exist (manifest moved from its corpus? "
            "check --data_folder, or prepare again)."
        )
    try:
        audio, file_rate = audio_io.load(path, channels_first=False)
    except Exception as err:
        raise RuntimeError(f"Could not read audio file '{path}': {err}") from err
    if audio.numel() == 0:
        raise RuntimeError(f"Audio file '{path}' holds no samples.")
    normalizer = normalizer or AudioNormalizer(sample_rate=sample_rate)
    # Mixes channels to mono and resamples file_rate -> sample_rate.
    return normalizer(audio, file_rate)
