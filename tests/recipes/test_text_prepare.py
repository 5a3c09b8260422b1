"""GLUE (SST-2, QNLI, QQP) and IMDB preparation: tiny corpora in the released
layouts, malformed input, idempotency, and the ``datasets`` copies.

Authors
 * cald-brain developers 2026
"""

import csv
import logging
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
for recipe in ("GLUE", "IMDB"):
    folder = str(REPO / "recipes" / recipe)
    if folder not in sys.path:
        sys.path.insert(0, folder)

import glue_prepare  # noqa: E402
import imdb_prepare  # noqa: E402
from glue_prepare import GlueError, prepare_glue  # noqa: E402
from imdb_prepare import ImdbError, prepare_imdb  # noqa: E402

COLUMNS = ["ID", "text", "text_pair", "label", "label_id"]

SST2_TRAIN = [
    "sentence\tlabel",
    "hide new secretions from the parental units \t0",
    "contains no wit , only labored gags \t0",
    "that loves its characters and communicates something rather beautiful about human nature \t1",
    "remains utterly satisfied to remain the same throughout \t0",
    'on the worst revenge-of-the-nerds clichés the filmmakers could dredge up , "again" \t0',
    "that 's far too tragic to merit such superficial treatment \t0",
    "demonstrates that the director of such hollywood blockbusters as patriot games can still turn out a small "
    "film \t1",
    "of saucy \t1",
    "a depressed fifteen-year-old 's suicidal poetry \t0",
    "are more deeply thought through than in most ` right-thinking ' films \t1",
]
SST2_DEV = [
    "sentence\tlabel",
    "it 's a charming and often affecting journey . \t1",
    "unflinchingly bleak and desperate \t0",
    "allows us to hope that nolan is poised to embark a major career as a commercial yet inventive filmmaker . \t1",
]
SST2_TEST = ["index\tsentence", "0\tuneasy mishmash of styles and genres .", "1\tthis film 's relationship to actual "
             "tension is the same as what christmas-tree flocking in a spray can is to actual snow ."]
QNLI_TRAIN = [
    "index\tquestion\tsentence\tlabel",
    "0\tWhen did the third Digimon series begin?\tUnlike the two seasons before it and most of the seasons that "
    "followed, Digimon Tamers takes a darker and more realistic approach to its story.\tnot_entailment",
    "1\tWhich missile batteries often have individual launchers several kilometres from one another?\tWhen MANPADS "
    "is operated by specialists, batteries may have several dozen teams deploying separately in small sections; "
    "self-propelled air defence guns may deploy in pairs.\tnot_entailment",
    "2\tWhat two things does Popper argue Tarski's theory involves in an evaluation of truth?\tHe bases this "
    "interpretation on the fact that examples such as the one described above refer to two things: assertions "
    "and the facts to which they refer.\tentailment",
    "3\tWhat is the name of the village 9 miles north of Calafat where the Ottoman forces attacked the Russians?"
    "\tOn 31 December 1853, the Ottoman forces at Calafat moved against the Russian force at Chetatea or Cetate, "
    "a small village nine miles north of Calafat, and engaged them on 6 January 1854.\tentailment",
    "4\tWhat famous palace is located in London?\tLondon contains four World Heritage Sites: the Tower of London; "
    "Kew Gardens; the site comprising the Palace of Westminster, Westminster Abbey, and St Margaret's Church; and "
    "the historic settlement of Greenwich.\tnot_entailment",
    "5\tWhen is the term 'German dialects' used in regard to the German language?\tWhen talking about the German "
    "language, the term German dialects is only used for the traditional regional varieties.\tentailment",
]
QNLI_DEV = [
    "index\tquestion\tsentence\tlabel",
    "0\tWhat came into force after the new constitution was herald?\tAs of that day, the new constitution "
    "heralding the Second Republic came into force.\tentailment",
    "1\tWhat is the first major city in the stream of the Rhine?\tThe most important tributaries in this area "
    "are the Ill below of Strasbourg, the Neckar in Mannheim and the Main across from Mainz.\tnot_entailment",
]
QQP_TRAIN = [
    "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
    "133273\t213221\t213222\tHow is the life of a math student? Could you describe your own experiences?\tWhich "
    "level of prepration is enough for the exam jlpt5?\t0",
    "402555\t536040\t536041\tHow do I control my horny emotions?\tHow do you control your horniness?\t1",
    "360472\t364011\t490273\tWhat causes stool color to change to yellow?\tWhat can cause stool to come out as "
    "little balls?\t0",
    # A question broken across two lines, as in the released train.tsv: two malformed rows.
    "150662\t155721\t7256\tWhat can one do after MBBS?",
    "\tWhat do i do after my MBBS ?\t1",
    "183004\t279958\t279959\tWhen can I expect my Cognizant confirmation mail?\tWhen can I expect Cognizant "
    "confirmation mail?\t0",
    '119056\t193387\t193388\tHow can I make $100 a day, "online"?\tHow can I earn $100, daily, online?\t1',
    "356863\t422862\t96457\tHow do I make friends.\tHow to make friends ?\t1",
]
QQP_DEV = [
    "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate",
    "201359\t303345\t303346\tWhy are African-Americans so beautiful?\tWhy are hispanics so beautiful?\t0",
    "263843\t69383\t380476\tI want to pursue PhD in Computer Science about social network,what is the open "
    "problem in social networks?\tI handle social media for a non-profit. Should I start going to social media "
    "networking events? Are there any good ones in the bay area?\t0",
    "172974\t266948\t175089\tIs there a reason why we should travel alone?\tWhat are some reasons to travel "
    "alone?\t1",
]


