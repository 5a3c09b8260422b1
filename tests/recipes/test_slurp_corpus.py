"""Tests of the SLURP corpus generator's presets and ``ensure_corpus``.

``make_mini_slurp.py --preset demo`` writes a larger corpus in SLURP's layout
whose entries also name their phrasing (template), some phrasings being kept
out of train and devel; ``slurp_prepare`` carries those optional fields into
the manifests. The corpus here is the demo preset at a few readings per
intent (a few seconds of espeak-ng). Tests that synthesise are skipped when
espeak-ng is not installed.

Authors
 * cald-brain developers 2026
"""

import argparse
import csv
import json
import os
import random
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "SLURP"
MINI = RECIPE / "mini_slurp"

# The recipe folder is not a package: import its scripts by path.
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import make_mini_slurp  # noqa: E402
from slurp_prepare import CSV_COLUMNS, prepare_slurp  # noqa: E402

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None,
    reason="espeak-ng is not installed (apt-get install -y espeak-ng sox)",
)
SPLITS = ("train", "devel", "test")
# The demo preset at 3 / 1 / 3 readings per intent: 70 headset files.
SMALL = {"n_train": 3, "n_devel": 1, "n_test": 3}
SEED = 7


def build_small(out, **kwargs):
    """The small demo corpus, built by ensure_corpus in this process."""
    options = {"seed": SEED, "workers": 1, "progress": False, **SMALL}
    options.update(kwargs)
    return make_mini_slurp.ensure_corpus(out, "demo", **options)


def read_jsonl(root, name):
    """Entries of one jsonl file of a SLURP-layout corpus."""
    path = Path(root) / "dataset" / "slurp" / f"{name}.jsonl"
    with open(path, encoding="utf-8") as fin:
        return [json.loads(line) for line in fin if line.strip()]


def read_metadata(root):
    """metadata.json of a SLURP-layout corpus."""
    path = Path(root) / "dataset" / "slurp" / "metadata.json"
    with open(path, encoding="utf-8") as fin:
        return json.load(fin)


def read_csv(path):
    """Manifest rows as dicts, the header checked."""
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin)
        assert reader.fieldnames == CSV_COLUMNS
        return list(reader)


def corpus_files(root):
    """Relative path -> bytes of every file of a corpus but the marker."""
    root = Path(root)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != make_mini_slurp.MARKER
    }


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """The small demo corpus and its manifests."""
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "espeak-ng is not installed (apt-get install -y espeak-ng sox)"
        )
    root = tmp_path_factory.mktemp("demo") / "slurp_demo"
    out = build_small(root)
    save = tmp_path_factory.mktemp("demo_manifests")
    summary = prepare_slurp(out, save)
    return Path(out), save, summary


# --------------------------------------------------------------------------
# Presets (no synthesis)
# --------------------------------------------------------------------------


def test_mini_preset_text_is_the_committed_corpus(tmp_path):
    """The default settings still plan exactly the committed text files."""
    settings = make_mini_slurp.corpus_settings()
    assert settings == {
        "preset": "mini",
        "seed": 1234,
        **make_mini_slurp.PRESETS["mini"],
    }
    plan = make_mini_slurp.plan_corpus(
        argparse.Namespace(**settings), random.Random(1234)
    )
    (tmp_path / "dataset" / "slurp").mkdir(parents=True)
    make_mini_slurp.write_text(plan, str(tmp_path))
    for name in ("train", "devel", "test", "train_synthetic", "metadata"):
        file = f"{name}.json" if name == "metadata" else f"{name}.jsonl"
        written = (tmp_path / "dataset" / "slurp" / file).read_bytes()
        assert written == (MINI / "dataset" / "slurp" / file).read_bytes(), file


