"""Data helpers shared by the recipes.

Authors
 * cald-brain developers 2026
"""

import csv
import logging
import os
from collections import Counter

import torch  # noqa: F401  (used by the doctest)
from speechbrain.dataio import audio_io
from speechbrain.dataio.preprocess import AudioNormalizer

logger = logging.getLogger(__name__)


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


def exact_match(predict, target):
    """Per-item 0/1 correctness (for ``speechbrain.utils.metric_stats.MetricStats``).

    Arguments
    ---------
    predict : torch.Tensor
        Predicted class indices.
    target : torch.Tensor
        True class indices.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> exact_match(torch.tensor([1, 2, 3]), torch.tensor([1, 0, 3]))
    tensor([1., 0., 1.])
    """
    return (predict == target).float()


def read_csv_column(path, column):
    """The values of one column of a CSV manifest, in row order.

    Arguments
    ---------
    path : str
    column : str

    Returns
    -------
    list of str

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("m.csv"))
    >>> _ = open(path, "w").write("ID,label\\na,x\\nb,y\\n")
    >>> read_csv_column(path, "label")
    ['x', 'y']
    """
    with open(path, encoding="utf-8", newline="") as fin:
        reader = csv.DictReader(fin)
        if column not in (reader.fieldnames or ()):
            raise KeyError(f"Manifest '{path}' has no column '{column}' (it has: {reader.fieldnames}).")
        return [row[column] for row in reader]


def csv_header(path):
    """The column names of a CSV manifest.

    Arguments
    ---------
    path : str

    Returns
    -------
    list of str
    """
    with open(path, encoding="utf-8", newline="") as fin:
        return next(csv.reader(fin), [])


def check_unseen_labels(csv_files, column, known, policy, option="--unseen_labels"):
    """Finds evaluation labels that training lacks; errors or reports them.

    A classifier cannot predict a label it never saw. ``policy="error"``
    stops before training with the list (split, manifest, label, count);
    ``"skip"`` logs them and returns them, so the recipe drops those rows.

    Arguments
    ---------
    csv_files : dict of str to str
        Split name -> manifest of an evaluation split.
    column : str
        The label column (``intent``, ``speaker`` ...).
    known : set of str
        Labels of the training manifest.
    policy : str
        ``error`` or ``skip``.
    option : str
        The recipe's command-line option for the policy (named in messages).

    Returns
    -------
    unseen : dict of str to collections.Counter
        Split -> unseen label -> number of rows.

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("test.csv"))
    >>> _ = open(path, "w").write("ID,intent\\na,x\\nb,z\\n")
    >>> check_unseen_labels({"test": path}, "intent", {"x"}, "skip")
    {'test': Counter({'z': 1})}
    """
    if policy not in ("error", "skip"):
        raise ValueError(f"{option} must be 'error' or 'skip', got '{policy}'.")
    unseen = {}
    for split, path in csv_files.items():
        counts = Counter(v for v in read_csv_column(path, column) if v not in known)
        if counts:
            unseen[split] = counts
    if unseen and policy == "error":
        listing = "; ".join(
            f"{split} ({csv_files[split]}): "
            + ", ".join(f"{label} x{n}" for label, n in sorted(counts.items()))
            for split, counts in unseen.items()
        )
        raise ValueError(
            f"Labels ({column}) absent from the training set appear in evaluation: {listing}. "
            "The classifier cannot predict them. Add training data for them, or "
            f"run with {option} skip to drop those rows from evaluation."
        )
    for split, counts in unseen.items():
        logger.warning(
            "%s skip: dropping %d %s rows with %s values not in train: %s",
            option, sum(counts.values()), split, column, ", ".join(sorted(counts)),
        )
    return unseen


SORTINGS = ("random", "ascending", "descending")


