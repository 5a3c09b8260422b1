"""Tests of cald_brain.preparation (the helpers shared by the *_prepare.py recipes).

Authors
 * cald-brain developers 2026
"""

import logging

import pytest

from cald_brain import preparation
from cald_brain.dataio import manifest_datasets
from cald_brain.preparation import (
    KeepPlaceholders, Problems, count_rows, load_manifest, log_skips, read_skips, skips_path, split_train_valid,
    write_csv, write_skips,
)


class CorpusError(ValueError):
    pass


def test_problems_skip_and_error():
    problems = Problems("train", "skip", CorpusError, file="t.tsv")
    problems(4, "empty text")
    assert problems.records == [{"split": "train", "file": "t.tsv", "line": 4, "reason": "empty text"}]
    with pytest.raises(CorpusError, match=r"^f\.txt: bad \(on_error='skip' drops such files"):
        Problems("test", "error", CorpusError, noun="files")("f.txt", "bad")
    with pytest.raises(ValueError, match="on_error"):
        Problems("train", "ignore")


def test_write_csv_is_atomic_and_keeps_old_file_on_error(tmp_path):
    path = str(tmp_path / "m.csv")
    write_csv(path, [{"ID": "a", "text": 'say "hi",\nthen $5'}], ["ID", "text"])
    assert count_rows(path) == 1
    with pytest.raises(ValueError):
        write_csv(path, [{"ID": "b", "extra": 1}], ["ID", "text"])  # extrasaction="raise"
    assert count_rows(path) == 1 and load_manifest(path, output_keys=["text"])[0]["text"] == 'say "hi",\nthen $5'


@pytest.mark.parametrize("fields, records, with_line", [
    ((), [{"split": "dev", "file": "a:b.tsv", "line": 3, "reason": "x\ty"}], True),
    (("wav", "spk_id"), [{"split": "dev", "file": "s.txt", "line": 1, "wav": "w.wav", "spk_id": "i", "reason": "r"}],
     True),
    ((), [{"split": "dev", "file": "pos/1_2.txt", "reason": "empty review"}], False),
])
def test_skips_round_trip(tmp_path, fields, records, with_line):
    path = skips_path(str(tmp_path), "dev")
    write_skips(path, records, fields)
    assert read_skips(path, "dev", fields, with_line=with_line) == records
    write_skips(path, [], fields)
    assert read_skips(path, "dev", fields, with_line=with_line) == []


def test_log_skips(caplog):
    records = [{"split": "train", "file": "f", "reason": f"bad ({i})"} for i in range(3)]
    with caplog.at_level(logging.WARNING):
        log_skips(logging.getLogger("t"), "train", records, noun="files", group=lambda r: r["reason"].split(" (")[0],
                  max_logged=2)
    assert caplog.text.count("train: skipped f: bad") == 2
    assert "3 files skipped (3 bad), only the first 2 logged above; all listed in skipped_train.txt" in caplog.text


def test_split_train_valid_deterministic_and_stratified():
    labels = [0] * 30 + [1] * 70
    train, valid = split_train_valid(labels, 0.1, seed=7)
    assert split_train_valid(labels, 0.1, seed=7) == (train, valid)
    assert sorted(train + valid) == list(range(100)) and len(valid) == 10
    assert sum(labels[i] for i in valid) == 7
    assert split_train_valid([1, 0], 0.01, seed=0)[1] != []  # at least one row
    with pytest.raises(ValueError):
        split_train_valid(labels, 1.0, seed=0)


def test_keep_placeholders_and_manifest_datasets(tmp_path):
    assert KeepPlaceholders({"a": 1})["b"] == "$b"
    path = tmp_path / "m.csv"
    path.write_text('ID,duration,wav,text\nu1,1.5,$data_root/u1.wav,"It cost $100, $5M and $data_root"\n')
    sets = manifest_datasets({"train": str(path), "test": str(path)}, "/corpus")
    sets["test"].set_output_keys(["wav", "text"])
    assert sets["test"][0] == {"wav": "/corpus/u1.wav", "text": "It cost $100, $5M and /corpus"}
    assert preparation.load_manifest(str(path), output_keys=["wav"])[0]["wav"] == "$data_root/u1.wav"
