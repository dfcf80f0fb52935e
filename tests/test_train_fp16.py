"""fp16 with loss scaling on CPU (Accelerate leaves CPU fp16 off; tunelab turns on torch's CPU
autocast and GradScaler the way Accelerate does on GPUs).

A huge initial loss scale makes the first steps overflow: those updates must be skipped and
counted, the scale halved each time, training must go on once the scale fits, and a resumed
run must continue with the same scale and losses.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from train_helpers import checkpoint_weights, lm_config, metrics, stopped_run, write_text_data
from tunelab.train import train

FP16 = {
    "max_steps": 8,
    "precision": "fp16",
    "fp16_initial_scale": 2.0**20,
    "scheduler": "constant",
    "lr": 1e-2,
    "save_every": 1,
    "keep_last": 10,
}


@pytest.fixture(scope="module")
def runs(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fp16")
    data = write_text_data(root / "text.jsonl", n=48)
    fp16 = train(lm_config(tiny_llama_dir, data, root / "fp16", FP16))
    fp32 = train(lm_config(tiny_llama_dir, data, root / "fp32", {**FP16, "precision": "fp32"}))
    return root, data, fp16, fp32


def test_overflow_steps_are_skipped_and_the_scale_halves(runs):
    root, _, fp16, _ = runs
    records = metrics(root / "fp16")
    overflow = [not math.isfinite(r["grad_norm"]) for r in records]
    n_overflow = sum(overflow)
    assert overflow[0] and 8 - n_overflow >= 3  # training went on once the scale fitted
    scales = [r["loss_scale"] for r in records]  # the scale each step used
    assert scales[0] == 2.0**20
    for i in range(7):  # halved after each overflow, kept otherwise
        assert scales[i + 1] == (scales[i] / 2 if overflow[i] else scales[i])
    assert fp16.summary["skipped_steps"] == n_overflow
    assert fp16.summary["precision"] == "fp16"
    # skipped updates leave the weights alone; the others change them
    for step in range(2, 9):
        before, after = (
            checkpoint_weights(root / "fp16", step - 1),
            checkpoint_weights(root / "fp16", step),
        )
        unchanged = all(torch.equal(before[k], after[k]) for k in before)
        assert unchanged == overflow[step - 1], step


def test_fp16_autocast_is_active(runs):
    root, *_ = runs
    first16, first32 = metrics(root / "fp16")[0]["loss"], metrics(root / "fp32")[0]["loss"]
    assert 0 < abs(first16 - first32) < 1e-3  # same batch and weights, fp16 rounding


def test_fp16_resume_restores_the_loss_scale(runs, tiny_llama_dir):
    root, data, _, _ = runs
    records = metrics(root / "fp16")
    stop = next(r["step"] for r in records if math.isfinite(r["grad_norm"]))  # after an update
    resumed = stopped_run(root / "fp16", stop, root / "resumed")
    train(lm_config(tiny_llama_dir, data, resumed, FP16))
    again = metrics(resumed)
    assert [r["loss_scale"] for r in again] == [r["loss_scale"] for r in records]
    assert [r["loss"] for r in again][stop:] == pytest.approx(
        [r["loss"] for r in records][stop:], abs=1e-6
    )
    final, expected = checkpoint_weights(resumed, 8), checkpoint_weights(root / "fp16", 8)
    assert all(torch.allclose(final[k], expected[k], atol=1e-6) for k in final)
    state = json.loads((resumed / "checkpoints" / "step-8" / "state.json").read_text())
    assert state["scaler"]["scale"] == records[-1]["loss_scale"]
