"""The evaluation runner, perplexity and validation hook on the tiny models."""

from __future__ import annotations

import json
import math
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch

from train_helpers import write_classification_data
from tunelab.config import load_config
from tunelab.evaluate import evaluate, evaluate_model, validation_metrics
from tunelab.evaluate.perplexity import perplexity
from tunelab.evaluate.rows import tensor_batches
from tunelab.train.collate import PadCollator


def _lm(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def _lm_rows(tok, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        ids = tok(f"the model {i} data train test sport news")["input_ids"]
        labels = [-100] * 3 + ids[3:]  # the first three tokens carry no loss
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def test_perplexity_equals_exp_mean_loss_by_hand(tiny_llama_dir):
    model, tok = _lm(tiny_llama_dir)
    rows = _lm_rows(tok, 6)
    # by hand: HF's loss is the mean NLL over each example's shifted non-ignored labels;
    # weight it by that example's count, then exp(total NLL / total tokens)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            loss = model(
                input_ids=torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])
            ).loss
            n = sum(label != -100 for label in row["labels"][1:])
            total, count = total + float(loss) * n, count + n
    collate = PadCollator(tok.pad_token_id)
    batches = [collate(rows[:4]), collate(rows[4:])]
    out = perplexity(model, batches)
    assert out["loss"] == pytest.approx(total / count, rel=1e-5)
    assert out["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert validation_metrics(model, batches, "causal_lm") == pytest.approx(out)


def test_validation_metrics_classification(tiny_bert_dir):
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    texts = [f"sport news {i} match team" for i in range(10)]
    labels = torch.tensor([i % 3 for i in range(10)])
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    batches = [{**{k: v[s : s + 4] for k, v in enc.items()}, "labels": labels[s : s + 4]}
               for s in range(0, 10, 4)]  # fmt: skip
    out = validation_metrics(model, batches, "classification")
    pred = logits.argmax(-1)
    assert out["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    assert out["accuracy"] == pytest.approx(float((pred == labels).float().mean()))
    assert out["f1_macro"] == pytest.approx(f1_score(labels, pred, average="macro"))


class _LogitsSpy:
    """Weak references to every logits tensor the model returns."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.refs: list[weakref.ref] = []
        model.register_forward_hook(lambda _m, _i, out: self.refs.append(weakref.ref(out.logits)))

    def alive(self) -> int:
        return sum(ref() is not None for ref in self.refs)


def test_split_perplexity_keeps_no_logits(tiny_llama_dir):
    from datasets import Dataset

    model, tok = _lm(tiny_llama_dir)
    row = _lm_rows(tok, 1)
    spy = _LogitsSpy(model)
    hidden: list[weakref.ref] = []  # the decoder's output per batch (the chunked loss's input)
    model.get_decoder().register_forward_hook(
        lambda _m, _i, out: hidden.append(weakref.ref(out.last_hidden_state))
    )
    out = perplexity(model, tensor_batches(Dataset.from_list(row * 1000), 100, tok.pad_token_id))
    assert len(hidden) == 10 and sum(ref() is not None for ref in hidden) == 0  # each freed
    assert spy.refs == []  # the chunked loss never builds the full logits
    # 1000 copies of one row have that row's perplexity
    one = perplexity(model, tensor_batches(Dataset.from_list(row), 1, tok.pad_token_id))
    assert out["perplexity"] == pytest.approx(one["perplexity"], rel=1e-4)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_evaluate_5000_classification_rows_bounded(tmp_path, tiny_bert_dir):
    labels = ("sport", "tech", "film")
    test = [{"text": f"{labels[i % 3]} item {i}", "label": labels[i % 3]} for i in range(5000)]
    raw = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "data": {
            "path": str(write_classification_data(tmp_path / "train.jsonl", 30)),
            "test_path": str(_write_jsonl(tmp_path / "test.jsonl", test)),
            "format": "classification",
            "max_length": 16,
            "cache_dir": str(tmp_path / "cache"),
        },
        "eval": {"batch_size": 250},
        "output": {"dir": str(tmp_path / "run")},
    }
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(raw), encoding="utf-8")
    from tunelab.data import prepare_data
    from tunelab.models import load_model, load_tokenizer

    cfg = load_config(config)
    tok = load_tokenizer(cfg.model)
    prepared = prepare_data(cfg, tok)
    model = load_model(cfg.model, cfg.task, prepared.label_names)
    spy = _LogitsSpy(model)
    out = evaluate_model(cfg, model, tok, prepared, fine_tuned=False)
    assert len(spy.refs) == 20 and spy.alive() == 0  # 20 batches, no logits kept
    preds = _read_jsonl(tmp_path / "run" / "eval_base" / "predictions.jsonl")
    assert len(preds) == 5000
    # the reported metrics agree with the streamed predictions
    correct = np.mean([p["label"] == p["prediction"] for p in preds])
    assert out["accuracy"] == pytest.approx(correct)
    assert np.sum(out["confusion_matrix"]) == 5000
    assert 0.0 <= out["auc"] <= 1.0
    saved = json.loads((tmp_path / "run" / "eval_base" / "eval_results.json").read_text())
    assert saved["num_examples"] == 5000 and saved["metrics"]["accuracy"] == out["accuracy"]
    assert out["artifact_size_mb"] is None and out["model_size_mb"] > 0
    assert out["latency_p95_ms"] >= out["latency_p50_ms"] > 0
    # the config target runs the same evaluation of the base model, limited by max_samples
    # (a seeded sample of the split, not its first rows)
    again = evaluate(config, overrides=["eval.max_samples=300"])
    sampled = _read_jsonl(tmp_path / "run" / "eval_base" / "predictions.jsonl")
    assert len(sampled) == 300
    assert again["accuracy"] == pytest.approx(
        np.mean([p["label"] == p["prediction"] for p in sampled])
    )
    full_run = {(p["text"], p["prediction"]) for p in preds}
    assert {(p["text"], p["prediction"]) for p in sampled} <= full_run
    assert [p["text"] for p in sampled] != [p["text"] for p in preds[:300]]


def test_metric_choice_checked_against_task(tmp_path, tiny_llama_dir):
    from tunelab.errors import TunelabError
    from tunelab.evaluate.runner import check_metrics

    def cfg(fmt: str, metrics: list[str] | None = None):
        raw = {
            "model": {"name_or_path": str(tiny_llama_dir)},
            "data": {"path": "x.jsonl", "format": fmt},
            "eval": {"metrics": metrics},
            "output": {"dir": str(tmp_path)},
        }
        return load_config(raw)

    assert check_metrics(cfg("text")) == {"perplexity", "efficiency"}
    assert {"exact_match", "qa_f1", "bleu", "meteor"} <= check_metrics(cfg("qa"))
    assert "exact_match" not in check_metrics(cfg("instruction"))
    assert check_metrics(cfg("chat", ["bleu", "rouge"])) == {"bleu", "rouge"}
    with pytest.raises(TunelabError, match="accuracy do not apply to causal_lm"):
        check_metrics(cfg("instruction", ["accuracy", "bleu"]))
