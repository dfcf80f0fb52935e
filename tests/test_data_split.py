"""Seeded, stratified splits; given split files; split hygiene; max_samples."""

from __future__ import annotations

from collections import Counter

import pytest

from data_helpers import classification_rows, prepare, write_jsonl
from tunelab.data.splitting import allocate, split_indices, subsample
from tunelab.errors import TunelabError

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def _prepare(tmp_path, tokenizer_dir, rows, **data):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data.setdefault("format", "classification")
    return prepare(tmp_path, tokenizer_dir, path=str(path), **data)


def test_allocate_counts_and_train_keeps_one():
    parts = allocate(list(range(20)), FRACTIONS)
    assert {k: len(v) for k, v in parts.items()} == {"test": 2, "validation": 2, "train": 16}
    assert sorted(i for part in parts.values() for i in part) == list(range(20))
    assert {k: len(v) for k, v in allocate([7], FRACTIONS).items()} == {
        "test": 0,
        "validation": 0,
        "train": 1,
    }
    two = allocate([1, 2], {"train": 0.5, "validation": 0.5, "test": 0.5})
    assert len(two["train"]) == 1


def test_fractions_leave_a_remainder_unused():
    parts = split_indices(100, None, {"train": 0.5, "validation": 0.1, "test": 0.0}, seed=1)
    assert [len(parts[k]) for k in ("train", "validation", "test")] == [50, 10, 0]


def test_same_seed_same_split_other_seed_differs():
    labels = ["a"] * 30 + ["b"] * 30
    first = split_indices(60, labels, FRACTIONS, seed=3)
    assert split_indices(60, labels, FRACTIONS, seed=3) == first
    assert split_indices(60, labels, FRACTIONS, seed=4) != first


def test_stratified_split_keeps_label_proportions(tmp_path, tokenizer_dir):
    rows = classification_rows(40, ("a",)) + classification_rows(20, ("b",))
    rows += classification_rows(10, ("c",))
    prepared = _prepare(tmp_path, tokenizer_dir, rows, split=FRACTIONS)
    assert prepared.report["labels"] == {
        "train": {"a": 32, "b": 16, "c": 8},
        "validation": {"a": 4, "b": 2, "c": 1},
        "test": {"a": 4, "b": 2, "c": 1},
    }
    texts = [{ex["text"] for ex in prepared.examples[s]} for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    again = _prepare(tmp_path, tokenizer_dir, rows, split=FRACTIONS, cache_dir=str(tmp_path / "c2"))
    assert not again.from_cache
    assert again.examples == prepared.examples
    assert prepared.splits["validation"]["labels"] == [
        prepared.label_names.index(ex["label"]) for ex in prepared.examples["validation"]
    ]


def test_unstratified_split_sizes(tmp_path, tokenizer_dir):
    rows = classification_rows(40, ("a",)) + classification_rows(20, ("b",))
    split = {**FRACTIONS, "stratify": False, "seed": 5}
    prepared = _prepare(tmp_path, tokenizer_dir, rows, split=split)
    assert prepared.report["rows"] == {"train": 48, "validation": 6, "test": 6}


def test_zero_fraction_splits_are_absent(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": f"row {i}"} for i in range(10)])
    split = {"train": 0.9, "validation": 0.1, "test": 0.0}
    prepared = prepare(tmp_path, tokenizer_dir, path=str(path), format="text", split=split)
    assert set(prepared.splits) == set(prepared.examples) == {"train", "validation"}
    assert prepared.report["rows"] == {"train": 9, "validation": 1}


def test_given_split_files_are_cleaned_and_deduplicated_against_train(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "train.jsonl", classification_rows(5))
    val_rows = [
        {"text": "fresh validation row", "label": "a"},
        {"text": " example number 0 about a ", "label": "a"},  # same as a train row
        {"text": "", "label": "b"},
    ]
    val = write_jsonl(tmp_path / "val.jsonl", val_rows)
    test_rows = [{"text": "fresh validation row", "label": "a"}, {"text": "new", "label": "c"}]
    test = write_jsonl(tmp_path / "test.jsonl", test_rows)
    prepared = prepare(
        tmp_path, tokenizer_dir, path=str(train), validation_path=str(val),
        test_path=str(test), format="classification", split=FRACTIONS,
    )  # fmt: skip
    assert prepared.report["rows"] == {"train": 15, "validation": 1, "test": 1}
    assert prepared.examples["validation"][0]["text"] == "fresh validation row"
    assert prepared.examples["test"] == [{"text": "new", "text_pair": None, "label": "c"}]
    removed = prepared.report["cleaning"]["removed"]
    assert removed["empty"]["removed"] == 1
    assert removed["cross_split_duplicates"]["removed"] == 2
    assert removed["cross_split_duplicates"]["example"]["where"] == f"{val}:2"


def test_test_file_fully_duplicated_is_an_error_naming_the_step(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "train.jsonl", classification_rows(3))
    test = write_jsonl(tmp_path / "test.jsonl", classification_rows(3)[:2])
    with pytest.raises(TunelabError, match=r"test: no rows left .*'cross_split_duplicates'"):
        prepare(
            tmp_path, tokenizer_dir, path=str(train), test_path=str(test),
            format="classification",
        )  # fmt: skip


def test_label_missing_from_train_is_an_error(tmp_path, tokenizer_dir):
    train = write_jsonl(tmp_path / "train.jsonl", classification_rows(3, ("a", "b")))
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": "new", "label": "zebra"}])
    with pytest.raises(TunelabError) as info:
        prepare(
            tmp_path, tokenizer_dir, path=str(train), validation_path=str(val),
            format="classification",
        )  # fmt: skip
    assert str(info.value) == (
        "validation split has label(s) 'zebra' that the train split does not have "
        "(train labels: 'a', 'b')"
    )


def test_max_samples_is_a_seeded_subsample_before_splitting(tmp_path, tokenizer_dir):
    rows = classification_rows(20)
    chosen = subsample([*range(60)], 10, seed=42)
    assert chosen == sorted(chosen) and len(set(chosen)) == 10
    assert subsample([*range(60)], 10, seed=42) == chosen
    prepared = _prepare(
        tmp_path, tokenizer_dir, rows, max_samples=10,
        split={"train": 0.8, "validation": 0.2, "test": 0.0},
    )  # fmt: skip
    assert sum(prepared.report["rows"].values()) == 10
    used = Counter(ex["label"] for split in prepared.examples.values() for ex in split)
    assert sum(used.values()) == 10
