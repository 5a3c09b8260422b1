"""Packaging: a model packaged again into the same folder is the one that loads.

Authors
 * cald-brain developers 2026
"""

import torch

from cald_brain.asr import char_encoder
from cald_brain.inference import CTCTranscriber, package_model, write_model_spec
from cald_brain.lobes import build_speech_ctc

TINY = dict(model_type="wav2vec2", hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
            num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2)


def _run_folder(path, seed):
    torch.manual_seed(seed)
    model = build_speech_ctc(30, config=TINY)
    ckpt = path / "save" / "CKPT+1"
    ckpt.mkdir(parents=True)
    torch.save(model.state_dict(), ckpt / "model.ckpt")
    (ckpt / "CKPT.yaml").write_text("WER: 10.0\nend-of-epoch: true\nunixtime: 1.0\n")
    write_model_spec(model, str(path / "save"), CTCTranscriber, hparams={"select_key": "WER", "select_mode": "min"})
    char_encoder().save(str(path / "save" / "tokenizer.txt"))
    return model


def test_repackaged_model_loads_fresh_from_a_used_savedir(tmp_path):
    dest, savedir = tmp_path / "pkg", tmp_path / "pkg.loaded"
    first = _run_folder(tmp_path / "run1", seed=0)
    second = _run_folder(tmp_path / "run2", seed=1)
    package_model(str(tmp_path / "run1"), str(dest))
    loaded = CTCTranscriber.from_hparams(source=str(dest), savedir=str(savedir)).mods.model
    key = "ctc_head.weight"
    assert torch.equal(loaded.state_dict()[key], first.state_dict()[key])
    package_model(str(tmp_path / "run2"), str(dest))  # the same folder, another model
    loaded = CTCTranscriber.from_hparams(source=str(dest), savedir=str(savedir)).mods.model
    assert torch.equal(loaded.state_dict()[key], second.state_dict()[key])
