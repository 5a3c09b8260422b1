"""What the recipes' corpus generators share: espeak-ng speech, atomic corpus folders.

The offline demos train on corpora laid out exactly like the real ones
(SLURP's, TED-LIUM's ...), spoken by espeak-ng voices. Each generator plans
its own corpus; this module holds the parts they have in common:

* :func:`synthesise`: one utterance from espeak-ng, at 16 kHz, trimmed;
* :func:`reverberate`: a recording in a synthetic room (a decaying-noise
  impulse response, :func:`room_impulse_response`, mixed dry/wet);
* :func:`parallel_map`: synthesis in worker processes, with a progress bar
  (the output never depends on the number of workers);
* :func:`ensure_folder`: build a corpus in a temporary sibling folder, write
  its JSON completion marker last, move it into place; a killed build is
  never taken for a corpus, and its leftovers are removed by a later call.

Authors
 * cald-brain developers 2026
"""

import concurrent.futures
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid

import numpy as np
import soundfile as sf

from cald_brain.fileutils import pid_alive, read_json_marker

SAMPLE_RATE = 16000
INSTALL_HINT = "apt-get install -y espeak-ng sox"
MARKER = ".corpus_complete.json"


class EspeakNotFoundError(RuntimeError):
    """espeak-ng, which synthesises the corpus, is not installed."""


def find_espeak():
    """The espeak-ng executable, or None when it is not on PATH.

    Returns
    -------
    str or None
    """
    return shutil.which("espeak-ng")


def require_espeak(what):
    """The espeak-ng executable, or an error saying how to install it.

    Arguments
    ---------
    what : str
        What needs it, for the message ("Building the demo corpus at ...").

    Returns
    -------
    str

    Raises
    ------
    EspeakNotFoundError
    """
    exe = find_espeak()
    if exe is None:
        raise EspeakNotFoundError(
            f"{what} needs the espeak-ng speech synthesiser, which is not on PATH. Install it "
            f"with:\n  {INSTALL_HINT}\n(Debian/Ubuntu; brew install espeak-ng on macOS) and run again."
        )
    return exe


def espeak_version(exe):
    """espeak-ng's version line (the audio may change with the version).

    Arguments
    ---------
    exe : str

    Returns
    -------
    str or None
    """
    try:
        proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    lines = proc.stdout.strip().splitlines()
    # "eSpeak NG text-to-speech: 1.51  Data at: <path>": keep the version
    return lines[0].split("Data at")[0].strip() if lines else None


def synthesise(exe, text, voice, pitch, speed, tmp_wav, margins=(0.05, 0.08)):
    """Speaks a text with espeak-ng; returns trimmed 16 kHz float audio, peak 1.

    Arguments
    ---------
    exe : str
        Path of the espeak-ng executable.
    text : str
        What to say.
    voice : str
        espeak-ng voice, e.g. ``"en-gb-x-rp+f2"``.
    pitch : int
        Base pitch, 0-99.
    speed : int
        Words per minute.
    tmp_wav : str
        Scratch file for espeak-ng's 22.05 kHz output.
    margins : tuple of float
        Seconds kept before and after the speech when trimming silence
        (below -35 dB of the peak).

    Returns
    -------
    numpy.ndarray
        Mono float32 audio at 16 kHz.
    """
    import torch
    import torchaudio

    cmd = [exe, "-v", voice, "-p", str(pitch), "-s", str(speed)]
    subprocess.run(cmd + ["-w", tmp_wav, text], check=True, capture_output=True)
    audio, rate = sf.read(tmp_wav, dtype="float32")
    audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, SAMPLE_RATE).numpy()
    peak = np.abs(audio).max()
    loud = np.flatnonzero(np.abs(audio) > peak * 10 ** (-35 / 20))
    start = max(loud[0] - int(margins[0] * SAMPLE_RATE), 0)
    stop = min(loud[-1] + int(margins[1] * SAMPLE_RATE), len(audio))
    return audio[start:stop] / peak


def hash_name(name):
    """A stable (process-independent) integer hash of a name, to seed per-file noise.

    Arguments
    ---------
    name : str

    Returns
    -------
    int

    Example
    -------
    >>> hash_name("a") == hash_name("a") != hash_name("b")
    True
    """
    value = 0
    for char in name.encode("utf-8"):
        value = (value * 131 + char) % (2**61 - 1)
    return value