def write_tsv(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def glue(tmp_path):
    """``glue_data`` as GLUE's download script leaves it (a few rows per file)."""
    root = tmp_path / "glue_data"
    for folder, train, dev in (("SST-2", SST2_TRAIN, SST2_DEV), ("QNLI", QNLI_TRAIN, QNLI_DEV),
                               ("QQP", QQP_TRAIN, QQP_DEV)):
        write_tsv(root / folder / "train.tsv", train)
        write_tsv(root / folder / "dev.tsv", dev)
        write_tsv(root / folder / "test.tsv", SST2_TEST)  # unlabelled: never read
    return root


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as fin:
        reader = csv.DictReader(fin)
        return reader.fieldnames, list(reader)


def test_sst2_counts_labels_and_valid_slice(glue, tmp_path):
    out = prepare_glue(str(glue), str(tmp_path / "prep"), "sst2", valid_fraction=0.2)
    assert out["prepared"] and out["labels"] == ["negative", "positive"] and out["skipped"] == []
    assert out["counts"] == {"train": 8, "valid": 2, "test": 3}
    rows = {}
    for split in ("train", "valid", "test"):
        header, rows[split] = read_csv(out["csv"][split])
        assert header == COLUMNS
        assert all(r["text_pair"] == "" and r["text"] == r["text"].strip() for r in rows[split])
        assert all(r["label"] == out["labels"][int(r["label_id"])] for r in rows[split])
    assert [r["ID"] for r in rows["test"]] == ["sst2-dev-0", "sst2-dev-1", "sst2-dev-2"]
    assert rows["test"][1] == {"ID": "sst2-dev-1", "text": "unflinchingly bleak and desperate", "text_pair": "",
                               "label": "negative", "label_id": "0"}
    train_ids = {r["ID"] for r in rows["train"]}
    valid_ids = {r["ID"] for r in rows["valid"]}
    assert not train_ids & valid_ids and len(train_ids | valid_ids) == 10
    assert sorted(r["label"] for r in rows["valid"]) == ["negative", "positive"]  # stratified: 6 neg, 4 pos
    # The quotes of SST-2 (no quoting in GLUE's TSV) are kept as characters.
    assert any(r["text"].endswith('"again"') for r in rows["train"] + rows["valid"])
    # The same options in another folder draw the same slice; another seed may not.
    again = prepare_glue(str(glue), str(tmp_path / "prep2"), "sst2", valid_fraction=0.2)
    assert [r["ID"] for r in read_csv(again["csv"]["valid"])[1]] == [r["ID"] for r in rows["valid"]]


def test_qnli_and_qqp_pairs(glue, tmp_path):
    qnli = prepare_glue(str(glue), str(tmp_path / "qnli"), "QNLI")
    assert qnli["labels"] == ["entailment", "not_entailment"]
    assert qnli["counts"] == {"train": 5, "valid": 1, "test": 2}
    test = read_csv(qnli["csv"]["test"])[1]
    assert test[1]["ID"] == "qnli-dev-1"
    assert test[1]["text"] == "What is the first major city in the stream of the Rhine?"
    assert test[1]["text_pair"].startswith("The most important tributaries")
    assert (test[1]["label"], test[1]["label_id"]) == ("not_entailment", "1")
    assert (test[0]["label"], test[0]["label_id"]) == ("entailment", "0")

    qqp = prepare_glue(str(glue), str(tmp_path / "qqp"), "qqp", valid_fraction=0.2)
    assert qqp["labels"] == ["not_duplicate", "duplicate"]
    rows = read_csv(qqp["csv"]["train"])[1] + read_csv(qqp["csv"]["valid"])[1]
    by_id = {r["ID"]: r for r in rows}
    assert by_id["qqp-train-402555"]["text"] == "How do I control my horny emotions?"
    assert by_id["qqp-train-402555"]["text_pair"] == "How do you control your horniness?"
    assert by_id["qqp-train-402555"]["label"] == "duplicate"
    assert by_id["qqp-train-119056"]["text"] == 'How can I make $100 a day, "online"?'
    # The CSVs load through SpeechBrain ($100 is no placeholder) with the text intact.
    keys = ["id", "text", "text_pair", "label_id"]
    items = [x for split in ("train", "valid") for x in glue_prepare.load_manifest(qqp["csv"][split], output_keys=keys)]
    item = next(x for x in items if x["id"] == "qqp-train-119056")
    assert item == {"id": "qqp-train-119056", "text": 'How can I make $100 a day, "online"?',
                    "text_pair": "How can I earn $100, daily, online?", "label_id": 1}


def test_qqp_malformed_rows_skipped_and_reported(glue, tmp_path, caplog):
    train_tsv = str(glue / "QQP" / "train.tsv")
    with caplog.at_level(logging.WARNING):
        out = prepare_glue(str(glue), str(tmp_path / "prep"), "qqp", valid_fraction=0.2)
    assert out["counts"]["train"] + out["counts"]["valid"] == 6 and out["counts"]["test"] == 3
    assert [(r["split"], r["file"], r["line"]) for r in out["skipped"]] == [("train", train_tsv, 5),
                                                                            ("train", train_tsv, 6)]
    assert out["skipped"][0]["reason"].startswith("4 fields, the header has 6: '150662")
    assert out["skipped"][1]["reason"].startswith("3 fields, the header has 6")
    report = (tmp_path / "prep" / "skipped_train.txt").read_text().splitlines()
    assert report[0].startswith(f"{train_tsv}:5\t4 fields") and report[1].startswith(f"{train_tsv}:6\t3 fields")
    assert (tmp_path / "prep" / "skipped_test.txt").read_text() == ""
    assert f"{train_tsv}:5: 4 fields" in caplog.text and "2 malformed rows skipped" in caplog.text
    # The no-op rerun returns the same report.
    assert prepare_glue(str(glue), str(tmp_path / "prep"), "qqp", valid_fraction=0.2)["skipped"] == out["skipped"]


def test_on_error_error_keeps_previous_output(glue, tmp_path):
    prep = tmp_path / "prep"
    prepare_glue(str(glue), str(prep), "qqp")
    before = {p.name: p.read_bytes() for p in prep.iterdir()}
    with pytest.raises(GlueError, match=r"QQP/train\.tsv line 5: 4 fields, the header has 6"):
        prepare_glue(str(glue), str(prep), "qqp", on_error="error")
    assert {p.name: p.read_bytes() for p in prep.iterdir()} == before


def test_missing_column_is_always_an_error(glue, tmp_path):
    lines = list(QNLI_DEV)
    lines[0] = "index\tquestion\tsentence\tgold"
    write_tsv(glue / "QNLI" / "dev.tsv", lines)
    with pytest.raises(GlueError, match=r"QNLI/dev\.tsv line 1: the header has no column 'label'"):
        prepare_glue(str(glue), str(tmp_path / "prep"), "qnli", on_error="skip")
    write_tsv(glue / "SST-2" / "train.tsv", ["text\tlabel", "fine\t1"])
    with pytest.raises(GlueError, match=r"SST-2/train\.tsv line 1: .*'sentence'"):
        prepare_glue(str(glue), str(tmp_path / "prep"), "sst2")


def test_unknown_label_and_empty_text(glue, tmp_path):
    write_tsv(glue / "SST-2" / "dev.tsv", SST2_DEV + ["a sleeper\tpositive", " \t1"])
    lines = list(QNLI_TRAIN)
    lines[2] = "1\t  \tSome sentence.\tentailment"
    write_tsv(glue / "QNLI" / "train.tsv", lines)
    sst2 = prepare_glue(str(glue), str(tmp_path / "sst2"), "sst2")
    dev = str(glue / "SST-2" / "dev.tsv")
    assert [(r["file"], r["line"], r["reason"]) for r in sst2["skipped"]] == [
        (dev, 5, "unknown label 'positive' (expected one of 0, 1)"), (dev, 6, "empty sentence")]
    assert sst2["counts"]["test"] == 3
    qnli = prepare_glue(str(glue), str(tmp_path / "qnli"), "qnli")
    assert [(r["line"], r["reason"]) for r in qnli["skipped"]] == [(3, "empty question")]
    with pytest.raises(GlueError, match=r"SST-2/dev\.tsv line 5: unknown label 'positive'"):
        prepare_glue(str(glue), str(tmp_path / "sst2"), "sst2", on_error="error")
    # Duplicate IDs are malformed rows too.
    write_tsv(glue / "QQP" / "dev.tsv", QQP_DEV + [QQP_DEV[1]])
    qqp = prepare_glue(str(glue), str(tmp_path / "qqp"), "qqp")
    assert (qqp["skipped"][-1]["line"], qqp["skipped"][-1]["reason"]) == (
        5, "the ID qqp-dev-201359 is already used on line 2")


def test_idempotent_and_options(glue, tmp_path):
    prep = tmp_path / "prep"
    first = prepare_glue(str(glue), str(prep), "sst2")
    mtimes = {p.name: p.stat().st_mtime_ns for p in prep.iterdir()}
    again = prepare_glue(str(glue), str(prep), "sst2")
    assert not again["prepared"] and again["counts"] == first["counts"]
    assert {p.name: p.stat().st_mtime_ns for p in prep.iterdir()} == mtimes
    assert prepare_glue(str(glue), str(prep), "sst2", seed=7)["prepared"]  # other options: prepared again
    (prep / "valid.csv").unlink()
    assert prepare_glue(str(glue), str(prep), "sst2", seed=7)["prepared"]  # a CSV missing: prepared again
    assert not any(p.suffix == ".tmp" for p in prep.iterdir())
    short = prepare_glue(str(glue), str(prep), "sst2", max_rows=4, valid_fraction=0.25)
    assert short["counts"] == {"train": 3, "valid": 1, "test": 3}
    skipped = prepare_glue(str(glue), str(tmp_path / "none"), "sst2", skip_prep=True)
    assert not skipped["prepared"] and not (tmp_path / "none").exists()
    with pytest.raises(ValueError, match="Unknown GLUE task 'mnli'"):
        prepare_glue(str(glue), str(prep), "mnli")
    with pytest.raises(ValueError, match="on_error"):
        prepare_glue(str(glue), str(prep), "sst2", on_error="ignore")


def test_folder_lookup(glue, tmp_path):
    (glue / "SST-2").rename(glue / "sst2")
    assert prepare_glue(str(glue), str(tmp_path / "a"), "SST-2")["counts"]["test"] == 3  # any case
    assert prepare_glue(str(glue.parent), str(tmp_path / "b"), "sst2")["counts"]["test"] == 3  # holds glue_data
    assert prepare_glue(str(glue / "sst2"), str(tmp_path / "c"), "sst2")["counts"]["test"] == 3  # the task folder
    with pytest.raises(FileNotFoundError, match="No SST-2 folder"):
        prepare_glue(str(tmp_path / "c"), str(tmp_path / "d"), "sst2")
    (glue / "QNLI" / "dev.tsv").unlink()
    with pytest.raises(FileNotFoundError, match="No dev.tsv"):
        prepare_glue(str(glue), str(tmp_path / "e"), "qnli")


def glue_datasets(task):
    """A tiny DatasetDict shaped like ``datasets.load_dataset("nyu-mll/glue", task)``."""
    import datasets

    datasets.disable_progress_bars()
    label = datasets.ClassLabel(names=glue_prepare.task_labels(task))
    if task == "sst2":
        columns = {"sentence": datasets.Value("string")}
        train = {"sentence": ["a gorgeous film", "tedious", "warm and funny", "flat", "bold", ""],
                 "label": [1, 0, 1, 0, 1, 1]}
        validation = {"sentence": ["quietly moving", "a chore"], "label": [1, 0]}
    else:
        columns = {"question1": datasets.Value("string"), "question2": datasets.Value("string")}
        train = {"question1": ["How do I learn Go?", "Why is snow white?", "What is $5 in euros?", "Hi?"],
                 "question2": ["What is the best way to learn Go?", "Why is the sky blue?", "5 USD to EUR?", "Hi?"],
                 "label": [1, 0, 1, 1]}
        validation = {"question1": ["Is tea healthy?"], "question2": ["Is green tea good for you?"], "label": [1]}
    features = datasets.Features({**columns, "label": label, "idx": datasets.Value("int32")})
    test = {k: v[:1] for k, v in validation.items()}
    test["label"] = [-1]
    splits = {}
    for name, data in (("train", train), ("validation", validation), ("test", test)):
        data = dict(data, idx=list(range(len(data["label"]))))
        splits[name] = datasets.Dataset.from_dict(data, features=features)
    return datasets.DatasetDict(splits)


def test_glue_datasets_copy(tmp_path, monkeypatch):
    import datasets

    glue_datasets("sst2").save_to_disk(str(tmp_path / "sst2_copy"))
    out = prepare_glue(str(tmp_path / "sst2_copy"), str(tmp_path / "prep"), "sst2", valid_fraction=0.2)
    assert out["counts"] == {"train": 4, "valid": 1, "test": 2}
    where = f"{tmp_path / 'sst2_copy'} [train]"
    assert [(r["file"], r["line"], r["reason"]) for r in out["skipped"]] == [(where, 5, "empty sentence")]
    assert read_csv(out["csv"]["test"])[1][0] == {"ID": "sst2-dev-0", "text": "quietly moving", "text_pair": "",
                                                  "label": "positive", "label_id": "1"}
    # A folder holding one save_to_disk copy per task.
    glue_datasets("qqp").save_to_disk(str(tmp_path / "hf" / "qqp"))
    qqp = prepare_glue(str(tmp_path / "hf"), str(tmp_path / "qqp"), "qqp")
    rows = read_csv(qqp["csv"]["train"])[1] + read_csv(qqp["csv"]["valid"])[1]
    assert {r["ID"]: (r["text_pair"], r["label"]) for r in rows}["qqp-train-2"] == ("5 USD to EUR?", "duplicate")
    with pytest.raises(GlueError, match=r"on_error='skip'"):
        prepare_glue(str(tmp_path / "sst2_copy"), str(tmp_path / "prep"), "sst2", on_error="error")
    # A missing column, label names that are not the task's, a single split.
    with pytest.raises(GlueError, match=r"hf/qqp \[train\]: no column 'sentence' needed for glue/sst2"):
        prepare_glue(str(tmp_path / "hf" / "qqp"), str(tmp_path / "x"), "sst2")
    renamed = glue_datasets("sst2").cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    renamed.save_to_disk(str(tmp_path / "renamed"))
    with pytest.raises(GlueError, match=r"the label names are \['neg', 'pos'\]"):
        prepare_glue(str(tmp_path / "renamed"), str(tmp_path / "x"), "sst2")
    glue_datasets("sst2")["train"].save_to_disk(str(tmp_path / "single"))
    with pytest.raises(GlueError, match="single datasets split"):
        prepare_glue(str(tmp_path / "single"), str(tmp_path / "x"), "sst2")
    # A hub id goes to datasets.load_dataset(id, task).
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or glue_datasets("qqp"))
    hub = prepare_glue("nyu-mll/glue", str(tmp_path / "hub"), "qqp")
    assert calls == [("nyu-mll/glue", "qqp")] and hub["counts"]["test"] == 1


