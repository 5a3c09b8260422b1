"""Tests of the SLURP data preparation on the committed mini corpus.

``recipes/SLURP/mini_slurp`` is laid out exactly like the real SLURP release
(``dataset/slurp/*.jsonl``, ``slurp_real/``, ``slurp_synth/``), so these tests
exercise the same code path users run on the real corpus. The generator test
needs the espeak-ng binary and is skipped without it.

Authors
 * cald-brain developers 2026
"""

import csv
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SLURP"
MINI = RECIPE / "mini_slurp"
TEXT = MINI / "dataset" / "slurp"

# The recipe folder is not a package: import its scripts by path.
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import slurp_prepare  # noqa: E402
from slurp_prepare import CSV_COLUMNS, prepare_slurp  # noqa: E402
from speechbrain.dataio.dataset import DynamicItemDataset  # noqa: E402


def read_jsonl(name, root=MINI):
    """Entries of one jsonl file of a SLURP-layout corpus."""
    path = Path(root) / "dataset" / "slurp" / f"{name}.jsonl"
    with open(path, encoding="utf-8") as fin:
        return [json.loads(line) for line in fin if line.strip()]


def count_recordings(name, kind="both", root=MINI):
    """Recordings listed in a jsonl file, by microphone."""
    files = [r["file"] for e in read_jsonl(name, root) for r in e["recordings"]]
    if kind == "headset":
        return sum(f.endswith("-headset.flac") for f in files)
    if kind == "far-field":
        return sum(not f.endswith("-headset.flac") for f in files)
    return len(files)


def read_csv_rows(path):
    """Manifest rows as dicts keyed by ID, placeholders kept, header checked."""
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin)
        assert reader.fieldnames == CSV_COLUMNS
        rows = {row.pop("ID"): row for row in reader}
    for row in rows.values():
        row["duration"] = float(row["duration"])
    return rows


@pytest.fixture(scope="module")
def default_prep(tmp_path_factory):
    """The mini corpus prepared once with the default options."""
    save = tmp_path_factory.mktemp("slurp_manifests")
    return save, prepare_slurp(MINI, save)


def test_rows_match_jsonl_recordings(default_prep):
    save, summary = default_prep
    assert summary["prepared"] and summary["skipped"] == []
    expected = {
        "train": count_recordings("train")
        + count_recordings("train_synthetic"),
        "devel": count_recordings("devel"),
        "test": count_recordings("test"),
    }
    assert summary["rows"] == expected
    intents = {}
    for split in ("train", "devel", "test"):
        data = read_csv_rows(save / f"{split}.csv")
        assert len(data) == expected[split]
        for row in data.values():
            assert row["wav"].startswith("$data_root/slurp_")
            assert row["duration"] > 0.3
            assert row["transcript"]
            assert row["intent"] == f"{row['scenario']}_{row['action']}"
        intents[split] = {row["intent"] for row in data.values()}
    # every intent of the held-out splits is learnt from train
    assert intents["devel"] <= intents["train"]
    assert intents["test"] <= intents["train"]
    assert len(intents["train"]) == 10


@pytest.mark.parametrize(
    "use_synthetic, recording_type",
    [(False, "both"), (True, "headset"), (False, "far-field")],
)
def test_options_change_rows(tmp_path, use_synthetic, recording_type):
    summary = prepare_slurp(
        MINI,
        tmp_path,
        use_synthetic=use_synthetic,
        recording_type=recording_type,
    )
    synthetic = count_recordings("train_synthetic") if use_synthetic else 0
    assert summary["rows"] == {
        "train": count_recordings("train", recording_type) + synthetic,
        "devel": count_recordings("devel", recording_type),
        "test": count_recordings("test", recording_type),
    }
    train = read_csv_rows(tmp_path / "train.csv")
    has_synthetic = any("slurp_synth" in r["wav"] for r in train.values())
    assert has_synthetic == use_synthetic
    real = [r["wav"] for r in train.values() if "slurp_real" in r["wav"]]
    headset = [w.endswith("-headset.flac") for w in real]
    if recording_type == "headset":
        assert all(headset)
    elif recording_type == "far-field":
        assert not any(headset)


