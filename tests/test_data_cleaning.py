"""Each cleaning step: what it removes, that it can be switched off, and its report entry."""

from __future__ import annotations

import pytest

from data_helpers import classification_rows, prepare, tokenizer, write_jsonl
from tunelab.data.cleaning import near_duplicate_flags, normalize_text, shingles
from tunelab.errors import TunelabError

ALL_TRAIN = {"train": 1.0, "validation": 0.0, "test": 0.0}


def _prepare(tmp_path, tokenizer_dir, rows, **data):
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    data.setdefault("split", ALL_TRAIN)
    data.setdefault("format", "classification")
    return prepare(tmp_path, tokenizer_dir, path=str(path), **data)


def _removed(prepared) -> dict[str, int]:
    steps = prepared.report["cleaning"]["removed"].items()
    return {name: step["removed"] for name, step in steps if step["removed"]}


def test_normalize_nfkc_and_trim():
    assert normalize_text("  ｆｕｌｌ　width ﬁ\n") == "full width fi"


def test_normalisation_then_exact_dedup(tmp_path, tokenizer_dir):
    rows = [
        {"text": "the team won", "label": "a"},
        {"text": "  ｔｈｅ team won ", "label": "a"},
        {"text": "the team lost", "label": "b"},
    ]
    prepared = _prepare(tmp_path, tokenizer_dir, rows)
    assert [ex["text"] for ex in prepared.examples["train"]] == ["the team won", "the team lost"]
    cleaning = prepared.report["cleaning"]
    assert cleaning["normalized_rows"] == 1
    assert cleaning["removed"]["duplicates"] == {
        "removed": 1,
        "example": {
            "where": f"{tmp_path / 'd.jsonl'}:2",
            "row": {"text": "the team won", "text_pair": None, "label": "a"},
        },
    }


def test_switching_off_normalize_and_dedup_keeps_rows(tmp_path, tokenizer_dir):
    rows = [{"text": "the team won", "label": "a"}] * 2 + [{"text": " ｔｈｅ ", "label": "b"}]
    prepared = _prepare(tmp_path, tokenizer_dir, rows, clean={"normalize": False, "dedup": False})
    assert [ex["text"] for ex in prepared.examples["train"]] == [
        "the team won",
        "the team won",
        " ｔｈｅ ",
    ]
    assert _removed(prepared) == {}
    assert "duplicates" not in prepared.report["cleaning"]["removed"]


def test_empty_and_invalid_rows_dropped_and_counted(tmp_path, tokenizer_dir):
    rows = [
        {"text": "good row", "label": "a"},
        {"text": "   ", "label": "a"},
        {"text": None, "label": "b"},
        {"text": "no label", "label": None},
        {"text": ["a", "list"], "label": "b"},
        {"text": "another", "label": "b"},
    ]
    prepared = _prepare(tmp_path, tokenizer_dir, rows)
    assert prepared.report["rows"] == {"train": 2}
    assert _removed(prepared) == {"invalid": 2, "empty": 2}
    steps = prepared.report["cleaning"]["removed"]
    assert steps["invalid"]["example"]["reason"] == "label is missing"
    assert steps["empty"]["example"]["where"].endswith("d.jsonl:2")


def test_drop_invalid_off_keeps_empty_rows(tmp_path, tokenizer_dir):
    rows = [{"text": "good row", "label": "a"}, {"text": "", "label": "b"}]
    prepared = _prepare(tmp_path, tokenizer_dir, rows, clean={"drop_invalid": False})
    assert prepared.report["rows"] == {"train": 2}


def test_char_and_token_length_filters(tmp_path, tokenizer_dir):
    rows = [
        {"text": "hi", "label": "a"},
        {"text": "the market price today", "label": "a"},
        {"text": " ".join(["market"] * 30), "label": "b"},
    ]
    chars = _prepare(tmp_path, tokenizer_dir, rows, clean={"min_chars": 3, "max_chars": 100})
    assert _removed(chars) == {"min_chars": 1, "max_chars": 1}
    assert [ex["text"] for ex in chars.examples["train"]] == ["the market price today"]
    counts = [len(tokenizer(tokenizer_dir)(r["text"])["input_ids"]) for r in rows]
    assert counts[0] < 3 <= counts[1] <= 12 < counts[2]
    tokens = _prepare(tmp_path, tokenizer_dir, rows, clean={"min_tokens": 3, "max_tokens": 12})
    assert _removed(tokens) == {"min_tokens": 1, "max_tokens": 1}
    assert tokens.report["cleaning"]["removed"]["max_tokens"]["example"]["row"]["label"] == "b"


def test_keep_and_drop_labels(tmp_path, tokenizer_dir):
    rows = classification_rows(2)
    kept = _prepare(tmp_path, tokenizer_dir, rows, clean={"keep_labels": ["a", "c"]})
    assert kept.label_names == ["a", "c"]
    assert _removed(kept) == {"keep_labels": 2}
    dropped = _prepare(tmp_path, tokenizer_dir, rows, clean={"drop_labels": ["a"]})
    assert dropped.label_names == ["b", "c"]
    assert _removed(dropped) == {"drop_labels": 2}


def test_shingles_are_word_5grams():
    assert shingles("A b c d e f") == {b"a b c d e", b"b c d e f"}
    assert shingles("two words") == {b"two words"}


def test_near_duplicate_flags_follow_the_threshold():
    base = " ".join(f"w{i}" for i in range(60))
    near = base.replace("w30", "changed")  # 5 of 56 shingles differ: Jaccard about 0.84
    other = " ".join(f"x{i}" for i in range(60))
    assert near_duplicate_flags([base, near, other], threshold=0.7) == [False, True, False]
    assert near_duplicate_flags([base, near, other], threshold=0.95) == [False, False, False]


def test_near_dedup_step_in_pipeline(tmp_path, tokenizer_dir):
    base = " ".join(["the", "team", "won", "the", "match", "and", "the", "coach"] * 5)
    rows = [
        {"text": base, "label": "a"},
        {"text": base + " today", "label": "a"},
        {"text": "market price of the stock", "label": "b"},
    ]
    off = _prepare(tmp_path, tokenizer_dir, rows)
    assert off.report["rows"] == {"train": 3}
    assert "near_duplicates" not in off.report["cleaning"]["removed"]
    on = _prepare(tmp_path, tokenizer_dir, rows, clean={"near_dedup": True})
    assert on.report["rows"] == {"train": 2}
    assert on.report["cleaning"]["removed"]["near_duplicates"]["example"]["where"].endswith(":2")


def test_empty_after_cleaning_names_the_step(tmp_path, tokenizer_dir):
    rows = [{"text": "short", "label": "a"}, {"text": "tiny", "label": "b"}]
    with pytest.raises(TunelabError) as info:
        _prepare(tmp_path, tokenizer_dir, rows, clean={"min_chars": 50})
    assert "step 'min_chars' removed all 2 remaining rows" in str(info.value)
    assert "d.jsonl" in str(info.value)


def test_all_rows_invalid_names_the_step(tmp_path, tokenizer_dir):
    rows = [{"text": "x", "label": None}]
    with pytest.raises(TunelabError, match=r"step 'invalid' removed all 1 rows"):
        _prepare(tmp_path, tokenizer_dir, rows)


def test_empty_file_is_an_error(tmp_path, tokenizer_dir):
    with pytest.raises(TunelabError, match=r"d\.jsonl: no rows to read"):
        _prepare(tmp_path, tokenizer_dir, [])