# --------------------------------------------------------------------------
# IMDB
# --------------------------------------------------------------------------

REVIEWS = {
    "train/pos/0_9.txt": "Bromwell High is a cartoon comedy.<br /><br />It ran at the same time as some other "
                         "programs about school life, such as \"Teachers\".",
    "train/pos/10_7.txt": "Homelessness (or Houselessness as George Carlin stated), has been an issue for years.",
    "train/pos/3_10.txt": "This film cost $10 million, and every cent shows.",
    "train/pos/7_3.txt": "Rated like a negative review, but filed as positive.",
    "train/neg/0_3.txt": "Story of a man who has unnatural feelings for a pig.",
    "train/neg/1_1.txt": "Robert DeNiro plays the most unbelievably intelligent illiterate of all time.",
    "train/neg/2_4.txt": "   ",
    "train/neg/review.txt": "not a review file name",
    "train/neg/5_2.txt": "I saw the capsule comment said \"great acting\". In my opinion, these are two great "
                         "actors giving horrible performances.",
    "train/unsup/0_0.txt": "Unlabelled; never read.",
    "train/urls_pos.txt": "http://www.imdb.com/title/tt0453418/usercomments",
    "train/labeledBow.feat": "9 0:9 1:1",
    "test/pos/0_10.txt": "I went and saw this movie last night.<BR /><br/>Great fun.",
    "test/neg/0_2.txt": "Once again Mr. Costner has dragged out a movie for far longer than necessary.",
    "test/neg/1_5.txt": "A five is neither positive nor negative.",
}


