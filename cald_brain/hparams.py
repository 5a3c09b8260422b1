"""Loading a recipe's hparams: one base file, one mode file per guiding mode.

Every recipe keeps what its modes share in ``hparams/base.yaml``; a mode file
(``std.yaml``, ``waypoint.yaml`` ...) names its base with a top-level key::

    base_hparams: base.yaml     # relative to the mode file

and holds only what differs. :func:`load_recipe_hparams` merges the two
*before* HyperPyYAML resolves anything (base keys first, in their order; a
mode key replaces the base key of the same name, new keys are appended), so

* command-line overrides reach every key, base or mode (``--lr 0.01``);
* ``!ref`` works across the files (a mode's ``!ref <save_folder>`` sees the
  base's ``save_folder``, a base's ``!ref <mixer>`` sees the mode's value);
* the merged text is what gets saved in the experiment folder, so a run's
  ``hyperparams.yaml`` is complete on its own.

The merge is shallow, by top-level key: a mode that changes one entry of a
mapping restates the mapping. A replaced key keeps its place in the base
(new keys go last); HyperPyYAML cannot resolve a ``!ref`` to a key defined
*later* whose value is itself a ``!ref``, so base keys that modes refer to
through ``!ref`` chains belong above the keys modes replace.

Authors
 * cald-brain developers 2026
"""

import io
import logging
import os
import re
import tempfile

from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML

logger = logging.getLogger(__name__)

BASE_KEY = "base_hparams"


def resolve_hparams_path(hparams_file, recipe_dir=None):
    """Finds an hparams file from the current folder, else from the recipe.

    Lets ``python recipes/X/train.py hparams/mode.yaml`` work from the
    repository root as well as ``cd recipes/X && python train.py hparams/mode.yaml``.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        The path as given on the command line.
    recipe_dir : str or os.PathLike, optional
        The recipe's folder (usually ``os.path.dirname(__file__)`` of train.py).

    Returns
    -------
    path : str
        An existing path.

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> _ = tmpdir.join("x.yaml").write("a: 1")
    >>> resolve_hparams_path("x.yaml", recipe_dir=str(tmpdir)) == str(tmpdir.join("x.yaml"))
    True
    """
    tried = [os.path.abspath(hparams_file)]
    if os.path.isfile(hparams_file):
        return os.fspath(hparams_file)
    if recipe_dir is not None and not os.path.isabs(hparams_file):
        candidate = os.path.join(recipe_dir, hparams_file)
        tried.append(os.path.abspath(candidate))
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f"hparams file '{hparams_file}' not found; tried: " + ", ".join(tried)
    )


def _round_trip_yaml():
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def merge_hparams_text(hparams_file):
    """The YAML text of a mode file merged over its base (unresolved).

    Tags (``!new:``, ``!ref``, ``!apply:``, ``!name:``, ``!PLACEHOLDER``)
    are kept as written, so that HyperPyYAML resolves the merged text as one
    file. A file without ``base_hparams`` is returned as it is. Bases may
    themselves name a base.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        A mode file.

    Returns
    -------
    text : str

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> _ = tmpdir.join("base.yaml").write("lr: 0.1\\nepochs: 2\\n")
    >>> _ = tmpdir.join("mode.yaml").write("base_hparams: base.yaml\\nlr: 0.5\\nnew: !ref <epochs>\\n")
    >>> print(merge_hparams_text(str(tmpdir.join("mode.yaml"))).strip())
    lr: 0.5
    epochs: 2
    new: !ref <epochs>
    """
    return _dump(_merged_tree(os.fspath(hparams_file), seen=()))


def _merged_tree(path, seen):
    path = os.path.abspath(path)
    if path in seen:
        raise ValueError(
            f"hparams files name each other as base in a loop: {' -> '.join(seen + (path,))}"
        )
    with open(path, encoding="utf-8") as fin:
        tree = _round_trip_yaml().load(fin)
    if tree is None:
        tree = _round_trip_yaml().load("{}")
    if not hasattr(tree, "items"):
        raise ValueError(f"hparams file '{path}' must hold a mapping at the top level.")
    if BASE_KEY not in tree:
        return tree
    base_name = tree[BASE_KEY]
    if not isinstance(base_name, str):
        raise ValueError(
            f"'{BASE_KEY}' in '{path}' must be a file name, got {base_name!r}."
        )
    base_path = os.path.join(os.path.dirname(path), base_name)
    if not os.path.isfile(base_path):
        raise FileNotFoundError(
            f"'{path}' names the base '{base_name}', but '{base_path}' does not exist."
        )
    merged = _merged_tree(base_path, seen + (path,))
    for key, value in tree.items():
        if key == BASE_KEY:
            continue
        merged[key] = value  # replaces in place (keeps the base order) or appends
    return merged


def _dump(tree):
    stream = io.StringIO()
    _round_trip_yaml().dump(tree, stream)
    return stream.getvalue()


def load_recipe_hparams(hparams_file, overrides=None, recipe_dir=None, save_dir=None):
    """Loads a recipe's mode file merged over its base, with overrides.

    Arguments
    ---------
    hparams_file : str or os.PathLike
        The mode file, as given on the command line: looked up from the
        current folder, else relative to ``recipe_dir``.
    overrides : dict or str, optional
        HyperPyYAML overrides (``sb.parse_arguments``' third output); they may
        name any key of the base or of the mode file.
    recipe_dir : str or os.PathLike, optional
        The recipe folder, the second place to look for ``hparams_file``.
    save_dir : str or os.PathLike, optional
        Where the merged (unresolved) YAML is written; a temporary folder by
        default.

    Returns
    -------
    hparams : dict
        The resolved hparams.
    merged_file : str
        Path of the merged YAML, for ``sb.create_experiment_directory(
        hyperparams_to_save=merged_file, overrides=overrides)``.

    Example
    -------
    >>> tmpdir = getfixture("tmpdir")
    >>> _ = tmpdir.join("base.yaml").write("lr: 0.1\\nsize: 4\\nopt: !ref <lr>\\n")
    >>> _ = tmpdir.join("mode.yaml").write("base_hparams: base.yaml\\nsize: 8\\n")
    >>> hp, merged = load_recipe_hparams("mode.yaml", {"lr": 0.01}, recipe_dir=str(tmpdir))
    >>> hp["lr"], hp["size"], hp["opt"]
    (0.01, 8, 0.01)
    """
    path = resolve_hparams_path(hparams_file, recipe_dir)
    text = merge_hparams_text(path)
    try:
        hparams = load_hyperpyyaml(text, overrides)
    except ValueError as err:
        placeholder = re.match(r"'(.+)' is a !PLACEHOLDER", str(err))
        if placeholder is None:
            raise
        key = placeholder.group(1)
        raise ValueError(
            f"{path}: '{key}' has no default; give it on the command line, "
            f"e.g. --{key} <value>."
        ) from None
    if save_dir is None:
        save_dir = tempfile.mkdtemp(prefix="cald_hparams_")
    os.makedirs(save_dir, exist_ok=True)
    merged_file = os.path.join(save_dir, os.path.basename(path))
    with open(merged_file, "w", encoding="utf-8") as fout:
        fout.write(f"# Generated from {os.path.abspath(path)} and its base.\n")
        fout.write(text)
    logger.debug("Loaded hparams from %s (merged copy: %s)", path, merged_file)
    return hparams, merged_file
