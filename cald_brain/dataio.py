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
