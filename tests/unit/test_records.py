import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from medssr_hub.hub import publish
from medssr_hub.records import (
    MCQ_FEATURES,
    RecordFormatError,
    load_records,
    record_from_row,
    records_to_dataset,
    split_of,
    split_options,
)
from medssr_hub.schema import SplitNotFoundError
from medssr_hub.utils import atomic_write_parquet

EXPECTED_SIZES = {
    "bioasq": 782,
    "medbullets": 308,
    "medmcqa": 1200,
    "medqa": 1273,
    "mmlu": 1089,
    "pubmedqa": 500,
}
EXPECTED_LETTERS = {
    "bioasq": "AB",
    "medbullets": "ABCDE",
    "medmcqa": "ABCD",
    "medqa": "ABCD",
    "pubmedqa": "ABC",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SIZES))
def test_shared_benchmarks_load_without_rejections(benchmarks_dir, name):
    records, report = load_records(benchmarks_dir / f"{name}.json")
    assert report.kept == len(records) == EXPECTED_SIZES[name]
    assert not report.rejected
    raw = json.loads((benchmarks_dir / f"{name}.json").read_text())
    for record, row in zip(records, raw, strict=True):
        assert record.id == row["id"]
        assert record.answer == row["gold"]
        assert record.source == name
        # Re-rendering gives back the original question text (up to whitespace): nothing lost or invented.
        assert record.format().split() == row["question"].split()
        if name in EXPECTED_LETTERS:
            assert "".join(record.letters) == EXPECTED_LETTERS[name]


def test_roman_numeral_stems_keep_their_lists(benchmarks_dir):
    records, _ = load_records(benchmarks_dir / "mmlu.json")
    with_list = [r for r in records if "\nI. " in "\n" + r.question]
    assert len(with_list) == 9
    for r in with_list:
        assert r.letters == ["A", "B", "C", "D"]
        assert "II. " in r.question


def test_split_options_continuation_and_absence():
    stem, pairs = split_options("Which?\nA. first line\n   continued\nB. second")
    assert stem == "Which?"
    assert pairs == [("A", "first line continued"), ("B", "second")]
    assert split_options("No options here at all") is None


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bad_rows_are_counted_by_reason_with_first_ids(tmp_path):
    rows = [
        {"id": "ok1", "question": "Stem?\nA. x\nB. y", "gold": "A"},
        {"id": "noopt", "question": "Just a stem without options"},
        {
            "id": "dup",
            "question": "Stem?",
            "options": [{"letter": "A", "text": "x"}, {"letter": "A", "text": "y"}],
        },
        {"id": "dup2", "question": "Stem?\nA. x\nB. y\nB. z", "gold": "A"},
        {"id": "badans", "question": "Stem?\nA. x\nB. y", "gold": "E"},
        {"id": "nostem", "question": "A. x\nB. y", "gold": "A"},
        {"id": "one", "question": "Stem?", "options": {"A": "only"}},
        {"id": "ok1", "question": "Duplicate id?\nA. x\nB. y"},
        "not an object",
        {"id": "noq"},
        {"id": "ok2", "question": "Dict options?", "options": {"a": "x", "b": "y", "c": "z"}, "answer": "c"},
        {
            "id": "ok3",
            "question": "List options?",
            "options": ["x", "y", "z", "w"],
            "answer": "D",
            "extra": 7,
        },
    ]
    records, report = load_records(write_jsonl(tmp_path / "rows.jsonl", rows))
    assert [r.id for r in records] == ["ok1", "ok2", "ok3"]
    assert report.rejected == {
        "no_options": 1,
        "duplicate_letters": 2,
        "answer_not_in_options": 1,
        "empty_stem": 1,
        "too_few_options": 1,
        "duplicate_id": 1,
        "not_an_object": 1,
        "missing_question": 1,
    }
    assert report.examples["duplicate_letters"] == ["dup", "dup2"]
    assert report.examples["not_an_object"] == ["#8"]
    assert records[1].options == {"A": "x", "B": "y", "C": "z"} and records[1].answer == "C"
    assert records[2].answer == "D" and records[2].metadata == {"extra": 7}
    assert "kept 3, rejected 9" in report.summary()


def test_missing_ids_are_content_derived_and_stable(tmp_path):
    rows = [{"question": "Stem?\nA. x\nB. y"}, {"question": "Other?\nA. x\nB. y"}]
    a, _ = load_records(write_jsonl(tmp_path / "a.jsonl", rows))
    b, _ = load_records(write_jsonl(tmp_path / "b.jsonl", list(reversed(rows))))
    assert {r.id for r in a} == {r.id for r in b}
    assert len({r.id for r in a}) == 2


def test_files_that_are_not_what_they_claim(tmp_path):
    (tmp_path / "broken.json").write_text('{"id": 1, "question": ')
    with pytest.raises(RecordFormatError, match="not valid JSON"):
        load_records(tmp_path / "broken.json")
    (tmp_path / "fake.parquet").write_text("id,question\n1,hello\n")
    with pytest.raises(RecordFormatError, match="not a readable parquet"):
        load_records(tmp_path / "fake.parquet")
    (tmp_path / "obj.json").write_text('{"hello": "world"}')
    with pytest.raises(RecordFormatError, match="expected a JSON list"):
        load_records(tmp_path / "obj.json")
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(RecordFormatError, match="unsupported file type"):
        load_records(tmp_path / "data.csv")
    (tmp_path / "lines.jsonl").write_text("this is not json\n")
    with pytest.raises(RecordFormatError, match="not valid JSON lines"):
        load_records(tmp_path / "lines.jsonl")
    write_jsonl(tmp_path / "allbad.jsonl", [{"id": "x", "question": "no options"}])
    with pytest.raises(RecordFormatError, match="no usable question"):
        load_records(tmp_path / "allbad.jsonl")
    with pytest.raises(FileNotFoundError, match="not a dataset repo id"):
        load_records(tmp_path / "missing" / "file.json")


