"""Pack a trained CALD model into a SpeechBrain pretrained-model folder.

Any task kind works (classifiers now; ASR, speaker, text and LM models use
the same mechanism): the folder holds

* ``hyperparams.yaml``: inference only; rebuilds the architecture with the
  model's own builder (``!apply:``) from its saved keyword arguments (the HF
  config, not the weights: no download) and the mixer spec, then declares
  what the interface needs;
* ``model.ckpt``: the weights (state dict of the whole model);
* the interface's own files (e.g. ``label_encoder.txt``).

Training writes the spec (``model_spec.json``) next to its checkpoints with
:func:`write_model_spec`; :func:`package_model` reads it and copies the best
checkpoint. A model class takes part by giving a ``builder`` (dotted name of
a function) and a ``builder_kwargs()`` method; an interface class (a
``speechbrain.inference.interfaces.Pretrained`` subclass) by giving
``INTERFACE_YAML`` (its hparams, which may ``!ref`` the spec's ``hparams``),
``PACKAGE_FILES`` (loadable name -> file of the run's save folder) and, when
its modules are not just ``model``, ``MODULES_YAML`` (modules built on
``<model>``, e.g. SpeechBrain's ``EncoderClassifier``'s four).

Authors
 * cald-brain developers 2026
"""

import importlib
import json
import logging
import os
import shutil

from cald_brain.distill.checkpointing import find_checkpoint

logger = logging.getLogger(__name__)

MODEL_SPEC_FILE = "model_spec.json"

HEADER = """\
# ############################################################################
# Inference-only hyperparams of a CALD model ({mode}: {mixer_text}).
# Load with {interface}.from_hparams(source=<this folder>).
# Rebuilds the architecture (no network), then loads the weights.
# ############################################################################

pretrained_path: {pretrained_path}
"""

MODEL_YAML = """
mixer: {mixer}
mixer_kwargs: {mixer_kwargs}

model: !apply:cald_brain.distill.build_student
    model: !apply:{builder}
{builder_kwargs}
    mixer: !ref <mixer>
    mixer_kwargs: !ref <mixer_kwargs>
"""

# The interface's modules, unless it gives its own MODULES_YAML.
MODULES_YAML = """
modules:
    model: !ref <model>
"""


