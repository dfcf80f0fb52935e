"""Two processes (DDP over gloo, launched by torchrun) match one process with the same global batch."""

from __future__ import annotations

import json

import pytest

from train_helpers import checkpoint_weights, launch_train, lm_raw, metrics, write_text_data
from tunelab.config import load_config
from tunelab.train import train

STEPS = 4


def raw_config(tiny_llama_dir, data, out, batch_size):
    train_cfg = {
        "max_steps": STEPS,
        "save_every": STEPS,
        "batch_size": batch_size,
        "gradient_accumulation_steps": 2,
        "lr": 1e-2,
    }
    split = {"split": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    raw = lm_raw(tiny_llama_dir, data, out, train_cfg, data_extra=split)
    raw["method"]["lora"]["dropout"] = 0.0  # per-rank dropout masks would differ from 1 process
    return raw


def test_two_processes_match_one(tiny_llama_dir, tmp_path):
    data = write_text_data(tmp_path / "text.jsonl", n=48)
    ddp_raw = raw_config(tiny_llama_dir, data, tmp_path / "ddp", batch_size=2)
    torchrun = ["torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = launch_train(torchrun, ddp_raw, tmp_path / "ddp.yaml")
    ddp_dir = tmp_path / "ddp"
    summary = json.loads((ddp_dir / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["steps"] == STEPS
    # only the main process logs and writes
    assert done.stdout.count("training summary") == 1
    assert [r["step"] for r in metrics(ddp_dir)] == list(range(1, STEPS + 1))

    single = train(load_config(raw_config(tiny_llama_dir, data, tmp_path / "one", batch_size=4)))
    assert single.summary["world_size"] == 1
    one_losses = [r["loss"] for r in metrics(tmp_path / "one")]
    ddp_losses = [r["loss"] for r in metrics(ddp_dir)]
    assert ddp_losses == pytest.approx(one_losses, abs=1e-5)
    assert [r["loss_items"] for r in metrics(ddp_dir)] == [
        r["loss_items"] for r in metrics(tmp_path / "one")
    ]
    ddp_w, one_w = checkpoint_weights(ddp_dir, STEPS), checkpoint_weights(tmp_path / "one", STEPS)
    assert ddp_w.keys() == one_w.keys()
    assert max((ddp_w[k] - one_w[k]).abs().max().item() for k in ddp_w) < 1e-5
    assert max(v.abs().max().item() for k, v in ddp_w.items() if "lora_B" in k) > 1e-3  # trained
