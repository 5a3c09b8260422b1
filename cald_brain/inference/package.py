"""Pack a trained CALD classifier into a SpeechBrain pretrained-model folder.

The folder holds:

* ``hyperparams.yaml``: inference only; rebuilds the architecture from the
  encoder's HF config and the mixer spec (no download, no training keys);
* ``model.ckpt``: the weights (state dict of the whole classifier);
* ``label_encoder.txt``: the label encoder written during training.

Training writes the spec (``model_spec.json``) next to its checkpoints with
:func:`write_model_spec`; :func:`package_model` reads it and copies the best
checkpoint.

Authors
 * cald-brain developers 2026
"""

import json
import logging
import os
import shutil

from cald_brain.distill.checkpointing import find_checkpoint

logger = logging.getLogger(__name__)

MODEL_SPEC_FILE = "model_spec.json"

INFERENCE_YAML = """\
# ############################################################################
# Inference-only hyperparams of a CALD utterance classifier ({mode}).
# Load with cald_brain.inference.IntentClassifier.from_hparams(source=<folder>).
# Rebuilds the architecture (no network), then loads the weights.
# ############################################################################

pretrained_path: {pretrained_path}
sample_rate: {sample_rate}
n_classes: {n_classes}
mixer: {mixer}
mixer_kwargs: {mixer_kwargs}
encoder_config: {encoder_config}

model: !apply:cald_brain.distill.build_student
    model: !apply:cald_brain.lobes.build_wav2vec2_classifier
        n_classes: !ref <n_classes>
        config: !ref <encoder_config>
        freeze_feature_encoder: False
        normalize_input: {normalize_input}
    mixer: !ref <mixer>
    mixer_kwargs: !ref <mixer_kwargs>

audio_normalizer: !new:speechbrain.dataio.preprocess.AudioNormalizer
    sample_rate: !ref <sample_rate>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

modules:
    model: !ref <model>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        model: !ref <model>
        label_encoder: !ref <label_encoder>
    paths:
        model: !ref <pretrained_path>/model.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def write_model_spec(model, save_folder, mixer=None, mixer_kwargs=None, sample_rate=16000, mode=None):
    """Writes what rebuilding ``model`` needs (``<save_folder>/model_spec.json``).

    Arguments
    ---------
    model : cald_brain.lobes.Wav2Vec2Classifier
        The trained (possibly converted) classifier.
    save_folder : str
        The run's checkpoint folder.
    mixer : str, optional
        The mixer that replaced the attention (None: a transformer).
    mixer_kwargs : dict, optional
        Its keyword arguments.
    sample_rate : int
        Sample rate of the model's input.
    mode : str, optional
        The CALD mode (recorded in the package).

    Returns
    -------
    path : str

    Example
    -------
    >>> from cald_brain.lobes import build_wav2vec2_classifier
    >>> cfg = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=8, conv_dim=(4,), conv_stride=(5,), conv_kernel=(10,),
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> path = write_model_spec(build_wav2vec2_classifier(2, config=cfg),
    ...     str(getfixture("tmpdir")))
    >>> sorted(json.load(open(path)))[:3]
    ['encoder_config', 'mixer', 'mixer_kwargs']
    """
    spec = {
        "encoder_config": model.encoder.config.to_dict(),
        "mixer": mixer,
        "mixer_kwargs": dict(mixer_kwargs) if mixer_kwargs else None,
        "mode": mode,
        "n_classes": model.n_classes,
        "normalize_input": bool(model.normalize_input),
        "sample_rate": sample_rate,
    }
    os.makedirs(save_folder, exist_ok=True)
    path = os.path.join(save_folder, MODEL_SPEC_FILE)
    with open(path, "w", encoding="utf-8") as fo:
        json.dump(spec, fo, indent=1)
    return path


def package_model(output_folder_or_checkpoint, dest, save_folder=None):
    """Packs a trained classifier into a folder that ``IntentClassifier`` loads.

    Arguments
    ---------
    output_folder_or_checkpoint : str
        A run's output folder (its best-``ACC`` checkpoint under ``save/`` is
        used) or one ``CKPT+...`` folder.
    dest : str
        The package folder (created).
    save_folder : str, optional
        Where ``model_spec.json`` and ``label_encoder.txt`` are; by default
        ``<output_folder>/save`` or the checkpoint's parent folder.

    Returns
    -------
    dest : str
    """
    src = os.path.abspath(output_folder_or_checkpoint)
    if os.path.isfile(os.path.join(src, "model.ckpt")):
        ckpt = os.path.join(src, "model.ckpt")
        save_folder = save_folder or os.path.dirname(src)
    else:
        save_folder = save_folder or os.path.join(src, "save")
        ckpt = find_checkpoint(save_folder, max_key="ACC")
    spec_path = os.path.join(save_folder, MODEL_SPEC_FILE)
    labels = os.path.join(save_folder, "label_encoder.txt")
    for needed in (spec_path, labels):
        if not os.path.isfile(needed):
            raise FileNotFoundError(
                f"package_model: '{needed}' not found; was the run made by a "
                "recipe that writes it (e.g. recipes/SLURP/train.py)?"
            )
    with open(spec_path, encoding="utf-8") as fi:
        spec = json.load(fi)
    dest = os.path.abspath(dest)
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(ckpt, os.path.join(dest, "model.ckpt"))
    shutil.copyfile(labels, os.path.join(dest, "label_encoder.txt"))
    text = INFERENCE_YAML.format(
        mode=spec.get("mode") or "unknown mode",
        pretrained_path=json.dumps(dest),
        sample_rate=spec["sample_rate"],
        n_classes=spec["n_classes"],
        mixer=json.dumps(spec["mixer"]),
        mixer_kwargs=json.dumps(spec["mixer_kwargs"]),
        encoder_config=json.dumps(spec["encoder_config"]),
        normalize_input=spec["normalize_input"],
    )
    with open(os.path.join(dest, "hyperparams.yaml"), "w", encoding="utf-8") as fo:
        fo.write(text)
    logger.info("Packaged %s into %s", ckpt, dest)
    return dest
