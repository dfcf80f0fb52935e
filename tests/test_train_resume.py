"""Exact resume and determinism on CPU (dropout on, gradient accumulation, epoch boundaries)."""

from __future__ import annotations

import pytest
import torch

from train_helpers import checkpoint_weights, lm_config, metrics, stopped_run, write_text_data
from tunelab.train import train

# 32 train rows / batch 4 = 8 micro-batches = 4 steps per epoch: 10 steps cross 2 epoch ends
TRAIN = {
    "max_steps": 10,
    "epochs": 5,
    "gradient_accumulation_steps": 2,
    "save_every": 2,
    "keep_last": 10,
    "eval_every": 3,
    "warmup_steps": 2,
    "attention_dropout": 0.1,
    "weight_decay": 0.01,
}


def config(tiny_llama_dir, data, out):
    cfg = lm_config(tiny_llama_dir, data, out, TRAIN)
    cfg.method.lora.dropout = 0.2
    cfg.data.split.train, cfg.data.split.validation, cfg.data.split.test = 0.8, 0.2, 0.0
    return cfg


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data = write_text_data(root / "text.jsonl", n=40)
    result = train(config(tiny_llama_dir, data, root / "a"), resume=False)
    return root, data, result


def test_same_seed_same_loss_curve(reference, tiny_llama_dir):
    root, data, first = reference
    second = train(config(tiny_llama_dir, data, root / "b"), resume=False)
    assert first.steps == second.steps == 10
    losses = [r["loss"] for r in metrics(root / "a")]
    assert len(losses) == 10 and losses[-1] < losses[0]
    assert losses == [r["loss"] for r in metrics(root / "b")]
    for key, value in checkpoint_weights(root / "a", 10).items():
        assert torch.equal(value, checkpoint_weights(root / "b", 10)[key])


def test_resume_from_step_k_matches_uninterrupted_run(reference, tiny_llama_dir):
    root, data, full = reference
    # the state of a run stopped right after step 6 (mid-epoch 2): its checkpoint and metrics
    resumed_dir = stopped_run(root / "a", 6, root / "resumed")
    result = train(config(tiny_llama_dir, data, resumed_dir), resume=None)  # auto-resume
    assert result.steps == 10
    ref = {r["step"]: r for r in metrics(root / "a")}
    got = metrics(resumed_dir)
    assert [r["step"] for r in got] == list(range(1, 11))  # lines after step 6 were replaced
    for record in got:
        assert record["loss"] == pytest.approx(ref[record["step"]]["loss"], abs=1e-6)
        assert record["lr"] == pytest.approx(ref[record["step"]]["lr"], rel=1e-12)
    ref_w, got_w = checkpoint_weights(root / "a", 10), checkpoint_weights(resumed_dir, 10)
    assert max((ref_w[k] - got_w[k]).abs().max().item() for k in ref_w) < 1e-6
    assert result.best_step == full.best_step
    assert result.best_metric == pytest.approx(full.best_metric, abs=1e-6)
