"""The tokenised-data cache: hits on an unchanged run, misses on any changed input."""

from __future__ import annotations

import json

from data_helpers import classification_rows, make_cfg, tokenizer, write_jsonl
from tunelab.data import prepare_data
from tunelab.data.cache import cache_key, tokenizer_fingerprint


def _run(tmp_path, tokenizer_dir, path, **data):
    cfg = make_cfg(tmp_path, tokenizer_dir, path=str(path), format="classification", **data)
    return prepare_data(cfg, tokenizer(tokenizer_dir))


def test_second_run_is_served_from_cache(tmp_path, tokenizer_dir, monkeypatch):
    path = write_jsonl(tmp_path / "d.jsonl", classification_rows(10))
    first = _run(tmp_path, tokenizer_dir, path)
    assert not first.from_cache
    from tunelab.data import pipeline

    def no_build(*args, **kwargs):
        raise AssertionError("the second run must not re-tokenise")

    monkeypatch.setattr(pipeline, "build", no_build)
    second = _run(tmp_path, tokenizer_dir, path)
    assert second.from_cache
    assert second.cache_path == first.cache_path
    assert second.examples == first.examples
    assert second.label_names == first.label_names
    for name, dataset in first.splits.items():
        assert second.splits[name].to_dict() == dataset.to_dict()
    assert second.report["rows"] == first.report["rows"]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["from_cache"] is True


def test_changed_file_config_or_tokenizer_misses(tmp_path, tokenizer_dir, plain_tokenizer_dir):
    path = write_jsonl(tmp_path / "d.jsonl", classification_rows(10))
    first = _run(tmp_path, tokenizer_dir, path)
    write_jsonl(path, classification_rows(10)[:-1])
    changed = _run(tmp_path, tokenizer_dir, path)
    assert not changed.from_cache
    assert sum(changed.report["rows"].values()) == 29
    assert changed.cache_path != first.cache_path
    assert not _run(tmp_path, tokenizer_dir, path, max_length=64).from_cache
    assert _run(tmp_path, tokenizer_dir, path, max_length=64).from_cache
    cfg = make_cfg(tmp_path, plain_tokenizer_dir, path=str(path), format="classification")
    assert not prepare_data(cfg, tokenizer(plain_tokenizer_dir)).from_cache


def test_key_depends_on_chat_template_but_not_cache_dir(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}])
    tok = tokenizer(tokenizer_dir)
    cfg = make_cfg(tmp_path, tokenizer_dir, path=str(path), format="text")
    moved = make_cfg(tmp_path, tokenizer_dir, path=str(path), format="text", cache_dir="/tmp/x")
    sources = {"train": [path]}
    assert cache_key(cfg, sources, tok) == cache_key(moved, sources, tok)
    before = tokenizer_fingerprint(tok)
    original = tok.chat_template
    try:
        tok.chat_template = original + "{# changed #}"
        assert tokenizer_fingerprint(tok) != before
    finally:
        tok.chat_template = original
    assert tokenizer_fingerprint(tok) == before


def test_folder_source_change_is_noticed(tmp_path, tokenizer_dir):
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / label / f"{i}.txt").write_text(f"{label} text {i}")
    split = {"train": 1.0, "validation": 0.0, "test": 0.0}
    assert not _run(tmp_path, tokenizer_dir, tmp_path / "data", split=split).from_cache
    assert _run(tmp_path, tokenizer_dir, tmp_path / "data", split=split).from_cache
    (tmp_path / "data" / "b" / "0.txt").write_text("b text changed")
    rerun = _run(tmp_path, tokenizer_dir, tmp_path / "data", split=split)
    assert not rerun.from_cache
    texts = {row["text"] for row in rerun.examples["train"]}
    assert "b text changed" in texts and "b text 0" not in texts


def test_cache_entry_is_arrow_and_json_only(tmp_path, tokenizer_dir):
    path = write_jsonl(tmp_path / "d.jsonl", classification_rows(10))
    prepared = _run(tmp_path, tokenizer_dir, path)
    entries = list((tmp_path / "cache").iterdir())
    assert entries == [prepared.cache_path]
    suffixes = {p.suffix for p in prepared.cache_path.rglob("*") if p.is_file()}
    assert suffixes == {".json", ".arrow"}
    meta = json.loads((prepared.cache_path / "meta.json").read_text())
    assert meta["split_names"] == ["train", "validation", "test"]


def test_fingerprint_ignores_per_call_truncation_state(tokenizer_dir):
    tok = tokenizer(tokenizer_dir)
    before = tokenizer_fingerprint(tok)
    tok(["the market price today"], truncation=True, max_length=3)
    assert tokenizer_fingerprint(tok) == before


def test_chat_cache_roundtrip_keeps_examples_and_masks(tmp_path, tokenizer_dir):
    messages = [
        {"role": "user", "content": "hello how are you"},
        {"role": "assistant", "content": "fine thanks"},
    ]
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": messages}] * 2)
    split = {"train": 1.0, "validation": 0.0, "test": 0.0}
    cfg = make_cfg(tmp_path, tokenizer_dir, path=str(path), format="chat", split=split)
    first = prepare_data(cfg, tokenizer(tokenizer_dir))
    second = prepare_data(cfg, tokenizer(tokenizer_dir))
    assert (first.from_cache, second.from_cache) == (False, True)
    assert second.examples == first.examples
    assert second.examples["train"][0]["reference"] == "fine thanks"
    assert second.splits["train"]["labels"] == first.splits["train"]["labels"]
    assert second.report["cleaning"]["removed"]["duplicates"]["removed"] == 1