def test_demo_preset_plan():
    """Full demo counts: phrasings, held-out share and voices, from the plan."""
    settings = make_mini_slurp.corpus_settings("demo")
    plan = make_mini_slurp.plan_corpus(
        argparse.Namespace(**settings), random.Random(1234)
    )
    recordings = {s: sum(len(e["recordings"]) for e in plan[s]) for s in SPLITS}
    assert recordings == {"train": 800, "devel": 100, "test": 200}
    assert plan["train_synthetic"] == []
    assert all(
        len(p) == 10
        for p in map(make_mini_slurp.demo_phrasings, make_mini_slurp.INTENTS)
    )
    held = plan["_held_out"]
    assert all(len(h) == 2 for h in held.values())
    unseen = [e for e in plan["test"] if e["unseen_phrasing"]]
    assert 0.15 <= len(unseen) / len(plan["test"]) <= 0.2
    sentences = [{e["sentence"] for e in plan[s]} for s in SPLITS]
    assert not (
        sentences[0] & sentences[1]
        or sentences[0] & sentences[2]
        or sentences[1] & sentences[2]
    )
    # the prefix/suffix words keep about their nominal rate in every split
    for split in SPLITS:
        first = [
            e["sentence"].split()[0]
            for e in plan[split]
            for _ in e["recordings"]
        ]
        share = sum(
            w in ("olly", "please", "hey", "okay") for w in first
        ) / len(first)
        assert share < 0.3, (split, share)
    # same seed, same plan
    again = make_mini_slurp.plan_corpus(
        argparse.Namespace(**settings), random.Random(1234)
    )
    assert [e["sentence"] for e in again["test"]] == [
        e["sentence"] for e in plan["test"]
    ]


def test_settings_and_command_line_errors():
    with pytest.raises(ValueError, match="preset"):
        make_mini_slurp.corpus_settings("huge")
    with pytest.raises(ValueError, match="holds no phrasings out"):
        make_mini_slurp.corpus_settings("mini", held_out=2)
    with pytest.raises(ValueError, match="held_out"):
        make_mini_slurp.corpus_settings("demo", held_out=10)
    with pytest.raises(ValueError, match="n_test"):
        make_mini_slurp.corpus_settings("demo", n_test=0)
    demo = make_mini_slurp.corpus_settings(
        "demo", seed=3, n_train=5, far_field=True
    )
    assert demo["n_train"] == 5 and demo["far_field"] and demo["n_test"] == 20
    with pytest.raises(SystemExit):
        make_mini_slurp.parse_args(["--preset", "demo"])  # --out is required
    args = make_mini_slurp.parse_args(
        ["--preset", "demo", "--out", "x", "--n-test", "4"]
    )
    assert args.settings["n_test"] == 4 and args.settings["held_out"] == 2
    assert make_mini_slurp.parse_args([]).out == os.path.join(
        str(RECIPE), "mini_slurp"
    )


def test_missing_espeak_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(make_mini_slurp.shutil, "which", lambda _: None)
    with pytest.raises(
        make_mini_slurp.EspeakNotFoundError,
        match="apt-get install -y espeak-ng sox",
    ):
        build_small(tmp_path / "slurp_demo")
    assert not (tmp_path / "slurp_demo").exists()
    assert os.listdir(tmp_path) == []


def test_real_slurp_manifests_have_empty_phrasing_columns(tmp_path):
    """Entries without the optional fields (real SLURP, the mini corpus)."""
    prepare_slurp(MINI, tmp_path, splits=["test"])
    rows = read_csv(tmp_path / "test.csv")
    assert rows and all(
        r["phrasing"] == r["unseen_phrasing"] == "" for r in rows
    )


# --------------------------------------------------------------------------
# The demo preset on disk, read back by prepare_slurp
# --------------------------------------------------------------------------


@needs_espeak
def test_demo_corpus_reads_back(small_corpus):
    out, save, summary = small_corpus
    assert summary["prepared"] and summary["skipped"] == []
    n_intents = len(make_mini_slurp.INTENTS)
    assert summary["rows"] == {s: n_intents * SMALL[f"n_{s}"] for s in SPLITS}
    rows = {s: read_csv(save / f"{s}.csv") for s in SPLITS}
    # headset files only
    assert all(
        r["wav"].endswith("-headset.flac") for rs in rows.values() for r in rs
    )

    metadata = read_metadata(out)
    held_out = set(metadata["held_out_phrasings"])
    assert len(held_out) == 2 * n_intents
    for name in held_out:
        assert name in metadata["phrasings"]
    for split, split_rows in rows.items():
        for row in split_rows:
            intent, _, index = row["phrasing"].partition("/")
            assert intent == row["intent"] and index.isdigit()
            assert row["unseen_phrasing"] == (
                "1" if row["phrasing"] in held_out else "0"
            )
    # held-out phrasings are read in test only, about a fifth of it here
    for split in ("train", "devel"):
        assert {r["phrasing"] for r in rows[split]}.isdisjoint(held_out)
    unseen = [r for r in rows["test"] if r["unseen_phrasing"] == "1"]
    assert len(unseen) == n_intents  # round(3 * 2 / 10) = 1 per intent
    assert {r["intent"] for r in unseen} == set(make_mini_slurp.INTENTS)

    # the jsonl entries carry the same fields, as JSON types
    entry = read_jsonl(out, "test")[0]
    assert isinstance(entry["unseen_phrasing"], bool)
    assert entry["phrasing"].startswith(entry["intent"] + "/")

    # voices: accents and variants of devel and test are new
    voices = {s: set() for s in SPLITS}
    for key, meta in metadata.items():
        if key.isdigit():
            for record in meta["recordings"].values():
                voices[record["split"]].add(record["voice"])
    accents = {s: {v.split("+")[0] for v in vs} for s, vs in voices.items()}
    variants = {s: {v.split("+")[1] for v in vs} for s, vs in voices.items()}
    for held_split in ("devel", "test"):
        assert accents[held_split].isdisjoint(accents["train"])
        assert variants[held_split].isdisjoint(variants["train"])
    assert accents["devel"].isdisjoint(accents["test"])
    assert variants["devel"].isdisjoint(variants["test"])

    # no sentence is in two splits
    sentences = {s: {e["sentence"] for e in read_jsonl(out, s)} for s in SPLITS}
    assert sentences["train"].isdisjoint(sentences["test"])
    assert sentences["train"].isdisjoint(sentences["devel"])
    assert sentences["devel"].isdisjoint(sentences["test"])


