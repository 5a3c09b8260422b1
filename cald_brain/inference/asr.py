"""``CTCTranscriber``: speech recognition with a packaged CALD CTC model.

A documented subclass of SpeechBrain's ``EncoderASR``: the packaged folder
(see :func:`cald_brain.inference.package_model`) rebuilds the recogniser
(:class:`cald_brain.lobes.SpeechCTC`, transformer or converted) offline,
loads its weights and its tokenizer, and transcribes with greedy CTC
decoding. What differs from ``EncoderASR``:

* the module is the whole recogniser (``model``), not an ``encoder`` that
  returns posteriors; decoding uses the model's own frame mask, so a padded
  batch gives each file what it gives alone;
* audio is read with soundfile (:func:`cald_brain.dataio.read_audio`), at any
  sample rate (resampled to 16 kHz);
* a long recording (a whole talk) is transcribed in one pass by default;
  ``chunk_seconds`` cuts it into windows instead (what a transformer needs on
  long audio: its memory grows with the square of the length).

Usage::

    from cald_brain.inference import CTCTranscriber
    asr = CTCTranscriber.from_hparams(source="packaged/", savedir="/tmp/asr")
    asr.transcribe_file("talk.sph")

Authors
 * cald-brain developers 2026
"""

import os

import torch
from speechbrain.inference.ASR import EncoderASR

from cald_brain.asr import greedy_transcripts
from cald_brain.dataio import read_audio
from cald_brain.inference.package import OfflinePackageLoading