def test_torn_jsonl_line_is_counted_not_fatal(tmp_path):
    good = json.dumps({"id": "a", "question": "Stem?\nA. x\nB. y"})
    (tmp_path / "torn.jsonl").write_text(good + "\n" + '{"id": "b", "quest' + "\n")
    records, report = load_records(tmp_path / "torn.jsonl")
    assert [r.id for r in records] == ["a"]
    assert report.rejected == {"not_an_object": 1}


def test_parquet_round_trip_keeps_schema_and_rows(benchmarks_dir, tmp_path):
    records, _ = load_records(benchmarks_dir / "medbullets.json")
    ds = records_to_dataset(records[:50])
    assert ds.features == MCQ_FEATURES
    ds.to_parquet(tmp_path / "q.parquet")
    assert pq.read_table(tmp_path / "q.parquet").num_rows == 50
    again, report = load_records(tmp_path / "q.parquet")
    assert again == records[:50]
    assert [record_from_row(row) for row in ds] == records[:50]
    # A folder of shards loads as one dataset.
    ds.select(range(20)).to_parquet(tmp_path / "shards" / "part-0.parquet")
    ds.select(range(20, 50)).to_parquet(tmp_path / "shards" / "part-1.parquet")
    folder, _ = load_records(tmp_path / "shards")
    assert folder == records[:50]


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("data/train-00000.parquet", "train"),
        ("data/discarded-00000-of-00002.parquet", "discarded"),
        ("test.jsonl", "test"),
        ("validation.parquet", "validation"),
        ("medqa.json", "train"),
        ("my-notes.jsonl", "train"),
    ],
)
def test_split_of_follows_hub_file_naming(name, split):
    assert split_of(Path(name)) == split


def test_folder_split_selects_its_files(tmp_path):
    def write(name, question):
        row = {"id": name, "question": f"{question}\nA. yes\nB. no", "answer": "A"}
        (tmp_path / name).write_text(json.dumps(row) + "\n")

    write("train.jsonl", "Is this a training question?")
    write("test.jsonl", "Is this a test question?")
    test, _ = load_records(tmp_path, split="test")
    train, _ = load_records(tmp_path, split="train")
    assert [r.id for r in test] == ["test.jsonl"] and [r.id for r in train] == ["train.jsonl"]
    # No split asked for: test first, as the Hub's readers do.
    assert [r.id for r in load_records(tmp_path)[0]] == ["test.jsonl"]
    # A split no file is named after fails loudly, naming the splits there are.
    with pytest.raises(SplitNotFoundError, match=r"no split 'validation'; it has \['test', 'train'\]"):
        load_records(tmp_path, split="validation")


def test_missing_split_fails_loudly_for_stage_folders_and_hub_repos(tmp_path):
    """A labeled folder whose `train` is empty (nothing in the agreement band) never feeds its discarded
    rows to stage 1: the folder a stage wrote, its inner dataset/ and the published repo all refuse."""
    row = {
        "id": "d1",
        "question": "Q?",
        "options": [{"letter": "A", "text": "x"}, {"letter": "B", "text": "y"}],
    }
    atomic_write_parquet(tmp_path / "labels" / "dataset" / "data" / "discarded-00000.parquet", [row])
    for source in (tmp_path / "labels", tmp_path / "labels" / "dataset"):
        with pytest.raises(SplitNotFoundError, match=r"no split 'train'; it has \['discarded'\]"):
            load_records(source, split="train")
        assert [r.id for r in load_records(source)[0]] == ["d1"]  # the only split, when none is named
    hub = tmp_path / "hub"
    publish(tmp_path / "labels" / "dataset", "medssr/labeled", "v1.0.0", hub=str(hub))
    with pytest.raises(SplitNotFoundError, match=r"medssr/labeled@v1.0.0 has no split 'train'"):
        load_records("medssr/labeled", revision="v1.0.0", split="train", hub=str(hub))


def test_a_50_mb_question_is_a_counted_rejection_not_a_tokenizer_run(tmp_path, monkeypatch):
    """Issue 21's probe: a 50 MB question line was read and tokenized (30 GB asked). Now a question longer
    than MEDSSR_MAX_QUESTION_CHARS (default 100,000) is rejected as `too_long` before any parsing of it."""
    import time

    from medssr_hub.errors import InputError

    ok = {"id": "ok", "question": "Which?\nA. one\nB. two", "answer": "A"}
    huge = {"id": "huge", "question": "x" * 50_000_000 + "\nA. one\nB. two", "answer": "A"}
    wide = {"id": "wide", "question": "Which?", "options": {"A": "y" * 200_000, "B": "z"}, "answer": "A"}
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (ok, huge, wide)))
    start = time.monotonic()
    records, report = load_records(path)
    assert time.monotonic() - start < 20
    assert [r.id for r in records] == ["ok"] and report.rejected == {"too_long": 2}
    assert report.examples["too_long"] == ["huge", "wide"]
    monkeypatch.setenv("MEDSSR_MAX_QUESTION_CHARS", "10")  # configurable: now every question is too long
    with pytest.raises(RecordFormatError, match=r"all 3 rejected: too_long 3 \(first: ok, huge, wide\)"):
        load_records(path)
    monkeypatch.setenv("MEDSSR_MAX_QUESTION_CHARS", "lots")
    with pytest.raises(InputError, match="MEDSSR_MAX_QUESTION_CHARS must be a positive number"):
        load_records(path)
