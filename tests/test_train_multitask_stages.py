"""Stages that add and drop tasks: a task's head carries over between stages, a new task's
head starts fresh, and a one-task stage after a multi-task one starts from its task's export."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from multitask_helpers import MOODS, two_task_raw
from tunelab.config import load_config
from tunelab.inference import load, predict
from tunelab.train import train

FROZEN = {"lr": 1e-12, "warmup_steps": 0}  # a stage that moves no weight by more than ~1e-11


def head(folder):
    return load_file(str(folder / "model.safetensors"))["classifier.weight"]


def test_a_stage_adds_a_task_then_another_drops_one(tiny_bert_dir, tmp_path):
    raw = two_task_raw(tiny_bert_dir, tmp_path, {"max_steps": 2})
    topics, moods = raw["data"]["tasks"]
    cache = raw["data"]["cache_dir"]
    raw["stages"] = [
        {"name": "topics", "data": {"tasks": [topics], "cache_dir": cache}},
        {"name": "both", "train": FROZEN, "data": raw["data"]},
        {"name": "moods", "train": FROZEN, "data": {"tasks": [moods], "cache_dir": cache}},
    ]
    run = tmp_path / "run"
    result = train(load_config(raw), resume=False)
    assert result.stop_reason == "completed" and result.steps == 6
    stage1 = head(run / "stages" / "1-topics" / "model")
    stage2 = {
        n: head(run / "stages" / "2-both" / "tasks" / n / "model") for n in ("topics", "moods")
    }
    stage3 = head(run / "stages" / "3-moods" / "model")
    assert (stage2["topics"] - stage1).abs().max() < 1e-6  # topics kept its trained head
    # moods got a fresh head (2 classes, HF's init), and stage 3 started from it
    assert stage2["moods"].shape == (2, stage1.shape[1])
    assert (stage3 - stage2["moods"]).abs().max() < 1e-6
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    both = [r for r in evals if r["type"] == "eval" and r.get("stage") == "both"]
    assert both and "eval_moods_accuracy" in both[-1] and "eval_topics_accuracy" in both[-1]
    loaded = load(run)  # the run's artifact: the last stage's one-task moods classifier
    assert loaded.label_names == sorted(MOODS)
    assert predict(loaded, ["sad words"])[0]["label"] in MOODS
    assert torch.equal(head(run / "model"), stage3)