@needs_espeak
def test_ensure_corpus_is_idempotent(small_corpus, monkeypatch):
    out, _, _ = small_corpus
    marker = out / make_mini_slurp.MARKER
    stamp = marker.stat().st_mtime_ns

    def no_build(*args, **kwargs):
        raise AssertionError("the complete corpus was built again")

    monkeypatch.setattr(make_mini_slurp, "build_corpus", no_build)
    with monkeypatch.context() as patch:
        # a complete corpus needs neither a build nor espeak-ng
        patch.setattr(make_mini_slurp.shutil, "which", lambda _: None)
        assert build_small(out) == str(out)
        assert build_small(str(out) + os.sep) == str(out)
    assert marker.stat().st_mtime_ns == stamp
    saved = json.loads(marker.read_text())
    assert saved["settings"] == make_mini_slurp.corpus_settings(
        "demo", SEED, **SMALL
    )
    assert saved["summary"]["unseen_test"] == len(make_mini_slurp.INTENTS)
    # other settings are another corpus; a failed build leaves this one
    with pytest.raises(AssertionError, match="built again"):
        build_small(out, n_test=4)
    assert marker.stat().st_mtime_ns == stamp
    assert sorted(os.listdir(out.parent)) == [out.name]


@needs_espeak
def test_same_seed_same_corpus_any_workers(small_corpus, tmp_path):
    out, _, _ = small_corpus
    again = build_small(tmp_path / "again", workers=2)
    assert corpus_files(again) == corpus_files(out)


@needs_espeak
def test_half_built_corpus_is_not_used(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "slurp_demo"
    # a generation killed before its marker: the layout, partly written
    (out / "dataset" / "slurp").mkdir(parents=True)
    (out / "slurp_real").mkdir()
    shutil.copy(
        small_corpus[0] / "dataset" / "slurp" / "train.jsonl",
        out / "dataset" / "slurp",
    )
    # ... and the temporary folder of an ensure_corpus run that was killed
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    stale = tmp_path / f".slurp_demo.partial-{dead.pid}@{host}-deadbeef"
    (stale / "dataset").mkdir(parents=True)

    # a build that fails half-way leaves nothing behind, and out untouched
    real_render = make_mini_slurp.render

    def failing_render(plan, root, *args, **kwargs):
        (Path(root) / "slurp_real" / "audio-1-headset.flac").write_bytes(
            b"half"
        )
        raise KeyboardInterrupt

    monkeypatch.setattr(make_mini_slurp, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        build_small(out)
    assert sorted(os.listdir(tmp_path)) == [
        "slurp_demo"
    ]  # stale one removed too
    assert not (out / make_mini_slurp.MARKER).exists()
    assert sorted(os.listdir(out / "slurp_real")) == []

    # the next call builds the corpus in full and replaces the half-built one
    monkeypatch.setattr(make_mini_slurp, "render", real_render)
    assert build_small(out) == str(out)
    assert (out / make_mini_slurp.MARKER).is_file()
    assert corpus_files(out) == corpus_files(small_corpus[0])
    assert sorted(os.listdir(tmp_path)) == ["slurp_demo"]


def test_foreign_folder_is_not_replaced(tmp_path, monkeypatch):
    out = tmp_path / "data"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    monkeypatch.setattr(make_mini_slurp, "require_espeak", lambda what: "espeak-ng")
    with pytest.raises(FileExistsError, match="notes.txt"):
        build_small(out)
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["data"]
