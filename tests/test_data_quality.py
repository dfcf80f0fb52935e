"""Data-quality warnings: the unknown-token rate per split, single-row and missing labels.

The conftest tokenizer is byte-level BPE and never emits its unknown token, so these tests
build a word-level tokenizer (the shape of BERT/MiniLM's: whole words or ``[UNK]``).
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from data_helpers import classification_rows, write_jsonl
from tunelab.cli import app
from tunelab.testing import WORDS, save_tiny_model


@pytest.fixture(scope="module")
def word_bert_dir(tmp_path_factory) -> Path:
    """A tiny BERT classifier whose word-level tokenizer knows only conftest's English words."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    path = tmp_path_factory.mktemp("word_bert")
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate([*special, *dict.fromkeys(WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]",
    )  # fmt: skip
    return save_tiny_model(
        "bert", path, fast, num_hidden_layers=1, max_position_embeddings=64, num_labels=2
    )


def _config(tmp_path: Path, model_dir: Path, rows: list[dict], **train) -> Path:
    write_jsonl(tmp_path / "d.jsonl", rows)
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(tmp_path / "d.jsonl"),
            "format": "classification",
            "max_length": 16,
            "cache_dir": str(tmp_path / "cache"),
        },
        "train": {"max_steps": 2, "batch_size": 8, "eval_every": 2, **train},
        "output": {"dir": str(tmp_path / "run")},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _half_unknown_rows(n: int) -> list[dict]:
    """Distinct rows of two known words and two unknown (Chinese) words: 50% [UNK]."""
    pairs = list(combinations(WORDS[:20], 2))[:n]
    labels = ("a", "b", "c")
    return [
        {"text": f"{x} {y} 新闻 体育", "label": labels[i % 3]} for i, (x, y) in enumerate(pairs)
    ]


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "run" / "data_report.json").read_text())


def test_unknown_token_rate_per_split_in_report_prepare_and_inspect(tmp_path, word_bert_dir):
    config = _config(tmp_path, word_bert_dir, _half_unknown_rows(60))
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)
    assert report["unk_token"] == "[UNK]"
    assert report["unk_rate"] == {"train": 0.5, "validation": 0.5, "test": 0.5}
    assert "train: 48 rows" in result.output and "unknown tokens 50.0%" in result.output
    warning = report["warnings"][0]
    assert "unknown token '[UNK]' is 50.0% of train, 50.0% of validation, 50.0% of test" in (
        warning
    )
    assert "warned above 5%" in warning
    assert "warning: the tokenizer's unknown token '[UNK]'" in result.output
    inspected = CliRunner().invoke(app, ["data", "inspect", str(config)])
    assert inspected.exit_code == 0, inspected.output
    assert "unknown tokens" in inspected.output and "50.0%" in inspected.output
    assert "warning: the tokenizer's unknown token" in inspected.output


def test_known_words_have_no_unknown_tokens_and_no_warning(tmp_path, word_bert_dir):
    rows = [{"text": f"{x} {y}", "label": "ab"[i % 2]} for i, (x, y) in
            enumerate(combinations(WORDS[:12], 2))]  # fmt: skip
    config = _config(tmp_path, word_bert_dir, rows)
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    report = _report(tmp_path)
    assert set(report["unk_rate"].values()) == {0.0} and report["warnings"] == []
    assert "warning" not in result.output


def test_byte_level_tokenizer_reports_no_unknown_token(tmp_path, tokenizer_dir):
    # byte-level BPE reads any text: its <unk> never occurs, whatever the script
    rows = [{"text": f"新闻 {i} 体育", "label": "ab"[i % 2]} for i in range(20)]
    config = _config(tmp_path, tokenizer_dir, rows)
    assert CliRunner().invoke(app, ["data", "prepare", str(config)]).exit_code == 0
    report = _report(tmp_path)
    assert report["unk_rate"]["train"] == 0.0 and report["warnings"] == []


def test_single_row_label_missing_from_test_is_warned(tmp_path, tokenizer_dir):
    rows = [*classification_rows(10), {"text": "one lonely example", "label": "rare"}]
    config = _config(tmp_path, tokenizer_dir, rows)
    result = CliRunner().invoke(app, ["data", "prepare", str(config)])
    assert result.exit_code == 0, result.output
    warnings = _report(tmp_path)["warnings"]
    assert warnings[0].startswith("label(s) 'rare' have a single row")
    assert warnings[1].startswith("validation split has no rows of label(s) 'rare' (3 of 4")
    assert warnings[2].startswith("test split has no rows of label(s) 'rare' (3 of 4")
    assert "f1_macro averages only the labels present" in warnings[2]
    assert result.output.count("warning:") == 3


def test_train_warns_at_start_and_eval_reports_per_class_support(tmp_path, word_bert_dir):
    rows = [*_half_unknown_rows(60), {"text": "phone chip 新闻 体育", "label": "rare"}]
    config = _config(tmp_path, word_bert_dir, rows)
    result = CliRunner().invoke(app, ["train", str(config)])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # rich wraps long lines
    first_warning = out.index("warning: the tokenizer's unknown token '[UNK]' is 50.")
    assert first_warning < out.index("warning: label(s) 'rare' have a single row")
    assert out.index("warning: test split has no rows of label(s) 'rare'") < out.index(
        "trainable parameters"
    )
    metrics = json.loads((tmp_path / "run" / "eval_results.json").read_text())["metrics"]
    per_class = metrics["per_class"]
    assert list(per_class) == ["a", "b", "c", "rare"]
    assert [per_class[name]["support"] for name in per_class] == [2, 2, 2, 0]
    assert metrics["f1_macro_labels"] == ["a", "b", "c"]
    f1s = [per_class[name]["f1"] for name in ("a", "b", "c")]
    assert metrics["f1_macro"] == pytest.approx(sum(f1s) / 3)
    assert "per class" in out and "support" in out
