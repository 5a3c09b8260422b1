"""Tests of the shared recipe hparams loader (base file + mode files).

Authors
 * cald-brain developers 2026
"""

import os

import pytest
import torch

from cald_brain.hparams import load_recipe_hparams, merge_hparams_text

BASE = """\
# shared
seed: 3
output_folder: !PLACEHOLDER
save_folder: !ref <output_folder>/save
lr: 0.1
mixer: bimamba2
model: !new:torch.nn.Linear
    in_features: 2
    out_features: !ref <n_out>
n_out: 3
opt_class: !name:torch.optim.SGD
    lr: !ref <lr>
tag: !ref <mixer>-run
"""

MODE = """\
base_hparams: base.yaml
mixer: null   # std: no conversion
n_out: 5
extra: !apply:os.path.join [!ref <save_folder>, waypoints]
"""


@pytest.fixture
def recipe(tmp_path):
    hp = tmp_path / "recipe" / "hparams"
    hp.mkdir(parents=True)
    (hp / "base.yaml").write_text(BASE)
    (hp / "mode.yaml").write_text(MODE)
    return tmp_path / "recipe"


def test_merge_and_resolve_across_files(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # hparams/mode.yaml is not here: found via the recipe
    hp, merged = load_recipe_hparams(
        "hparams/mode.yaml",
        {"output_folder": "out", "lr": 0.01},
        recipe_dir=str(recipe),
        save_dir=str(tmp_path / "saved"),
    )
    assert "base_hparams" not in hp
    assert hp["mixer"] is None and hp["tag"] == "None-run"
    assert isinstance(hp["model"], torch.nn.Linear) and hp["model"].out_features == 5
    assert hp["opt_class"]([torch.nn.Parameter(torch.zeros(1))]).defaults["lr"] == 0.01
    assert hp["extra"] == os.path.join("out/save", "waypoints")
    # The merged file is complete on its own (it is what a run saves).
    text = open(merged, encoding="utf-8").read()
    assert "base_hparams" not in text and "!new:torch.nn.Linear" in text
    keys = [line.split(":")[0] for line in text.splitlines() if line and line[0].isalpha()]
    assert keys[:3] == ["seed", "output_folder", "save_folder"] and keys[-1] == "extra"


def test_override_of_base_key_from_mode_and_cli(recipe):
    text = merge_hparams_text(recipe / "hparams" / "mode.yaml")
    assert "n_out: 5" in text and "n_out: 3" not in text
    hp, _ = load_recipe_hparams(
        str(recipe / "hparams" / "mode.yaml"), "output_folder: o\nn_out: 7"
    )
    assert hp["model"].out_features == 7


def test_missing_files_are_named(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_recipe_hparams("hparams/nope.yaml", recipe_dir=str(recipe))
    assert str(tmp_path / "hparams" / "nope.yaml") in str(err.value)
    assert str(recipe / "hparams" / "nope.yaml") in str(err.value)
    (recipe / "hparams" / "bad.yaml").write_text("base_hparams: missing.yaml\n")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_recipe_hparams(str(recipe / "hparams" / "bad.yaml"))


def test_file_without_base_loads_as_is(tmp_path):
    (tmp_path / "plain.yaml").write_text("a: 1\nb: !ref <a>\n")
    hp, _ = load_recipe_hparams(str(tmp_path / "plain.yaml"))
    assert hp == {"a": 1, "b": 1}


def test_missing_placeholder_names_the_command_line_option(tmp_path):
    (tmp_path / "base.yaml").write_text("data_folder: !PLACEHOLDER\nlr: 0.1\n")
    (tmp_path / "mode.yaml").write_text("base_hparams: base.yaml\nlr: 0.2\n")
    with pytest.raises(ValueError, match=r"'data_folder' has no default.*--data_folder <value>"):
        load_recipe_hparams("mode.yaml", None, recipe_dir=str(tmp_path))
