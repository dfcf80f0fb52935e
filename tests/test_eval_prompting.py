"""Prompting baseline for classification: label choice by log-likelihood, encoder models."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import LABELS, write_classification_data
from tunelab.config import load_config
from tunelab.evaluate import compare_prompting
from tunelab.evaluate.prompting import classification_prompt, label_log_likelihoods


def _cfg(tmp_path, model_dir, **eval_section):
    return load_config(
        {
            "model": {"name_or_path": str(model_dir)},
            "data": {
                "path": str(write_classification_data(tmp_path / "cls.jsonl", 60)),
                "format": "classification",
                "max_length": 64,
                "cache_dir": str(tmp_path / "cache"),
            },
            "eval": {"batch_size": 12, "shots": 2, **eval_section},
            "output": {"dir": str(tmp_path / "run")},
        }
    )


def test_label_log_likelihood_by_hand(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    example = {"text": "sport the team won", "label": "sport"}
    shot = {"text": "tech a new phone chip", "label": "tech"}
    prompt = classification_prompt(example, [shot], LABELS)
    assert prompt.endswith("Text: sport the team won\nLabel:")
    assert "Text: tech a new phone chip\nLabel: tech\n\n" in prompt
    scores = label_log_likelihoods(model, tok, [prompt, prompt], LABELS, 256)
    assert len(tok(prompt)["input_ids"]) < 254  # no truncation
    # by hand: sum over the label's tokens of log p(token | prompt + previous label tokens)
    prompt_ids = tok(prompt)["input_ids"]
    for j, name in enumerate(LABELS):
        label_ids = tok(f" {name}", add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt_ids + label_ids])
        with torch.no_grad():
            logp = model(input_ids=ids).logits.log_softmax(-1)[0]
        expected = sum(float(logp[len(prompt_ids) + t - 1, tid]) for t, tid in enumerate(label_ids))
        assert scores[0, j] == pytest.approx(expected, abs=1e-4)
        assert scores[1, j] == pytest.approx(expected, abs=1e-4)


def test_compare_prompting_classification_with_causal_lm(tmp_path, tiny_llama_dir):
    cfg = _cfg(tmp_path, tiny_llama_dir)
    record = compare_prompting(cfg)
    zero, two, tuned = record["rows"]
    assert (zero["setting"], two["setting"]) == ("0-shot prompting", "2-shot prompting")
    assert record["metric"] == "accuracy"
    for row in (zero, two):
        matrix = row["metrics"]["confusion_matrix"]
        assert sum(map(sum, matrix)) == 6  # 10% of 60 rows in the test split
        assert row["value"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / 6)
        assert row["extra_artifact_mb"] == 0.0 and row["latency_p50_ms"] > 0
    assert "run tunelab eval first" in tuned["note"]  # nothing trained in this run dir
    saved = json.loads((cfg.run_dir / "prompting_comparison.json").read_text())
    assert saved["rows"][0]["value"] == zero["value"]


def test_compare_prompting_encoder_does_not_apply(tmp_path, tiny_bert_dir):
    record = compare_prompting(_cfg(tmp_path, tiny_bert_dir))
    assert "prompting does not apply" in record["note"] and "encoder" in record["note"]
    assert [r["setting"] for r in record["rows"]] == ["fine-tuned"]