def _dotted_name(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


def import_by_name(name):
    """Imports ``package.module.attribute`` given as one dotted string.

    Arguments
    ---------
    name : str

    Returns
    -------
    object

    Example
    -------
    >>> import_by_name("os.path.join") is os.path.join
    True
    """
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as err:
        raise ImportError(f"Cannot import '{name}': {err}") from err


def write_model_spec(model, save_folder, interface, mixer=None, mixer_kwargs=None, mode=None, hparams=None):
    """Writes what rebuilding ``model`` for inference needs (``<save_folder>/model_spec.json``).

    Arguments
    ---------
    model : torch.nn.Module
        The trained (possibly converted) model; its class gives ``builder``
        and ``builder_kwargs()`` (see the module docstring).
    save_folder : str
        The run's checkpoint folder.
    interface : type or str
        The SpeechBrain interface that will load the package (e.g.
        :class:`cald_brain.inference.IntentClassifier`).
    mixer : str, optional
        The mixer that replaced the attention (None: a transformer).
    mixer_kwargs : dict, optional
        Its keyword arguments.
    mode : str, optional
        The CALD mode (recorded in the package).
    hparams : dict, optional
        Plain values the interface's YAML refers to (``sample_rate`` ...).

    Returns
    -------
    path : str

    Example
    -------
    >>> from cald_brain.lobes import build_speech_classifier
    >>> from cald_brain.inference import IntentClassifier
    >>> cfg = dict(model_type="wav2vec2", hidden_size=8, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=8, conv_dim=(4,), conv_stride=(5,),
    ...     conv_kernel=(10,), num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> path = write_model_spec(build_speech_classifier(2, config=cfg),
    ...     str(getfixture("tmpdir")), IntentClassifier, hparams={"sample_rate": 16000})
    >>> spec = json.load(open(path))
    >>> spec["builder"], spec["builder_kwargs"]["n_classes"]
    ('cald_brain.lobes.build_speech_classifier', 2)
    """
    builder = getattr(model, "builder", None)
    if builder is None or not hasattr(model, "builder_kwargs"):
        raise TypeError(
            f"{type(model).__name__} cannot be packaged: it needs a `builder` (dotted name of the "
            "function that builds it) and a `builder_kwargs()` method."
        )
    interface_name = interface if isinstance(interface, str) else _dotted_name(interface)
    spec = {
        "builder": builder,
        "builder_kwargs": model.builder_kwargs(),
        "mixer": mixer,
        "mixer_kwargs": dict(mixer_kwargs) if mixer_kwargs else None,
        "mode": mode,
        "interface": interface_name,
        "hparams": dict(hparams or {}),
    }
    os.makedirs(save_folder, exist_ok=True)
    path = os.path.join(save_folder, MODEL_SPEC_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fo:
        json.dump(spec, fo, indent=1)
    os.replace(tmp, path)
    return path


def offline_load_kwargs(source, kwargs):
    """``from_hparams`` keyword arguments that read a local package folder offline.

    A packaged folder's weights and files are read from the folder itself,
    wherever it was moved to, never from the network, and afresh on every
    load (a ``savedir`` used before never serves an older model); other
    sources (hub repositories) keep SpeechBrain's defaults.

    Arguments
    ---------
    source : str
        A packaged folder or a hub repository.
    kwargs : dict
        The caller's ``from_hparams`` keyword arguments.

    Returns
    -------
    dict

    Example
    -------
    >>> config = offline_load_kwargs(".", {})["fetch_config"]
    >>> config.allow_network, config.overwrite
    (False, True)
    """
    kwargs = dict(kwargs)
    if os.path.isdir(source):
        from speechbrain.utils.fetching import FetchConfig, LocalStrategy

        overrides = dict(kwargs.pop("overrides", None) or {})
        overrides.setdefault("pretrained_path", os.path.abspath(source))
        kwargs["overrides"] = overrides
        # overwrite: the savedir's copies are refreshed from the folder on every
        # load (SpeechBrain keeps an existing copy, so a model packaged again
        # into the same folder would load its stale predecessor).
        kwargs.setdefault("fetch_config", FetchConfig(allow_network=False, overwrite=True))
        kwargs.setdefault("local_strategy", LocalStrategy.COPY)
    return kwargs


class OfflinePackageLoading:
    """Mixin for the interfaces of packaged models: ``from_hparams`` reads a local folder offline.

    Put it before the SpeechBrain interface class
    (``class CTCTranscriber(OfflinePackageLoading, EncoderASR)``); a local
    folder then loads with :func:`offline_load_kwargs` (no network, fresh
    copies, found wherever it was moved), a hub repository as SpeechBrain
    loads it.
    """

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """Loads a packaged folder; a local folder is read with the network off.

        Arguments
        ---------
        source : str
            A packaged folder (or a hub repository holding one).
        hparams_file : str
            The inference YAML in ``source``.
        **kwargs : dict
            As for ``Pretrained.from_hparams`` (``savedir``, ``run_opts``,
            ``overrides`` ...).

        Returns
        -------
        An instance of the interface.
        """
        return super().from_hparams(source, hparams_file=hparams_file, **offline_load_kwargs(source, kwargs))


def check_label_encoder(label_encoder, n_classes):
    """Checks that a package's label encoder has one label per model output; fixes its length.

    Arguments
    ---------
    label_encoder : speechbrain.dataio.encoder.CategoricalEncoder
    n_classes : int or None
        The model's outputs (None: not checked).

    Example
    -------
    >>> from speechbrain.dataio.encoder import CategoricalEncoder
    >>> enc = CategoricalEncoder(); enc.update_from_iterable(["a", "b"])
    >>> check_label_encoder(enc, 3)
    Traceback (most recent call last):
    ...
    ValueError: The model has 3 outputs but its label encoder 2 labels: the package mixes two models.
    """
    n_labels = len(label_encoder)
    if n_classes is not None and n_labels != n_classes:
        raise ValueError(
            f"The model has {n_classes} outputs but its label encoder {n_labels} labels: "
            "the package mixes two models."
        )
    label_encoder.expect_len(n_labels)


def _yaml_kwargs(kwargs, indent):
    pad = " " * indent
    return "\n".join(f"{pad}{key}: {json.dumps(value)}" for key, value in kwargs.items())


def package_model(output_folder_or_checkpoint, dest, save_folder=None, max_key=None, min_key=None):
    """Packs a trained model into a folder that its interface loads offline.

    Arguments
    ---------
    output_folder_or_checkpoint : str
        A run's output folder (its best checkpoint under ``save/`` is used)
        or one ``CKPT+...`` folder.
    dest : str
        The package folder (created).
    save_folder : str, optional
        Where ``model_spec.json`` and the interface's files are; by default
        ``<output_folder>/save`` or the checkpoint's parent folder.
    max_key, min_key : str, optional
        The checkpoint meta key that selects the best checkpoint; by default
        the key the run recorded (``select_key`` in its spec), else ``ACC``.

    Returns
    -------
    dest : str
    """
    src = os.path.abspath(output_folder_or_checkpoint)
    direct = os.path.isfile(os.path.join(src, "model.ckpt"))
    save_folder = save_folder or (os.path.dirname(src) if direct else os.path.join(src, "save"))
    spec_path = os.path.join(save_folder, MODEL_SPEC_FILE)
    if not os.path.isfile(spec_path):
        raise FileNotFoundError(
            f"package_model: '{spec_path}' not found; was the run made by a recipe that "
            "writes it (cald_brain.recipe.run_recipe does)?"
        )
    with open(spec_path, encoding="utf-8") as fi:
        spec = json.load(fi)
    if direct:
        ckpt = os.path.join(src, "model.ckpt")
    else:
        if max_key is None and min_key is None:
            key, goal = spec.get("hparams", {}).get("select_key", "ACC"), spec.get("hparams", {}).get("select_mode", "max")
            max_key, min_key = (key, None) if goal == "max" else (None, key)
        ckpt = find_checkpoint(save_folder, max_key=max_key, min_key=min_key)
    interface = import_by_name(spec["interface"])
    files = dict(getattr(interface, "PACKAGE_FILES", {}))
    for name in files.values():
        if not os.path.isfile(os.path.join(save_folder, name)):
            raise FileNotFoundError(
                f"package_model: '{os.path.join(save_folder, name)}' not found; "
                f"{spec['interface']} needs it."
            )
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(ckpt, os.path.join(dest, "model.ckpt"))
    for name in files.values():
        shutil.copyfile(os.path.join(save_folder, name), os.path.join(dest, name))

    hparams = {k: v for k, v in spec.get("hparams", {}).items() if k not in ("select_key", "select_mode")}
    loadables = {"model": "model.ckpt", **files}
    text = HEADER.format(
        mode=spec.get("mode") or "unknown mode",
        mixer_text=spec["mixer"] or "transformer",
        interface=spec["interface"],
        pretrained_path=json.dumps(dest),
    )
    text += "".join(f"{key}: {json.dumps(value)}\n" for key, value in hparams.items())
    text += MODEL_YAML.format(
        mixer=json.dumps(spec["mixer"]),
        mixer_kwargs=json.dumps(spec["mixer_kwargs"]),
        builder=spec["builder"],
        builder_kwargs=_yaml_kwargs(spec["builder_kwargs"], 8),
    )
    text += getattr(interface, "MODULES_YAML", MODULES_YAML)
    text += getattr(interface, "INTERFACE_YAML", "")
    text += "\npretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n    loadables:\n"
    text += "".join(f"        {name}: !ref <{name}>\n" for name in loadables)
    text += "    paths:\n"
    text += "".join(f"        {name}: !ref <pretrained_path>/{file}\n" for name, file in loadables.items())
    with open(os.path.join(dest, "hyperparams.yaml"), "w", encoding="utf-8") as fo:
        fo.write(text)
    logger.info("Packaged %s into %s", ckpt, dest)
    return dest