@pytest.fixture
def imdb(tmp_path):
    """``aclImdb`` as ``aclImdb_v1.tar.gz`` unpacks (a few reviews per folder)."""
    root = tmp_path / "imdb"
    for name, text in REVIEWS.items():
        path = root / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    (root / "aclImdb" / "imdb.vocab").write_text("the\nand\n")
    return root


def test_imdb_counts_ratings_and_reports(imdb, tmp_path):
    out = prepare_imdb(str(imdb), str(tmp_path / "prep"), valid_fraction=0.2)
    assert out["labels"] == ["negative", "positive"]
    assert out["counts"] == {"train": 5, "valid": 1, "test": 2}
    acl = imdb / "aclImdb"
    assert sorted((Path(r["file"]).relative_to(acl).as_posix(), r["reason"]) for r in out["skipped"]) == [
        ("test/neg/1_5.txt", "rating 5 in neg/ (neg/ holds ratings 1-4)"),
        ("train/neg/2_4.txt", "empty review"),
        ("train/neg/review.txt", "the name is not <id>_<rating>.txt"),
        ("train/pos/7_3.txt", "rating 3 in pos/ (pos/ holds ratings 7-10)"),
    ]
    report = (tmp_path / "prep" / "skipped_test.txt").read_text()
    assert report == f"{acl / 'test/neg/1_5.txt'}\trating 5 in neg/ (neg/ holds ratings 1-4)\n"
    header, test = read_csv(out["csv"]["test"])
    assert header == COLUMNS + ["rating"]
    assert test == [
        {"ID": "imdb-test-neg-0", "text": REVIEWS["test/neg/0_2.txt"], "text_pair": "", "label": "negative",
         "label_id": "0", "rating": "2"},
        {"ID": "imdb-test-pos-0", "text": "I went and saw this movie last night.\nGreat fun.", "text_pair": "",
         "label": "positive", "label_id": "1", "rating": "10"},
    ]
    train = read_csv(out["csv"]["train"])[1] + read_csv(out["csv"]["valid"])[1]
    assert sorted(r["ID"] for r in train) == ["imdb-train-neg-0", "imdb-train-neg-1", "imdb-train-neg-5",
                                              "imdb-train-pos-0", "imdb-train-pos-10", "imdb-train-pos-3"]
    assert all(r["text_pair"] == "" and "<br" not in r["text"].lower() for r in train)
    assert all((r["label"] == "positive") == (int(r["rating"]) >= 7) for r in train)
    # SpeechBrain reads the reviews back intact ($10, commas, quotes, line breaks).
    dataset = imdb_prepare.load_manifest(out["csv"]["train"], output_keys=["id", "text", "label_id"])
    dataset = [x for x in dataset] + [x for x in imdb_prepare.load_manifest(out["csv"]["valid"],
                                                                             output_keys=["id", "text", "label_id"])]
    texts = {x["id"]: x["text"] for x in dataset}
    assert texts["imdb-train-pos-3"] == REVIEWS["train/pos/3_10.txt"]
    assert texts["imdb-train-pos-0"] == REVIEWS["train/pos/0_9.txt"].replace("<br /><br />", "\n")
    # aclImdb itself as data_folder, and idempotency.
    again = prepare_imdb(str(acl), str(tmp_path / "prep2"), valid_fraction=0.2)
    assert again["counts"] == out["counts"]
    assert read_csv(again["csv"]["valid"]) == read_csv(out["csv"]["valid"])
    noop = prepare_imdb(str(acl), str(tmp_path / "prep2"), valid_fraction=0.2)
    assert not noop["prepared"] and noop["skipped"] == again["skipped"]