def room_impulse_response(rt60, rng, sample_rate=SAMPLE_RATE, length=None):
    """A synthetic room's reverberation tail: exponentially decaying white noise.

    The amplitude falls by 60 dB in ``rt60`` seconds; the response has unit
    energy, so convolving with it keeps a signal's level about the same.

    Arguments
    ---------
    rt60 : float
        Reverberation time in seconds (60 dB decay), e.g. 0.1 (a small
        furnished room) to 0.6 (a hall).
    rng : numpy.random.Generator
        Source of the noise (the same generator state gives the same room).
    sample_rate : int
    length : float, optional
        Seconds of response; default ``1.5 * rt60`` (then -90 dB), at most 1 s.

    Returns
    -------
    numpy.ndarray
        float32, ``[samples]``.

    Example
    -------
    >>> rir = room_impulse_response(0.2, np.random.default_rng(0))
    >>> len(rir), round(float(np.sum(rir ** 2)), 3)
    (4800, 1.0)
    >>> bool(np.abs(rir[:800]).max() > 100 * np.abs(rir[-800:]).max())
    True
    """
    if rt60 <= 0:
        raise ValueError(f"rt60 must be positive (seconds), got {rt60}.")
    n = max(1, int(round((length or min(1.5 * rt60, 1.0)) * sample_rate)))
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * 10 ** (-3.0 * t / rt60)  # 10^-3 = -60 dB at t = rt60
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(audio, rt60, wet, rng, sample_rate=SAMPLE_RATE):
    """Mixes audio with its reverberation in a synthetic room (:func:`room_impulse_response`).

    Arguments
    ---------
    audio : numpy.ndarray
        Mono audio, ``[samples]``.
    rt60 : float
        Reverberation time of the room, seconds.
    wet : float
        Share of the reverberant signal, 0 (dry) to 1 (only the room).
    rng : numpy.random.Generator
        Source of the room's response: seed it per room to give all the
        recordings of one room the same response.
    sample_rate : int

    Returns
    -------
    numpy.ndarray
        float32; longer than ``audio`` by the reverberation tail.

    Example
    -------
    >>> dry = np.zeros(1600, np.float32); dry[0] = 1.0
    >>> out = reverberate(dry, 0.1, 0.5, np.random.default_rng(0))
    >>> len(out), 0.4 < float(out[0]) < 0.6, bool(np.abs(out[100:]).max() > 0)
    (3999, True, True)
    """
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"wet must be between 0 and 1, got {wet}.")
    audio = np.asarray(audio, dtype=np.float32)
    rir = room_impulse_response(rt60, rng, sample_rate)
    n = len(audio) + len(rir) - 1
    nfft = 1 << (n - 1).bit_length()
    tail = np.fft.irfft(np.fft.rfft(audio, nfft) * np.fft.rfft(rir, nfft), nfft)[:n]
    out = wet * tail
    out[: len(audio)] += (1.0 - wet) * audio
    return out.astype(np.float32)


def default_workers():
    """Synthesis processes by default: 2, or 1 on a single CPU."""
    return max(1, min(2, os.cpu_count() or 1))


def _init_worker():
    """One torch thread per synthesis process, which ends with its parent.

    A worker of a parent that was killed (SIGKILL, a timeout) would wait on
    the task queue forever, so a thread ends it when the parent is gone.
    """
    import torch

    torch.set_num_threads(1)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def parallel_map(fn, tasks, workers=1, desc="synthesising", progress=True, chunksize=8):
    """Yields ``fn(task)`` for each task, in order, from worker processes.

    Arguments
    ---------
    fn : callable
        A module-level function (it is pickled for the workers).
    tasks : list
    workers : int
        Processes; 1 runs everything in this process.
    desc : str
        Progress bar label.
    progress : bool
        Whether to show a progress bar.
    chunksize : int

    Yields
    ------
    The results, in the order of ``tasks``.

    Example
    -------
    >>> list(parallel_map(abs, [-1, 2, -3], progress=False))
    [1, 2, 3]
    """
    from tqdm import tqdm

    bar = {"desc": desc, "total": len(tasks), "disable": not progress}
    if workers <= 1 or len(tasks) < 2:
        yield from tqdm(map(fn, tasks), **bar)
        return
    # "spawn": a forked child of a process that already ran torch can hang
    # in its thread pool.
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker
    ) as pool:
        yield from tqdm(pool.map(fn, tasks, chunksize=chunksize), **bar)


def read_marker(out):
    """The completion marker of a folder :func:`ensure_folder` built, or None.

    Arguments
    ---------
    out : str

    Returns
    -------
    dict or None
    """
    return read_json_marker(os.path.join(out, MARKER))


