"""FSDP2 with 2 processes on CPU (``accelerate launch --config_file examples/accelerate/fsdp.yaml``).

Parameters and optimizer state are sharded across the processes; checkpoints hold whole
tensors gathered from the shards. The run must match one process with the same global batch,
its checkpoints and artifact must equal that run's, and a resume must re-shard exactly.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from train_helpers import (
    SHARDED_STEPS,
    accelerate_launch,
    checkpoint_weights,
    max_diff,
    metrics,
    sharded_lm_raw,
    stopped_run,
    write_text_data,
)
from tunelab.config import load_config
from tunelab.train import train

STEPS = SHARDED_STEPS
REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "examples" / "accelerate" / "fsdp.yaml"


def raw_config(tiny_llama_dir, data, out, batch_size):
    return sharded_lm_raw(tiny_llama_dir, data, out, batch_size)


def launch_fsdp(raw: dict, config_path: Path) -> subprocess.CompletedProcess:
    return accelerate_launch(FSDP_CONFIG, raw, config_path)


@pytest.fixture(scope="module")
def runs(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    data = write_text_data(root / "text.jsonl", n=60)
    fsdp = launch_fsdp(raw_config(tiny_llama_dir, data, root / "fsdp", 2), root / "fsdp.yaml")
    train(load_config(raw_config(tiny_llama_dir, data, root / "one", 4)))
    return root, data, fsdp


def test_fsdp_shards_and_matches_one_process(runs):
    root, _, done = runs
    summary = json.loads((root / "fsdp" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["fsdp_sharded"] is True
    assert summary["steps"] == STEPS
    assert done.stdout.count("training summary") == 1  # only the main process prints
    fsdp_m, one_m = metrics(root / "fsdp"), metrics(root / "one")
    assert [r["step"] for r in fsdp_m] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in fsdp_m] == pytest.approx([r["loss"] for r in one_m], abs=1e-5)
    assert [r["grad_norm"] for r in fsdp_m] == pytest.approx(
        [r["grad_norm"] for r in one_m], abs=1e-5
    )
    # validation ran on the sharded model (all processes) and agrees with one process
    fsdp_eval, one_eval = metrics(root / "fsdp", "eval"), metrics(root / "one", "eval")
    assert [r["step"] for r in fsdp_eval] == [2, 4]
    assert [r["eval_loss"] for r in fsdp_eval] == pytest.approx(
        [r["eval_loss"] for r in one_eval], abs=1e-5
    )


def test_fsdp_checkpoints_hold_whole_tensors(runs):
    root, _, _ = runs
    for step in (2, 4):
        fsdp_w, one_w = (
            checkpoint_weights(root / "fsdp", step),
            checkpoint_weights(root / "one", step),
        )
        assert max_diff(fsdp_w, one_w) < 1e-5
        name = next(k for k in fsdp_w if "lora_B" in k)
        assert fsdp_w[name].shape == one_w[name].shape  # gathered, not one process's shard
        opt = "optimizer.safetensors"
        fsdp_o = load_file(root / "fsdp" / "checkpoints" / f"step-{step}" / opt)
        one_o = load_file(root / "one" / "checkpoints" / f"step-{step}" / opt)
        assert max_diff(fsdp_o, one_o) < 1e-5
    assert max(v.abs().max().item() for k, v in fsdp_w.items() if "lora_B" in k) > 1e-3
    # the final artifact (gathered into an unsharded copy) equals the one-process artifact
    adapter = "model/adapter_model.safetensors"
    assert max_diff(load_file(root / "fsdp" / adapter), load_file(root / "one" / adapter)) < 1e-5


def test_fsdp_resume_reshards_exactly(runs, tiny_llama_dir):
    root, data, _ = runs
    resumed = stopped_run(root / "fsdp", 2, root / "resumed")
    done = launch_fsdp(raw_config(tiny_llama_dir, data, resumed, 2), root / "resumed.yaml")
    assert "resuming from" in done.stdout
    assert [r["loss"] for r in metrics(resumed)] == pytest.approx(
        [r["loss"] for r in metrics(root / "fsdp")], abs=1e-6
    )
    assert max_diff(checkpoint_weights(resumed, 4), checkpoint_weights(root / "fsdp", 4)) < 1e-6
