"""The metric registry: a toy metric declared in this file alone is accepted by ``eval.metrics``,
computed batch by batch and written to ``eval_results.json`` and ``predictions.jsonl``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
import yaml

from tunelab.config import load_config
from tunelab.errors import ConfigError, TunelabError
from tunelab.evaluate import evaluate
from tunelab.evaluate.registry import GENERATIVE, METRICS, Metric, ScoringContext, register
from tunelab.metric_catalog import infer_mode


class AnswerWords:
    """Toy metric: the number of words of each generated answer, and their mean."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.total = self.count = 0

    def update(self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]) -> list[dict]:
        rows = [{"answer_words": len(text.split())} for text in outputs]
        self.total += sum(r["answer_words"] for r in rows)
        self.count += len(rows)
        return rows

    def compute(self) -> dict[str, float]:
        return {"answer_words": self.total / max(self.count, 1)}


@pytest.fixture
def toy_metric():
    metric = Metric(
        "answer_words", GENERATIVE, ("answer_words",), "generate", AnswerWords, True, default=False
    )
    yield register(metric)
    METRICS.pop(metric.name)


def _raw(tmp_path, model_dir, metrics: list[str] | None) -> dict[str, Any]:
    words = ("hi", "yes", "no", "team", "news", "match")
    rows = [
        {"instruction": f"say {w} {i}", "input": "", "output": w} for i, w in enumerate(words * 2)
    ]
    data = tmp_path / "instr.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "instruction",
            "max_length": 32,
            "split": {"train": 0.5, "validation": 0.0, "test": 0.5},
        },
        "eval": {"metrics": metrics, "batch_size": 2, "generation": {"max_new_tokens": 3}},
        "output": {"dir": str(tmp_path / "run")},
    }


def test_an_unregistered_metric_is_refused_like_any_unknown_name(tmp_path):
    with pytest.raises(ConfigError, match=r"eval\.metrics\.0: got 'answer_words'; expected one of"):
        load_config(_raw(tmp_path, tmp_path, ["answer_words"]))


def test_a_toy_metric_registered_here_is_computed_in_eval_results(
    toy_metric, tmp_path, tiny_llama_dir
):
    raw = _raw(tmp_path, tiny_llama_dir, ["answer_words", "rouge"])
    assert load_config(raw).eval.metrics == ["answer_words", "rouge"]  # accepted by validation
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    metrics = evaluate(config)
    out = tmp_path / "run" / "eval_base"
    saved = json.loads((out / "eval_results.json").read_text(encoding="utf-8"))["metrics"]
    assert saved == metrics
    assert set(saved) == {"language", "answer_words", "rouge1", "rouge2", "rougeL"}
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["answer_words"] for p in preds] == [len(p["prediction"].split()) for p in preds]
    assert saved["answer_words"] == pytest.approx(
        sum(p["answer_words"] for p in preds) / len(preds)
    )


def test_a_toy_metric_declares_where_it_fits_and_its_direction(toy_metric, tmp_path):
    from tunelab.evaluate.scoring import check_metrics

    defaults = _raw(tmp_path, tmp_path, None)
    assert "answer_words" not in check_metrics(load_config(defaults))  # default=False
    raw = _raw(tmp_path, tmp_path, ["answer_words"])
    raw["data"]["format"] = "text"
    with pytest.raises(
        TunelabError, match=r"answer_words do not apply to causal_lm with data\.format text"
    ):
        check_metrics(load_config(raw))
    assert infer_mode("eval_answer_words") == "max"  # higher_is_better=True
