"""A packaged SLURP student loads with SpeechBrain's pretrained interface, offline.

Authors
 * cald-brain developers 2026
"""

import sys

import pytest
import torch

from cald_brain.inference import IntentClassifier, package_model
from cald_brain.distill import build_student, find_checkpoint
from cald_brain.lobes import build_speech_classifier
from cald_brain.dataio import read_audio
from conftest import MINI, RECIPE, run_recipe, tiny_overrides

if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))


@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
def test_packaged_student_classifies_a_file(family, request, tmp_path):
    source = request.getfixturevalue("tiny_source" if family == "wav2vec2" else "tiny_whisper_source")
    out = tmp_path / "unguided"
    run_recipe(["hparams/unguided.yaml", "--output_folder", out, *tiny_overrides(source)])
    dest = package_model(str(out), str(tmp_path / "package"))
    for name in ("hyperparams.yaml", "model.ckpt", "label_encoder.txt"):
        assert (tmp_path / "package" / name).is_file()
    assert "from_pretrained" not in (tmp_path / "package" / "hyperparams.yaml").read_text()

    clf = IntentClassifier.from_hparams(source=dest, savedir=str(tmp_path / "saved"))
    wav = MINI / "slurp_real" / "audio-1435173748-headset.flac"
    label, score = clf.classify_file(str(wav))
    labels = (out / "save" / "label_encoder.txt").read_text()
    assert f"'{label}'" in labels and 0.0 < score <= 1.0

    # Same prediction as the trained model's own forward on that file.
    import train

    reference = build_student(
        build_speech_classifier(clf.mods.model.n_classes, source=str(source)),
        mixer="bimamba2",
        mixer_kwargs={"d_state": 8, "headdim": 8, "expand": 1, "chunk_size": 16},
    )
    state = torch.load(find_checkpoint(out / "save", max_key="ACC"), weights_only=True)
    reference.load_state_dict(state)
    reference.eval()
    with torch.no_grad():
        logits = reference(read_audio(str(wav), 16000).unsqueeze(0)).logits
    probs = torch.softmax(logits, -1)[0]
    assert clf.hparams.label_encoder.decode_ndim(int(probs.argmax())) == label
    assert float(probs.max()) == pytest.approx(score, abs=1e-5)