def manifest_datasets(csv_files, data_folder, sorting="random", train_loader_opts=None, keep=None):
    """``DynamicItemDataset``\\ s of CSV manifests, sorted the SpeechBrain way.

    ``$data_root`` in the manifests is replaced by ``data_folder``; any
    other ``$...`` text (``$100`` in a transcript or a review) is kept as
    written (:func:`cald_brain.preparation.load_manifest`). The
    ``train`` set is shuffled by its loader (``random``) or sorted by
    ``duration`` (``ascending`` / ``descending``, which turns the loader's
    shuffling off); every other set is sorted by duration, so evaluation
    batches hold similar lengths.

    Arguments
    ---------
    csv_files : dict of str to str
        Dataset name (``train``, ``valid``, ``test`` ...) -> manifest.
    data_folder : str
        The corpus root.
    sorting : str
        ``random``, ``ascending`` or ``descending``.
    train_loader_opts : dict, optional
        The train loader's options (``shuffle`` is set to False when sorted).
    keep : dict of str to callable, optional
        Dataset name -> ``key_test`` of ``filtered_sorted`` (rows to keep).

    Returns
    -------
    dict of str to DynamicItemDataset

    Example
    -------
    >>> path = str(getfixture("tmpdir").join("m.csv"))
    >>> _ = open(path, "w").write("ID,duration,wav\\na,2.0,$data_root/a.wav\\nb,1.0,$data_root/b.wav\\n")
    >>> sets = manifest_datasets({"train": path, "test": path}, "/corpus", sorting="ascending")
    >>> sets["test"].set_output_keys(["id", "wav"])
    >>> [row["id"] for row in sets["test"]], sets["test"][0]["wav"]
    (['b', 'a'], '/corpus/b.wav')
    >>> _ = open(path, "w").write('ID,duration,wav,text\\na,1.0,$data_root/a.wav,"costs $100"\\n')
    >>> sets = manifest_datasets({"test": path}, "/corpus")
    >>> sets["test"].set_output_keys(["wav", "text"])
    >>> sets["test"][0]
    {'wav': '/corpus/a.wav', 'text': 'costs $100'}
    """
    from cald_brain.preparation import load_manifest

    if sorting not in SORTINGS:
        raise ValueError(f"sorting must be one of {SORTINGS}, got '{sorting}'.")
    datasets = {}
    for name, path in csv_files.items():
        dataset = load_manifest(path, {"data_root": data_folder})
        if keep and keep.get(name) is not None:
            dataset = dataset.filtered_sorted(key_test=keep[name])
        if name != "train":
            dataset = dataset.filtered_sorted(sort_key="duration")
        elif sorting != "random":
            dataset = dataset.filtered_sorted(sort_key="duration", reverse=sorting == "descending")
            if train_loader_opts is not None:
                train_loader_opts["shuffle"] = False
        datasets[name] = dataset
    return datasets


def audio_pipeline(sample_rate, takes="wav", provides="sig"):
    """A dynamic item reading each row's audio file at ``sample_rate`` (:func:`read_audio`).

    Arguments
    ---------
    sample_rate : int
    takes : str
        The manifest column with the file path.
    provides : str
        The name of the waveform item.

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
    """
    from speechbrain.utils.data_pipeline import provides as provides_, takes as takes_

    normalizer = AudioNormalizer(sample_rate=sample_rate)

    @takes_(takes)
    @provides_(provides)
    def read(path):
        return read_audio(path, sample_rate, normalizer)

    return read


def read_audio_crop(path, sample_rate, seconds, rng=None, normalizer=None):
    """Reads a random window of ``seconds`` from an audio file (the whole file if shorter).

    Only the window is read from disk (soundfile seeks to it), so crops of
    long recordings cost what short files do.

    Arguments
    ---------
    path : str
        Audio file.
    sample_rate : int
        Rate the model expects (16 kHz); other rates are resampled.
    seconds : float
        Window length, in seconds of audio.
    rng : random.Random, optional
        Draws the window's start (default: the ``random`` module, which
        SpeechBrain's ``seed_everything`` seeds).
    normalizer : AudioNormalizer, optional

    Returns
    -------
    torch.Tensor
        ``[samples]``.

    Example
    -------
    >>> import random, soundfile
    >>> path = str(getfixture("tmpdir").join("ramp.wav"))
    >>> soundfile.write(path, (torch.arange(48000.0) / 48000).numpy(), 16000, subtype="FLOAT")
    >>> crop = read_audio_crop(path, 16000, 1.0, random.Random(0))
    >>> crop.shape, bool((crop[1:] > crop[:-1]).all())  # one contiguous second
    (torch.Size([16000]), True)
    >>> read_audio_crop(path, 16000, 10.0).shape  # shorter than the window: all of it
    torch.Size([48000])
    """
    import random

    import soundfile as sf

    if not os.path.isfile(path):
        raise FileNotFoundError(f"Audio file '{path}' does not exist (check --data_folder, or prepare again).")
    try:
        info = sf.info(path)
        frames = int(round(seconds * info.samplerate))
        start = 0
        if info.frames > frames:
            start = (rng or random).randint(0, info.frames - frames)
        audio, file_rate = sf.read(path, start=start, frames=min(frames, info.frames), dtype="float32", always_2d=True)
    except RuntimeError as err:
        raise RuntimeError(f"Could not read audio file '{path}': {err}") from err
    if audio.size == 0:
        raise RuntimeError(f"Audio file '{path}' holds no samples.")
    normalizer = normalizer or AudioNormalizer(sample_rate=sample_rate)
    return normalizer(torch.from_numpy(audio), file_rate)