def marker_matches(out, generator, version, settings, required=()):
    """Whether ``out`` holds a complete build of this generator, version and settings.

    Arguments
    ---------
    out : str
    generator : str
        The generator's name, as written in the marker.
    version : int
    settings : dict
    required : sequence of str
        Paths (relative to ``out``) that must exist as files.

    Returns
    -------
    bool
    """
    marker = read_marker(out)
    if marker is None:
        return False
    same = (
        marker.get("generator") == generator
        and marker.get("version") == version
        and marker.get("settings") == settings
    )
    return same and all(os.path.isfile(os.path.join(out, path)) for path in required)


def ensure_folder(out, generator, version, settings, build, parts, required=(), extra=None):
    """Makes sure ``out`` holds a complete build of ``settings``; builds it if not.

    If ``out`` holds a folder this function completed with the same
    generator, version and settings (its marker, written last, says so),
    nothing is done. Otherwise ``build(tmp)`` fills a temporary sibling
    folder, the marker is written, and the folder is renamed to ``out``. An
    existing ``out`` is replaced only if it holds nothing but ``parts`` and
    the marker: it may be an unfinished or older corpus, never other files.

    Arguments
    ---------
    out : str
        The folder.
    generator : str
        Name written in the marker.
    version : int
        Generator version (a change rebuilds).
    settings : dict
        JSON-serialisable description of what is built.
    build : callable
        ``build(tmp) -> summary`` (a JSON-serialisable dict, kept in the marker).
    parts : sequence of str
        The top-level entries a build writes.
    required : sequence of str
        Files a complete build has (relative paths).
    extra : dict, optional
        More marker fields (e.g. the synthesiser's version).

    Returns
    -------
    str
        ``out`` as an absolute path.

    Raises
    ------
    FileExistsError
        When ``out`` exists and holds something else.

    Example
    -------
    >>> out = str(getfixture("tmpdir").join("corpus"))
    >>> def build(tmp):
    ...     open(os.path.join(tmp, "a.txt"), "w").close()
    ...     return {"files": 1}
    >>> _ = ensure_folder(out, "doc", 1, {"n": 1}, build, ["a.txt"], ["a.txt"])
    >>> read_marker(out)["summary"], marker_matches(out, "doc", 1, {"n": 1}, ["a.txt"])
    ({'files': 1}, True)
    """
    out = os.path.abspath(os.fspath(out))
    if marker_matches(out, generator, version, settings, required):
        return out
    _check_replaceable(out, parts)
    parent, name = os.path.split(out)
    os.makedirs(parent, exist_ok=True)
    _remove_stale_partials(parent, name)
    # os.mkdir, unlike tempfile.mkdtemp, gives the corpus the usual modes
    tmp = os.path.join(parent, f".{name}.partial-{os.getpid()}@{socket.gethostname()}-{uuid.uuid4().hex[:8]}")
    os.mkdir(tmp)
    try:
        summary = build(tmp)
        marker = dict(extra or {}, generator=generator, version=version, settings=settings, summary=summary)
        with open(os.path.join(tmp, MARKER), "w", encoding="utf-8") as fout:
            json.dump(marker, fout, indent=1)
            fout.flush()
            os.fsync(fout.fileno())
        if marker_matches(out, generator, version, settings, required):  # another process was quicker
            shutil.rmtree(tmp)
            return out
        old = f"{tmp}-old"
        if os.path.lexists(out):
            _check_replaceable(out, parts)
            os.rename(out, old)
        try:
            os.rename(tmp, out)
        except OSError:
            if not marker_matches(out, generator, version, settings, required):
                raise
            shutil.rmtree(tmp)  # another process put the same corpus there
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_replaceable(out, parts):
    """Raises unless ``out`` is absent or holds only a corpus' parts."""
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise FileExistsError(f"{out} exists and is not a folder; choose another corpus folder.")
    foreign = sorted(set(os.listdir(out)) - set(parts) - {MARKER})
    if foreign:
        raise FileExistsError(
            f"{out} holds {', '.join(foreign[:5])}, which are not part of a generated corpus; "
            "refusing to replace it. Choose an empty or new folder."
        )


def _remove_stale_partials(parent, name):
    """Removes temporary folders of killed builds on this host."""
    prefix = f".{name}.partial-"
    host = socket.gethostname()
    for entry in os.listdir(parent):
        if not entry.startswith(prefix):
            continue
        pid, _, rest = entry[len(prefix):].partition("@")
        if not pid.isdigit() or not rest.startswith(f"{host}-"):
            continue
        if not pid_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