class CTCTranscriber(OfflinePackageLoading, EncoderASR):
    """Transcribes speech with a CTC model over characters (``tokenizer.txt``).

    Arguments
    ---------
    *args, **kwargs
        As for ``speechbrain.inference.interfaces.Pretrained``.

    Example
    -------
    >>> import functools
    >>> from speechbrain.decoders import ctc_greedy_decode
    >>> from cald_brain.asr import char_encoder
    >>> from cald_brain.lobes import build_speech_ctc
    >>> cfg = dict(model_type="wav2vec2", hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8),
    ...     num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)
    >>> asr = CTCTranscriber(modules={"model": build_speech_ctc(30, config=cfg)},
    ...     hparams={"tokenizer": char_encoder(),
    ...              "decoding_function": functools.partial(ctc_greedy_decode, blank_id=0)})
    >>> texts, ids = asr.transcribe_batch(torch.randn(2, 8000), torch.tensor([1.0, 0.5]))
    >>> len(texts), all(isinstance(t, str) for t in texts)
    (2, True)
    """

    HPARAMS_NEEDED = ["tokenizer", "decoding_function"]
    MODULES_NEEDED = ["model"]
    # What cald_brain.inference.package_model adds for this interface.
    INTERFACE_YAML = """
tokenizer: !new:speechbrain.dataio.encoder.CTCTextEncoder

decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: 0
"""
    PACKAGE_FILES = {"tokenizer": "tokenizer.txt"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        expect_len = getattr(self.tokenizer, "expect_len", None)  # SentencePiece models have none
        if expect_len is not None:
            expect_len(len(self.tokenizer))  # as loaded: the package's own symbols


    def encode_batch(self, wavs, wav_lens=None):
        """CTC log-posteriors ``[B, T, V]`` and the frame mask ``[B, T]``.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]`` at 16 kHz.
        wav_lens : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        log_probs : torch.Tensor
        mask : torch.Tensor
        """
        wavs = wavs.to(self.device).float()
        if wav_lens is not None:
            wav_lens = wav_lens.to(self.device)
        with torch.no_grad():
            out = self.mods.model(wavs, wav_lens)
        return out.logits.float().log_softmax(-1), out.mask

    def transcribe_batch(self, wavs, wav_lens=None):
        """Greedy CTC transcripts of a batch.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[B, samples]`` at 16 kHz, zero-padded.
        wav_lens : torch.Tensor, optional
            ``[B]`` relative lengths; None: no padding.

        Returns
        -------
        texts : list of str
        ids : list of list of int
            The collapsed CTC outputs (no blanks).
        """
        log_probs, mask = self.encode_batch(wavs, wav_lens)
        return greedy_transcripts(log_probs, mask, self.tokenizer)

    def transcribe_file(self, path, chunk_seconds=None):
        """Transcribes one audio file (any rate; resampled), in one pass by default.

        Arguments
        ---------
        path : str
        chunk_seconds : float, optional
            Cut the audio into windows of this length and join their
            transcripts (None: the whole file at once).

        Returns
        -------
        str
        """
        signal = read_audio(path, 16000)
        return self.transcribe_signal(signal, chunk_seconds)

    def transcribe_signal(self, signal, chunk_seconds=None):
        """Transcribes one 16 kHz waveform ``[samples]`` (see :meth:`transcribe_file`)."""
        if not chunk_seconds:
            return self.transcribe_batch(signal.unsqueeze(0))[0][0]
        step = int(chunk_seconds * 16000)
        parts = [self.transcribe_batch(signal[i: i + step].unsqueeze(0))[0][0] for i in range(0, len(signal), step)]
        return " ".join(p for p in parts if p)

    def forward(self, wavs, wav_lens=None):
        """Runs :meth:`transcribe_batch`."""
        return self.transcribe_batch(wavs, wav_lens)


class SentencePieceCTCTranscriber(CTCTranscriber):
    """:class:`CTCTranscriber` for SentencePiece targets (``tokenizer.model``; unit i = output i + 1)."""

    INTERFACE_YAML = """
tokenizer: !new:sentencepiece.SentencePieceProcessor

decoding_function: !name:speechbrain.decoders.ctc_greedy_decode
    blank_id: 0
"""
    PACKAGE_FILES = {"tokenizer": "tokenizer.model"}


def load_transcriber(folder, interface="cald_brain.inference.CTCTranscriber", warmup_seconds=2.0):
    """Loads a packaged recogniser offline and warms it up on silence.

    Arguments
    ---------
    folder : str
        A packaged folder (:func:`cald_brain.inference.package_model`).
    interface : str or type
        The interface class (or its dotted name).
    warmup_seconds : float
        Length of the untimed first transcription (0: none).

    Returns
    -------
    CTCTranscriber
    """
    from cald_brain.inference.package import import_by_name

    cls = import_by_name(interface) if isinstance(interface, str) else interface
    asr = cls.from_hparams(source=folder, savedir=os.path.normpath(folder) + ".loaded")
    if warmup_seconds:
        asr.transcribe_signal(torch.zeros(int(warmup_seconds * 16000)))
    return asr


def transcribe_path(asr, path, chunk_seconds=None):
    """``asr.transcribe_file(path, chunk_seconds)``: what :func:`benchmark_long_form` measures."""
    return asr.transcribe_file(path, chunk_seconds=chunk_seconds)


def benchmark_long_form(packaged, path, reference, windows=(None, 30.0), timeout=None,
                        interface="cald_brain.inference.CTCTranscriber"):
    """Transcribes one long recording with each packaged model: time, peak memory, WER.

    Each (model, window) runs in a fresh process
    (:func:`cald_brain.experiment.measure_isolated`): the model is loaded and
    warmed up first, then only the transcription of the file (reading
    included) is measured.
    The processes are spawned: a script that calls this must do so under
    ``if __name__ == "__main__":``.

    Arguments
    ---------
    packaged : dict
        Label -> packaged folder.
    path : str
        The recording (any format soundfile reads: SPHERE, FLAC, WAV ...).
    reference : str
        Its transcript (the WER reference).
    windows : sequence
        None (one pass) and/or window lengths in seconds.
    timeout : float, optional
        Seconds allowed per transcription; a slower one is reported as timed out.
    interface : str or type
        The packages' interface.

    Returns
    -------
    list of dict
        ``model``, ``how``, ``audio``, ``audio_s``, and ``seconds``, ``rtf``
        (seconds per second of audio), ``peak_mib``, ``device``, ``wer``,
        ``cer``, ``hypothesis``, or ``error``.
    """
    import functools

    import soundfile as sf

    from cald_brain.asr import char_error_rate, word_error_rate
    from cald_brain.experiment import measure_isolated

    info = sf.info(path)
    audio_s = info.frames / info.samplerate
    rows = []
    for label, folder in packaged.items():
        for chunk in windows:
            how = "one pass" if not chunk else f"{chunk:g} s windows"
            row = {"model": label, "how": how, "audio": path, "audio_s": audio_s}
            try:
                out = measure_isolated(transcribe_path, path, chunk, timeout=timeout,
                                       setup=functools.partial(load_transcriber, folder, interface))
            except TimeoutError as err:
                rows.append(dict(row, error=str(err)))
                continue
            rows.append(dict(row, seconds=out["seconds"], rtf=out["seconds"] / audio_s, peak_mib=out["peak_mib"],
                             device=out["device"], wer=word_error_rate(reference, out["result"]),
                             cer=char_error_rate(reference, out["result"]), hypothesis=out["result"]))
    return rows


def long_form_table(rows):
    """:func:`benchmark_long_form`'s rows as a Markdown table.

    Example
    -------
    >>> print(long_form_table([{"model": "std", "how": "one pass", "audio_s": 600.0, "seconds": 30.0,
    ...     "rtf": 0.05, "peak_mib": 800.0, "wer": 40.0, "cer": 9.0}, {"model": "std", "how": "30 s windows",
    ...     "audio_s": 600.0, "error": "took more than 10 s"}]))
    | model | how          | audio | time      |    RTF | peak MiB | WER % | CER % |
    |:------|:-------------|------:|:----------|-------:|---------:|------:|------:|
    | std   | one pass     | 10:00 | 30.0 s    | 0.0500 |      800 |  40.0 |   9.0 |
    | std   | 30 s windows | 10:00 | timed out |        |          |       |       |
    """
    from cald_brain.experiment import format_duration, format_markdown_table

    body = []
    for r in rows:
        if "error" in r:
            body.append([r["model"], r["how"], format_duration(r["audio_s"]), "timed out", "", "", "", ""])
            continue
        peak = "n/a" if r.get("peak_mib") is None else f"{r['peak_mib']:.0f}"
        body.append([r["model"], r["how"], format_duration(r["audio_s"]), f"{r['seconds']:.1f} s",
                     f"{r['rtf']:.4f}", peak, f"{r['wer']:.1f}", f"{r['cer']:.1f}" if "cer" in r else "n/a"])
    return format_markdown_table(["model", "how", "audio", "time", "RTF", "peak MiB", "WER %", "CER %"], body)