def audio_crop_pipeline(sample_rate, seconds, takes="wav", provides="sig"):
    """A dynamic item reading a random ``seconds``-long window of each row's audio (:func:`read_audio_crop`).

    For training on long utterances (speaker identification); evaluate on
    whole files with :func:`audio_pipeline`.

    Arguments
    ---------
    sample_rate : int
    seconds : float
    takes : str
    provides : str

    Returns
    -------
    speechbrain.utils.data_pipeline.DynamicItem
    """
    from speechbrain.utils.data_pipeline import provides as provides_, takes as takes_

    if seconds <= 0:
        raise ValueError(f"A crop must be longer than 0 s, got {seconds}.")
    normalizer = AudioNormalizer(sample_rate=sample_rate)

    @takes_(takes)
    @provides_(provides)
    def read(path):
        return read_audio_crop(path, sample_rate, seconds, normalizer=normalizer)

    return read


def cap_durations(dataset, seconds):
    """Caps the ``duration`` of every row of a dataset at ``seconds`` (in place).

    What dynamic batching must count when training reads crops of at most
    ``seconds`` (:func:`audio_crop_pipeline`).

    Arguments
    ---------
    dataset : DynamicItemDataset
    seconds : float

    Returns
    -------
    DynamicItemDataset

    Example
    -------
    >>> from speechbrain.dataio.dataset import DynamicItemDataset
    >>> ds = DynamicItemDataset({"a": {"duration": "7.5"}, "b": {"duration": 2.0}})
    >>> [row["duration"] for row in cap_durations(ds, 3.0).data.values()]
    [3.0, 2.0]
    """
    for row in dataset.data.values():
        row["duration"] = min(float(row["duration"]), seconds)
    return dataset


def check_n_classes(n_classes, encoder, option):
    """Checks a classifier's size against the labels of its training data.

    Arguments
    ---------
    n_classes : int
        Outputs of the classifier (an hparam).
    encoder : speechbrain.dataio.encoder.CategoricalEncoder
        The label encoder built from the training manifest.
    option : str
        The hparam that sets ``n_classes`` (named in the message).
    """
    n_labels = len(encoder)
    if n_labels != n_classes:
        raise ValueError(
            f"The classifier has {option}={n_classes} outputs but the training "
            f"manifest holds {n_labels} labels (rows may have been skipped at "
            f"preparation). Run with --{option} {n_labels}."
        )
    encoder.expect_len(n_labels)


def use_dynamic_batching(dataset, loader_opts, max_batch_length, num_buckets=20, seed=0):
    """Batches of similar durations, about ``max_batch_length`` seconds each, shuffled.

    Random batches of short utterances are mostly padding (the longest item
    sets the length); SpeechBrain's ``DynamicBatchSampler`` buckets items by
    ``duration`` and fills each batch up to a total length, so every step
    computes about the same number of real frames. ``batch_size`` and
    ``shuffle`` are removed from ``loader_opts`` (the sampler decides both).

    Arguments
    ---------
    dataset : DynamicItemDataset
        The training set (with a ``duration`` column, in seconds).
    loader_opts : dict
        The train loader's options; updated in place.
    max_batch_length : float
        Seconds of audio per batch (padding included).
    num_buckets : int
        Duration buckets.
    seed : int
        Seed of the sampler's shuffling (it reshuffles every epoch).

    Returns
    -------
    sampler : speechbrain.dataio.sampler.DynamicBatchSampler
    """
    from speechbrain.dataio.sampler import DynamicBatchSampler

    sampler = DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_length,
        num_buckets=num_buckets,
        length_func=lambda row: float(row["duration"]),
        shuffle=True,
        batch_ordering="random",
        seed=seed,
    )
    loader_opts.pop("batch_size", None)
    loader_opts.pop("shuffle", None)
    loader_opts["batch_sampler"] = sampler
    return sampler