def test_imdb_on_error_and_missing_corpus(imdb, tmp_path):
    prep = tmp_path / "prep"
    prepare_imdb(str(imdb), str(prep))
    before = {p.name: p.read_bytes() for p in prep.iterdir()}
    with pytest.raises(ImdbError, match=r"aclImdb/train/neg/review\.txt: the name is not <id>_<rating>\.txt"):
        prepare_imdb(str(imdb), str(prep), on_error="error")
    assert {p.name: p.read_bytes() for p in prep.iterdir()} == before
    with pytest.raises(FileNotFoundError, match="No IMDB corpus"):
        prepare_imdb(str(tmp_path), str(tmp_path / "x"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_imdb(str(tmp_path / "nowhere"), str(tmp_path / "x"))


def test_imdb_datasets_copy(tmp_path):
    import datasets

    datasets.disable_progress_bars()
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    splits = {
        "train": {"text": ["Awful.<br /><br />Truly.", "Dull.", "Superb.", "Loved it.", ""],
                  "label": [0, 0, 1, 1, 1]},
        "test": {"text": ["Not for me.", "A gem."], "label": [0, 1]},
        "unsupervised": {"text": ["No label."], "label": [-1]},
    }
    datasets.DatasetDict({name: datasets.Dataset.from_dict(data, features=features)
                          for name, data in splits.items()}).save_to_disk(str(tmp_path / "imdb_copy"))
    out = prepare_imdb(str(tmp_path / "imdb_copy"), str(tmp_path / "prep"), valid_fraction=0.25)
    assert out["counts"] == {"train": 3, "valid": 1, "test": 2}
    assert [(r["file"], r["reason"]) for r in out["skipped"]] == [
        (f"{tmp_path / 'imdb_copy'} [train] row 4", "empty review")]
    assert read_csv(out["csv"]["test"])[1] == [
        {"ID": "imdb-test-0", "text": "Not for me.", "text_pair": "", "label": "negative", "label_id": "0",
         "rating": ""},
        {"ID": "imdb-test-1", "text": "A gem.", "text_pair": "", "label": "positive", "label_id": "1",
         "rating": ""},
    ]
    train = read_csv(out["csv"]["train"])[1] + read_csv(out["csv"]["valid"])[1]
    assert {r["ID"]: r["text"] for r in train}["imdb-train-0"] == "Awful.\nTruly."
    assert not prepare_imdb(str(tmp_path / "imdb_copy"), str(tmp_path / "prep"), valid_fraction=0.25)["prepared"]
