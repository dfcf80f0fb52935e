"""Training backends: the registry picks one from the launch environment, and a backend
registered here alone drives a whole run (the loop reaches it only through the interface)."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from train_helpers import lm_config, write_text_data
from tunelab.train import train
from tunelab.train.backends import registry
from tunelab.train.backends.ddp import WORLD_SIZE_VARIABLES
from tunelab.train.backends.single import SingleProcess

# environment variables as `accelerate launch` sets them -> the backend that runs
LAUNCHES = {
    "plain python": ({}, "single"),
    "accelerate launch, 1 process": ({"WORLD_SIZE": "1"}, "single"),
    "ddp.yaml": ({"WORLD_SIZE": "2"}, "ddp"),
    "fsdp.yaml": ({"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"}, "fsdp"),
    "deepspeed-zero2.yaml": ({"WORLD_SIZE": "2", "ACCELERATE_USE_DEEPSPEED": "true"}, "deepspeed"),
    "fsdp.yaml, 1 process": ({"ACCELERATE_USE_FSDP": "true"}, "fsdp"),
    "fsdp off": ({"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "false"}, "ddp"),
}


@pytest.mark.parametrize("launch", list(LAUNCHES))
def test_registry_picks_the_backend_of_the_launch(launch, monkeypatch):
    for variable in (*WORLD_SIZE_VARIABLES, "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(variable, raising=False)
    env, expected = LAUNCHES[launch]
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    assert registry.requested_backend().name == expected


CALLS: Counter[str] = Counter()


class CountingBackend(SingleProcess):
    """One process, counting what the loop asks of it in ``CALLS``."""

    name = "counting"

    def no_sync(self, model):
        CALLS["no_sync"] += 1
        return super().no_sync(model)

    def backward(self, model, loss, last):
        CALLS["backward"] += 1
        CALLS["last"] += last
        super().backward(model, loss, last)

    def step(self, model, optimizer):
        CALLS["step"] += 1
        return super().step(model, optimizer)

    def summary(self, model):
        return {**super().summary(model), "backend": self.name}


def test_a_registered_backend_runs_the_loop(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "BACKENDS", list(registry.BACKENDS))
    CALLS.clear()
    monkeypatch.setenv("TUNELAB_TEST_BACKEND", "counting")
    requested = lambda: os.environ.get("TUNELAB_TEST_BACKEND") == "counting"  # noqa: E731
    registry.register_backend("counting", requested, CountingBackend.launch)
    assert registry.requested_backend().name == "counting"
    data = write_text_data(tmp_path / "text.jsonl", n=24)
    train_cfg = {"max_steps": 3, "batch_size": 2, "gradient_accumulation_steps": 2}
    result = train(lm_config(tiny_llama_dir, data, tmp_path / "run", train_cfg))
    assert result.steps == 3
    assert dict(CALLS) == {"no_sync": 3, "backward": 6, "last": 3, "step": 3}
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["backend"] == "counting" and summary["world_size"] == 1
