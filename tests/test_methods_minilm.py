"""All seven methods train the quickstart's MiniLM (BERT) for classification: 2 steps each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.inference import load, predict
from tunelab.train import train

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"
METHODS = ["full", "freeze", "bitfit", "adapter", "lora", "prompt_tuning", "prefix_tuning"]


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("minilm_data_cache")


@pytest.mark.integration
@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_minilm_classification(tmp_path, data_cache, method):
    run = tmp_path / "run"
    cfg = load_config(
        QUICKSTART,
        [
            f"method.name={method}",  # drops the file's lora block
            f"output.dir={run}",
            f"data.cache_dir={data_cache}",
            "data.max_samples=100",
            "data.max_length=32",
            "train.max_steps=2",
            "train.batch_size=8",
            "train.report_to=[]",
            "train.early_stopping.metric=eval_loss",
            "train.early_stopping.mode=min",
        ],
    )
    result = train(cfg)
    assert result.stop_reason == "completed" and result.steps == 2
    info = json.loads((run / "model" / "tunelab_method.json").read_text())
    assert info["method"] == method
    results = json.loads((run / "eval_results.json").read_text())
    assert 0.0 <= results["metrics"]["accuracy"] <= 1.0
    [row] = predict(load(run), ["Shares rose after the bank's profit beat forecasts."])
    assert row["label"] in info["label_names"]