def test_idempotent_and_reruns_on_new_options(tmp_path):
    first = prepare_slurp(MINI, tmp_path, splits=["devel", "test"])
    assert first["prepared"]
    stamp = os.path.getmtime(tmp_path / "test.csv")

    again = prepare_slurp(MINI, tmp_path, splits=["devel", "test"])
    assert not again["prepared"]
    assert again["reason"] == "already prepared"
    assert again["rows"] == first["rows"]
    assert os.path.getmtime(tmp_path / "test.csv") == stamp

    headset = prepare_slurp(
        MINI, tmp_path, splits=["devel", "test"], recording_type="headset"
    )
    assert headset["prepared"]
    assert headset["rows"]["test"] < first["rows"]["test"]

    # a missing manifest forces a new run even with the same options
    os.remove(tmp_path / "devel.csv")
    redo = prepare_slurp(
        MINI, tmp_path, splits=["devel", "test"], recording_type="headset"
    )
    assert redo["prepared"] and (tmp_path / "devel.csv").is_file()
    assert not list(tmp_path.glob("*.tmp"))


def test_skip_prep_writes_nothing(tmp_path):
    summary = prepare_slurp(
        tmp_path / "nowhere", tmp_path / "out", skip_prep=True
    )
    assert not summary["prepared"] and summary["reason"] == "skip_prep"
    assert not (tmp_path / "out").exists()


def test_data_root_placeholder_resolves(default_prep, tmp_path):
    save, _ = default_prep
    # the manifest stays valid when the corpus moves
    moved = tmp_path / "moved_slurp"
    shutil.copytree(MINI, moved)
    data = DynamicItemDataset.from_csv(
        str(save / "test.csv"), replacements={"data_root": str(moved)}
    )
    assert len(data) == count_recordings("test")
    for row in data.data.values():
        path = Path(row["wav"])
        assert path.is_file() and moved in path.parents
        info = sf.info(str(path))
        assert (info.samplerate, info.channels) == (16000, 1)
        assert info.duration == pytest.approx(row["duration"], abs=1e-3)


def make_broken_corpus(root):
    """A corpus whose train.jsonl has one bad line of each kind.

    Returns the expected (line number, reason, file) of each skipped row.
    """
    text = root / "dataset" / "slurp"
    text.mkdir(parents=True)
    (root / "slurp_real").mkdir()
    for split in ("devel", "test"):
        shutil.copy(TEXT / f"{split}.jsonl", text)
    for entry in read_jsonl("devel") + read_jsonl("test"):
        for rec in entry["recordings"]:
            shutil.copy(MINI / "slurp_real" / rec["file"], root / "slurp_real")

    good = read_jsonl("train")[:4]
    for entry in good:
        for rec in entry["recordings"]:
            shutil.copy(MINI / "slurp_real" / rec["file"], root / "slurp_real")
    missing = dict(good[1], slurp_id=90001)
    missing["recordings"] = [
        dict(good[1]["recordings"][0], file="audio-1.flac")
    ]
    unreadable = dict(good[2], slurp_id=90002)
    unreadable["recordings"] = [
        dict(good[2]["recordings"][0], file="audio-2-headset.flac")
    ]
    (root / "slurp_real" / "audio-2-headset.flac").write_bytes(b"not flac")
    empty = dict(good[3], slurp_id=90003, sentence="  ")
    lines = [
        json.dumps(good[0]),  # 1
        '{"slurp_id": 5, "sentence": "broken',  # 2: malformed
        json.dumps(missing),  # 3
        "",  # 4: blank lines are ignored
        json.dumps(unreadable),  # 5
        json.dumps(empty),  # 6
        json.dumps({"slurp_id": 7, "sentence": "no recordings"}),  # 7
    ]
    (text / "train.jsonl").write_text("\n".join(lines) + "\n")
    return len(good[0]["recordings"]), [
        (2, "malformed JSON", None),
        (3, "missing audio file", "audio-1.flac"),
        (5, "unreadable audio", "audio-2-headset.flac"),
        (6, "empty sentence", None),
        (7, "missing key(s) scenario, action, recordings", None),
    ]


