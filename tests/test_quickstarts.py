"""Short versions of the real-data examples (few steps, small subsets), end to end.

The full runs and their figures are documented in README.md and docs/evaluation.md; these
tests check that each example config works offline: prepare -> train -> evaluate.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.data import prepare_data
from tunelab.train import train

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, tmp_path: Path, *overrides: str) -> dict:
    cfg = load_config(
        EXAMPLES / name,
        [f"output.dir={tmp_path / 'run'}", f"data.cache_dir={tmp_path / 'cache'}", *overrides],
    )
    result = train(cfg)
    assert result.stop_reason == "completed"
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["steps"] == result.steps > 0
    return json.loads((tmp_path / "run" / "eval_results.json").read_text())


@pytest.mark.integration
def test_quickstart_minilm_lora_bbc_news(tmp_path):
    results = _run(
        "quickstart.yaml",
        tmp_path,
        "data.max_samples=240",
        "train.max_steps=6",
        "train.eval_every=3",
        "data.max_length=64",
    )
    metrics = results["metrics"]
    assert set(metrics) >= {"accuracy", "f1_macro", "f1_micro", "auc", "latency_p50_ms"}
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert results["num_examples"] == 25  # 10% of 240 rows, rounded per label (5 labels)


@pytest.mark.integration
def test_smollm2_chat_lora_on_chatterbot(tmp_path, smollm2_cache_dir):
    results = _run(
        "smollm2-chat-lora.yaml",
        tmp_path,
        f"model.cache_dir={smollm2_cache_dir}",
        "data.max_samples=80",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.eval_every=2",
        "data.max_length=96",
        "eval.max_samples=3",
        "eval.generation.max_new_tokens=8",
    )
    metrics = results["metrics"]
    for name in ("rougeL", "bleu", "meteor", "perplexity"):
        assert name in metrics, sorted(metrics)
    assert metrics["perplexity"] > 1.0


@pytest.mark.integration
def test_zh_inews_sentiment_gemma_reads_chinese(tmp_path):
    # Gemma-3-270M (GGUF) as a sequence classifier; dequantised once into TUNELAB_CACHE
    results = _run(
        "zh-inews-sentiment.yaml",
        tmp_path,
        "data.max_samples=20",
        "data.max_length=24",
        "train.max_steps=1",
        "train.batch_size=2",
        "eval.max_samples=4",
    )
    assert set(results["metrics"]) >= {"accuracy", "f1_macro", "per_class"}
    assert results["num_examples"] == 4
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["unk_token"] == "<unk>"
    assert report["unk_rate"]["train"] < 0.01 and report["warnings"] == []


@pytest.mark.integration
def test_zh_inews_on_minilm_reports_its_unknown_tokens(tmp_path):
    # all-MiniLM-L6-v2's English WordPiece vocabulary cannot read most of this Chinese text
    cfg = load_config(
        EXAMPLES / "zh-inews-sentiment-minilm.yaml",
        [
            f"output.dir={tmp_path / 'run'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.max_samples=60",
            "data.validation_path=null",
        ],
    )
    report = prepare_data(cfg).report
    assert report["unk_token"] == "[UNK]"
    assert 0.5 < report["unk_rate"]["train"] < 0.7 and 0.5 < report["unk_rate"]["test"] < 0.7
    assert "the model cannot read this text" in report["warnings"][0]


@pytest.mark.integration
def test_progressive_minilm_head_then_lora_on_bbc_news(tmp_path):
    import yaml

    raw = yaml.safe_load((EXAMPLES / "progressive.yaml").read_text())
    raw["output"]["dir"] = str(tmp_path / "run")
    raw["data"].update(cache_dir=str(tmp_path / "cache"), max_samples=240, max_length=64)
    raw["train"]["eval_every"] = 3
    for stage in raw["stages"]:
        stage["train"]["max_steps"] = 4
    result = train(load_config(raw))
    assert result.stop_reason == "completed" and result.steps == 8
    stages = result.summary["stages"]
    assert [(s["name"], s["method"], s["steps"]) for s in stages] == [
        ("head", "freeze", 4),
        ("lora", "lora", 4),
    ]
    hidden, labels = 384, 5  # MiniLM-L6: the pooler (384x384) and the 5-label head train
    assert stages[0]["trainable_params"] == hidden * hidden + hidden + hidden * labels + labels
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["num_examples"] == 25 and 0.0 <= results["metrics"]["accuracy"] <= 1.0
