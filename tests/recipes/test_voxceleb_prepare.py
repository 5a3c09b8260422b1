"""VoxCeleb recipe, data side: the generated VoxCeleb1-layout corpus and its preparation
(counts, the split by video, durations, idempotency, unseen speakers, bad input).

Authors
 * cald-brain developers 2026
"""

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "VoxCeleb"
if str(RECIPE) not in sys.path:
    sys.path.insert(0, str(RECIPE))

import make_mini_voxceleb  # noqa: E402
from voxceleb_prepare import VoxCelebError, count_speakers, prepare_voxceleb  # noqa: E402

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
CODES = {"1": "train", "2": "dev", "3": "test"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    return Path(make_mini_voxceleb.ensure_corpus(tmp_path_factory.mktemp("vox") / "corpus", "mini", progress=False))


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    save = tmp_path_factory.mktemp("vox_prep")
    return save, prepare_voxceleb(str(corpus), str(save), progress=False)


def split_lines(root):
    return [line.split() for line in (root / "iden_split.txt").read_text().splitlines() if line.strip()]


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def copy_corpus(corpus, dest):
    shutil.copytree(corpus, dest)
    return dest


def rewrite_split(root, edit):
    """Applies ``edit(lines) -> lines`` to a copy's iden_split.txt."""
    path = root / "iden_split.txt"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


@needs_espeak
def test_corpus_layout(corpus):
    lines = split_lines(corpus)
    wavs = sorted(p.relative_to(corpus / "wav").as_posix() for p in (corpus / "wav").rglob("*.wav"))
    assert sorted(rel for _, rel in lines) == wavs and {code for code, _ in lines} == {"1", "2", "3"}
    for rel in wavs:
        speaker, video, name = rel.split("/")
        assert speaker.startswith("id1") and len(speaker) == 7
        assert len(video) == 11 and all(c.isalnum() or c in "_-" for c in video)
        assert len(name) == 9 and name[:5].isdigit()
    info = sf.info(str(corpus / "wav" / wavs[0]))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    meta = (corpus / "vox1_meta.csv").read_text().splitlines()
    assert meta[0] == "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"
    rows = [row.split("\t") for row in meta[1:]]
    assert sorted(r[0] for r in rows) == sorted({rel.split("/")[0] for rel in wavs})
    assert {r[2] for r in rows} <= {"m", "f"} and {r[4] for r in rows} <= {"dev", "test"}
    # distinct voices: no two speakers share a voice variant, pitch or speed
    plan = make_mini_voxceleb.plan_corpus(make_mini_voxceleb.corpus_settings("mini"))
    for key in ("voice", "pitch", "speed"):
        assert len({s[key] for s in plan}) == len(plan)
    assert len({s["voice"].split("+")[1] for s in plan}) == len(plan)


@needs_espeak
def test_generator_is_deterministic(corpus, tmp_path):
    settings = make_mini_voxceleb.corpus_settings("mini")
    plan = make_mini_voxceleb.plan_corpus(settings)
    assert plan == make_mini_voxceleb.plan_corpus(settings)
    assert make_mini_voxceleb.iden_split_text(plan) == (corpus / "iden_split.txt").read_text()
    assert make_mini_voxceleb.meta_text(plan) == (corpus / "vox1_meta.csv").read_text()
    other = make_mini_voxceleb.plan_corpus(make_mini_voxceleb.corpus_settings("mini", seed=7))
    assert make_mini_voxceleb.iden_split_text(other) != make_mini_voxceleb.iden_split_text(plan)
    # the audio too: one utterance rendered again is the same, sample for sample
    exe = shutil.which("espeak-ng")
    task = make_mini_voxceleb.render_tasks(plan, str(tmp_path), settings["seed"], exe, str(tmp_path))[-1]
    make_mini_voxceleb.render_utterance(task)
    rel = task[1]
    again, _ = sf.read(str(tmp_path / "wav" / rel), dtype="int16")
    built, _ = sf.read(str(corpus / "wav" / rel), dtype="int16")
    assert np.array_equal(again, built)


@needs_espeak
def test_counts_split_by_video_and_durations(corpus, prepared):
    save, summary = prepared
    lines = split_lines(corpus)
    assert summary["prepared"] and summary["skipped"] == []
    for code, split in CODES.items():
        assert summary["counts"][split] == sum(c == code for c, _ in lines)
        assert len(read_rows(save / f"{split}.csv")) == summary["counts"][split]
    assert summary["n_speakers"] == count_speakers(str(corpus)) == 4
    rows = {split: read_rows(save / f"{split}.csv") for split in CODES.values()}
    assert list(rows["train"][0]) == ["ID", "duration", "wav", "spk_id"]
    videos = {split: {r["ID"].rsplit("-", 1)[0] for r in split_rows} for split, split_rows in rows.items()}
    assert not videos["train"] & videos["dev"] and not videos["train"] & videos["test"]
    assert not videos["dev"] & videos["test"]
    speakers = {split: {r["spk_id"] for r in split_rows} for split, split_rows in rows.items()}
    assert speakers["train"] == speakers["dev"] == speakers["test"]
    for row in rows["test"] + rows["train"][:3]:
        assert row["wav"].startswith("$data_root/wav/")
        speaker, video, utt = row["ID"][:7], row["ID"][8:-6], row["ID"][-5:]
        assert row["wav"].endswith(f"/{speaker}/{video}/{utt}.wav") and row["spk_id"] == speaker
        audio, rate = sf.read(row["wav"].replace("$data_root", str(corpus)))
        assert rate == 16000 and abs(len(audio) / rate - float(row["duration"])) < 1e-3
        assert 1.5 < float(row["duration"]) < 7.0
    # the manifests load as the recipe loads them
    from cald_brain.dataio import manifest_datasets

    sets = manifest_datasets({"test": str(save / "test.csv")}, str(corpus))
    sets["test"].set_output_keys(["wav"])
    assert Path(sets["test"][0]["wav"]).is_file()


@needs_espeak
def test_idempotent_and_separate_archives(corpus, prepared, tmp_path):
    save, _ = prepared
    before = {p.name: p.stat().st_mtime_ns for p in save.iterdir()}
    again = prepare_voxceleb(str(corpus), str(save), progress=False)
    assert not again["prepared"] and again["counts"] == prepared[1]["counts"] and again["n_speakers"] == 4
    assert {p.name: p.stat().st_mtime_ns for p in save.iterdir()} == before
    # the dev and test archives unpacked into two folders
    root = tmp_path / "vox"
    root.mkdir()
    shutil.copy(corpus / "iden_split.txt", root)
    test_speaker = "id10002"
    shutil.copytree(corpus / "wav", root / "vox1_dev_wav" / "wav", ignore=shutil.ignore_patterns(test_speaker))
    shutil.copytree(corpus / "wav" / test_speaker, root / "vox1_test_wav" / "wav" / test_speaker)
    for folders in (None, [str(root / "vox1_dev_wav" / "wav"), str(root / "vox1_test_wav" / "wav")]):
        summary = prepare_voxceleb(str(root), str(tmp_path / f"prep{folders is None}"), wav_folders=folders,
                                   progress=False)
        assert summary["counts"] == prepared[1]["counts"]
    rows = read_rows(tmp_path / "prepTrue" / "test.csv")
    assert any(r["wav"].startswith("$data_root/vox1_test_wav/wav/id10002/") for r in rows)


@needs_espeak
def test_unseen_speaker_error_or_skip(corpus, tmp_path):
    root = copy_corpus(corpus, tmp_path / "vox")
    lines = split_lines(corpus)
    # id10003 loses its train utterances: it stays in dev and test only
    rewrite_split(root, lambda old: [line for line in old if not line.startswith("1 id10003/")])
    first_dev = 1 + [f"{c} {r}" for c, r in lines if not (c == "1" and r.startswith("id10003/"))].index(
        next(f"{c} {r}" for c, r in lines if c == "2" and r.startswith("id10003/")))
    with pytest.raises(VoxCelebError, match=rf"iden_split.txt line {first_dev}: speaker id10003 is in dev"):
        prepare_voxceleb(str(root), str(tmp_path / "prep"), progress=False)
    assert not (tmp_path / "prep" / "train.csv").exists()

    summary = prepare_voxceleb(str(root), str(tmp_path / "prep"), unseen_speakers="skip", progress=False)
    n_dev = sum(c == "2" and r.startswith("id10003/") for c, r in lines)
    n_test = sum(c == "3" and r.startswith("id10003/") for c, r in lines)
    assert summary["n_speakers"] == 3
    assert len([r for r in summary["skipped"] if r["split"] == "dev"]) == n_dev
    assert len([r for r in summary["skipped"] if r["split"] == "test"]) == n_test
    assert summary["counts"]["dev"] == sum(c == "2" for c, _ in lines) - n_dev
    assert all(r["spk_id"] == "id10003" and "not in train" in r["reason"] for r in summary["skipped"])
    report = (tmp_path / "prep" / "skipped_test.txt").read_text().splitlines()
    assert len(report) == n_test and f"iden_split.txt:{summary['skipped'][-1]['line']}\t" in report[-1]
    assert "id10003" not in (tmp_path / "prep" / "test.csv").read_text()
    # prepared again: still up to date, with the same report
    again = prepare_voxceleb(str(root), str(tmp_path / "prep"), unseen_speakers="skip", progress=False)
    assert not again["prepared"] and again["skipped"] == summary["skipped"]


@needs_espeak
def test_bad_input_names_the_line(corpus, prepared, tmp_path):
    save, _ = prepared
    before = (save / "test.csv").read_text()
    target = split_lines(corpus)[5][1]  # id10001/<video>/<nnnnn>.wav on line 6

    def expect(edit, pattern):
        root = copy_corpus(corpus, tmp_path / f"c{len(list(tmp_path.iterdir()))}")
        edit(root)
        with pytest.raises(VoxCelebError, match=pattern):
            prepare_voxceleb(str(root), str(save), progress=False)
        assert (save / "test.csv").read_text() == before  # nothing written before is lost

    expect(lambda root: (root / "wav" / target).unlink(),
           rf"iden_split.txt line 6: {target} \(\w+\) is missing from every wav folder")
    expect(lambda root: (root / "wav" / target).write_bytes(b""), rf"line 6: .*{target}: unreadable audio")
    expect(lambda root: (root / "wav" / target).write_bytes(b"RIFF\x00\x00garbage" * 4),
           r"line 6: .*: unreadable audio")

    def low_rate(root):
        audio, _ = sf.read(str(root / "wav" / target))
        sf.write(str(root / "wav" / target), audio[::2], 8000, subtype="PCM_16")
    expect(low_rate, rf"line 6: .*{target}: 8000 Hz, 1 channel")

    def bad_code(lines):
        lines[2] = "4" + lines[2][1:]
        return lines
    expect(lambda root: rewrite_split(root, bad_code), r"iden_split.txt line 3: unknown split code '4'")

    def one_field(lines):
        lines[3] = lines[3].split()[1]
        return lines
    expect(lambda root: rewrite_split(root, one_field), r"iden_split.txt line 4: a line needs 2 fields")