def test_skipped_rows_are_reported(tmp_path, caplog):
    root = tmp_path / "broken_slurp"
    n_good, expected = make_broken_corpus(root)
    with caplog.at_level(logging.WARNING):
        summary = prepare_slurp(root, tmp_path / "out", use_synthetic=False)
    assert summary["prepared"]
    assert summary["rows"]["train"] == n_good
    assert summary["rows"]["test"] == count_recordings("test")
    skipped = summary["skipped"]
    assert [(s["line"], s["file"]) for s in skipped] == [
        (line, file) for line, _, file in expected
    ]
    for record, (line, reason, _) in zip(skipped, expected, strict=True):
        assert record["reason"].startswith(reason)
        assert record["source"] == os.path.join(
            "dataset", "slurp", "train.jsonl"
        )
        assert f"line {line}" in caplog.text
    assert "audio-1.flac" in caplog.text and "malformed JSON" in caplog.text
    assert "5 skipped in all" in caplog.text
    # the good rows were still written, atomically
    assert len(read_csv_rows(tmp_path / "out" / "train.csv")) == n_good
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_audio_under_audio_folder(tmp_path):
    """The layout of SLURP's own download script: audio/slurp_real/."""
    root = tmp_path / "slurp"
    (root / "dataset").mkdir(parents=True)
    shutil.copytree(TEXT, root / "dataset" / "slurp")
    (root / "audio").mkdir()
    for name in ("slurp_real", "slurp_synth"):
        os.symlink(MINI / name, root / "audio" / name)
    summary = prepare_slurp(root, tmp_path / "out", splits=["train"])
    train = read_csv_rows(tmp_path / "out" / "train.csv")
    assert summary["rows"]["train"] == len(train) > 0
    assert all(r["wav"].startswith("$data_root/audio/") for r in train.values())


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_slurp(tmp_path / "nowhere", tmp_path / "out")
    expected = str(tmp_path / "dataset" / "slurp" / "train.jsonl")
    with pytest.raises(FileNotFoundError) as err:
        prepare_slurp(tmp_path, tmp_path / "out")
    assert expected in str(err.value)

    root = tmp_path / "text_only"
    shutil.copytree(TEXT, root / "dataset" / "slurp")
    with pytest.raises(FileNotFoundError, match="slurp_real"):
        prepare_slurp(root, tmp_path / "out")
    with pytest.raises(ValueError, match="recording_type"):
        prepare_slurp(MINI, tmp_path / "out", recording_type="lapel")
    with pytest.raises(ValueError, match="splits"):
        prepare_slurp(MINI, tmp_path / "out", splits=["train_real"])
    assert not (tmp_path / "out").exists()


def test_csv_safe_text():
    # SpeechBrain's CSV loader substitutes every "$name"
    assert slurp_prepare._csv_safe(" send  $5 to john ") == (
        "send dollars 5 to john"
    )


# --------------------------------------------------------------------------
# The generator (make_mini_slurp.py)
# --------------------------------------------------------------------------


def test_generator_explains_missing_espeak(monkeypatch):
    import make_mini_slurp

    monkeypatch.setattr(make_mini_slurp.shutil, "which", lambda _: None)
    with pytest.raises(SystemExit, match="apt-get install -y espeak-ng"):
        make_mini_slurp.check_espeak()


@pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install -y espeak-ng)",
)
def test_generator_makes_a_preparable_corpus(tmp_path):
    import make_mini_slurp

    out = tmp_path / "tiny_slurp"
    counts = ["--n-train", "1", "--n-devel", "1", "--n-test", "1"]
    make_mini_slurp.main(["--out", str(out), "--n-synth", "1", *counts])
    entries = {s: read_jsonl(s, out) for s in ("train", "devel", "test")}
    intents = set(make_mini_slurp.INTENTS)
    for split_entries in entries.values():
        assert {e["intent"] for e in split_entries} == intents
    sentences = [e["sentence"] for es in entries.values() for e in es]
    assert len(sentences) == len(set(sentences))
    entry = entries["train"][0]
    words = entry["sentence"].split()
    assert [t["surface"] for t in entry["tokens"]] == words
    for entity in entry["entities"]:
        filler = " ".join(words[i] for i in entity["span"])
        assert f"[{entity['type']} : {filler}]" in entry["sentence_annotation"]

    summary = prepare_slurp(out, tmp_path / "out")
    assert summary["skipped"] == []
    assert summary["rows"]["train"] == count_recordings(
        "train", root=out
    ) + count_recordings("train_synthetic", root=out)
    for path in list((out / "slurp_real").iterdir())[:5]:
        info = sf.info(str(path))
        assert (info.format, info.samplerate, info.channels) == (
            "FLAC",
            16000,
            1,
        )
    with pytest.raises(SystemExit, match="--force"):
        make_mini_slurp.main(["--out", str(out)])
