"""Generation evaluation end to end: a tiny LoRA run on QA data, its end-of-training
evaluation, ``tunelab eval RUN_DIR`` and the prompting comparison beside it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sacrebleu

from tunelab.config import load_config
from tunelab.evaluate import compare_prompting, evaluate

CITIES = ("Paris", "London", "Berlin", "Madrid", "Rome", "Vienna")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    """A 2-step LoRA run on QA data, evaluated at the end of training (with an NLI scorer)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from tunelab.train import train

    tmp = tmp_path_factory.mktemp("qa_run")
    nli = BertForSequenceClassification.from_pretrained(tiny_bert_dir)
    nli.config.id2label = {0: "entailment", 1: "neutral", 2: "contradiction"}
    nli.save_pretrained(tmp / "nli")
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(tmp / "nli")
    rows = [
        {
            "context": f"Match {i} was played in {CITIES[i % 6]} on {i + 1} May.",
            "question": f"Where was match {i} played?",
            "answer": CITIES[i % 6],
        }
        for i in range(30)
    ]
    data = tmp / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = load_config(
        {
            "model": {"name_or_path": str(tiny_llama_dir)},
            "data": {
                "path": str(data),
                "format": "qa",
                "max_length": 64,
                "cache_dir": str(tmp / "cache"),
                "split": {"train": 0.7, "validation": 0.1, "test": 0.2},
            },
            "method": {"name": "lora", "lora": {"r": 4}},
            "train": {"max_steps": 2, "batch_size": 4, "report_to": []},
            "eval": {
                "batch_size": 8,
                "shots": 2,
                "generation": {"max_new_tokens": 6},
                "nli_model": str(tmp / "nli"),
            },
            "output": {"dir": str(tmp / "run")},
        }
    )
    result = train(cfg)
    return cfg, result


def test_end_of_training_evaluation_writes_results(qa_run):
    cfg, result = qa_run
    run = cfg.run_dir
    saved = json.loads((run / "eval_results.json").read_text())
    metrics = saved["metrics"]
    assert result.final_metrics == metrics
    preds = _read_jsonl(run / "predictions.jsonl")
    assert len(preds) == saved["num_examples"] == 6
    # aggregates agree with the per-example rows and with sacrebleu on the same pairs
    assert metrics["qa_f1"] == pytest.approx(np.mean([p["qa_f1"] for p in preds]))
    assert metrics["exact_match"] == pytest.approx(np.mean([p["exact_match"] for p in preds]))
    assert metrics["rougeL"] == pytest.approx(np.mean([p["rougeL"] for p in preds]))
    hyps, refs = [p["prediction"] for p in preds], [p["reference"] for p in preds]
    assert metrics["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert metrics["meteor"] == pytest.approx(np.mean([p["meteor"] for p in preds]))
    assert metrics["consistency_nli"] == pytest.approx(
        np.mean([p["consistency_nli"] for p in preds])
    )
    assert 0.0 < metrics["consistency_nli"] < 1.0
    assert metrics["perplexity"] > 1.0 and metrics["language"] == "en"
    assert {"distinct_1", "distinct_2", "self_bleu", "consistency_scored"} <= set(metrics)
    assert all(p["prompt"].endswith("<|im_start|>assistant\n") for p in preds)
    assert metrics["trainable_params"] > 0 and metrics["artifact_size_mb"] > 0


def test_eval_run_directory_reproduces_greedy_results(qa_run):
    cfg, _ = qa_run
    before = json.loads((cfg.run_dir / "eval_results.json").read_text())["metrics"]
    after = evaluate(cfg.run_dir)
    for key in ("perplexity", "bleu", "rougeL", "qa_f1", "exact_match", "meteor"):
        assert after[key] == pytest.approx(before[key], rel=1e-4), key
    assert after["train_wall_time_s"] > 0  # read from train_summary.json


def test_prompting_comparison_beside_fine_tuned(qa_run):
    cfg, _ = qa_run
    record = compare_prompting(cfg)
    settings = [row["setting"] for row in record["rows"]]
    assert settings == ["0-shot prompting", "2-shot prompting", "fine-tuned"]
    assert record["metric"] == "qa_f1"
    zero, two, tuned = record["rows"]
    assert 0.0 <= zero["value"] <= 1.0 and 0.0 <= two["value"] <= 1.0
    assert zero["extra_artifact_mb"] == 0.0 and tuned["extra_artifact_mb"] > 0
    summary = json.loads((cfg.run_dir / "train_summary.json").read_text())
    results = json.loads((cfg.run_dir / "eval_results.json").read_text())
    assert tuned["wall_time_s"] == pytest.approx(
        summary["wall_time_s"] + results["eval_wall_time_s"]
    )
    assert tuned["value"] == results["metrics"]["qa_f1"]
    saved = json.loads((cfg.run_dir / "prompting_comparison.json").read_text())
    assert [r["setting"] for r in saved["rows"]] == settings


def test_base_model_on_chinese_qa_uses_zh_tokenisation(tmp_path, tiny_llama_dir):
    cities = ("北京", "上海", "广州")
    rows = [
        {"context": f"第{i}场比赛在{cities[i % 3]}举行。", "question": f"第{i}场比赛在哪里？",
         "answer": cities[i % 3]}
        for i in range(20)
    ]  # fmt: skip
    data = tmp_path / "zh.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    raw = {
        "model": {"name_or_path": str(tiny_llama_dir)},
        "data": {"path": str(data), "format": "qa", "cache_dir": str(tmp_path / "cache"),
                 "split": {"train": 0.5, "validation": 0.0, "test": 0.5}},
        "eval": {"metrics": ["bleu", "rouge", "exact_match", "qa_f1", "consistency"],
                 "generation": {"max_new_tokens": 4}},
        "output": {"dir": str(tmp_path / "run")},
    }  # fmt: skip
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    out = evaluate(config)
    preds = _read_jsonl(tmp_path / "run" / "eval_base" / "predictions.jsonl")
    assert out["language"] == "zh" and len(preds) == 10
    hyps, refs = [p["prediction"] for p in preds], [p["reference"] for p in preds]
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score)
    assert out["qa_f1"] == pytest.approx(np.mean([p["qa_f1"] for p in preds]))
    assert "perplexity" not in out and "meteor" not in out  # only the listed metrics
