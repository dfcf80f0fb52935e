"""A diverging run (SGD at lr 1e30, no clipping): stop with advice, or skip and count."""

from __future__ import annotations

import json

import pytest
import torch

from train_helpers import checkpoint_weights, lm_config, metrics, write_text_data
from tunelab.errors import TunelabError
from tunelab.train import train

DIVERGE = {
    "max_steps": 3,
    "optimizer": "sgd",
    "momentum": 0.0,
    "lr": 1e30,
    "max_grad_norm": None,
    "scheduler": "constant",
    "save_every": 1,
    "keep_last": 5,
}


def test_nonfinite_loss_stops_or_is_skipped(tiny_llama_dir, tmp_path):
    data = write_text_data(tmp_path / "text.jsonl", n=40)
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "stop", DIVERGE)
    with pytest.raises(TunelabError, match=r"non-finite loss nan at step 2: try a lower train\.lr"):
        train(cfg)

    cfg = lm_config(tiny_llama_dir, data, tmp_path / "skip", {**DIVERGE, "skip_nonfinite": True})
    result = train(cfg)
    assert result.steps == 3 and result.summary["skipped_steps"] == 2
    summary = json.loads((cfg.run_dir / "train_summary.json").read_text())
    assert summary["skipped_steps"] == 2
    # skipped updates leave the weights as step 1 made them
    after_1, after_3 = checkpoint_weights(cfg.run_dir, 1), checkpoint_weights(cfg.run_dir, 3)
    assert all(torch.equal(after_1[k], after_3[k]) for k in after_1)
    assert [r["step"] for r in metrics(cfg.run_dir)] == [1, 2, 3]
