"""Checkpoints: atomic writes, exact optimizer/RNG round trips, pruning, resume decisions."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from train_helpers import lm_config
from tunelab.errors import TunelabError
from tunelab.train import checkpoint as ckpt
from tunelab.train.run import resume_checkpoint


def tiny_setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model[0].weight.requires_grad_(False)  # frozen: not in the checkpoint
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return model, opt


def train_steps(model, opt, n: int) -> None:
    for _ in range(n):
        model(torch.randn(3, 4)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()


def test_roundtrip_restores_weights_optimizer_and_rng(tmp_path):
    model, opt = tiny_setup()
    train_steps(model, opt, 3)
    ckpt.save_checkpoint(tmp_path / "step-3", model, opt, {"step": 3})
    files = sorted(p.name for p in (tmp_path / "step-3").iterdir())
    assert files == [
        "optimizer.json",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
        "trainable.safetensors",
    ]
    expected_draws = (torch.rand(3), random.random(), np.random.rand())
    train_steps(model, opt, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    other, other_opt = tiny_setup()
    torch.manual_seed(123)
    state = ckpt.load_checkpoint(tmp_path / "step-3", other, other_opt)
    assert state["step"] == 3
    draws = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(draws[0], expected_draws[0]) and draws[1:] == expected_draws[1:]
    train_steps(other, other_opt, 2)
    for key, value in other.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)


def test_crash_mid_write_never_becomes_a_checkpoint(tmp_path, monkeypatch):
    model, opt = tiny_setup()
    run = tmp_path / "run"
    ckpt.save_checkpoint(ckpt.checkpoints_dir(run) / "step-2", model, opt, {"step": 2})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", crash)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(ckpt.checkpoints_dir(run) / "step-4", model, opt, {"step": 4})
    monkeypatch.undo()
    assert [p.name for p in ckpt.checkpoints_dir(run).iterdir()] == ["step-2"]
    # a process killed mid-write leaves its temporary directory (and maybe a torn step dir)
    torn = ckpt.checkpoints_dir(run) / ".step-6.abc.tmp"
    torn.mkdir()
    (torn / "trainable.safetensors").write_bytes(b"\0" * 10)
    (ckpt.checkpoints_dir(run) / "step-8").mkdir()  # no state.json: incomplete
    assert ckpt.latest_checkpoint(run).name == "step-2"
    ckpt.remove_partial(run)
    assert not torn.exists()
    assert ckpt.read_state(ckpt.latest_checkpoint(run))["step"] == 2


def test_prune_keeps_last_k_and_best(tmp_path):
    model, opt = tiny_setup()
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(ckpt.checkpoints_dir(tmp_path) / f"step-{step}", model, opt, {})
    ckpt.prune_checkpoints(tmp_path, keep_last=2, keep_steps={2})
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 4, 5]


def test_resume_decisions(tmp_path):
    cfg = lm_config(tmp_path / "m", tmp_path / "d.jsonl", tmp_path / "run", {"lr": 1e-3})
    assert resume_checkpoint(cfg, None) is None
    with pytest.raises(TunelabError, match="no checkpoint"):
        resume_checkpoint(cfg, True)
    model, opt = tiny_setup()
    path = ckpt.checkpoints_dir(cfg.run_dir) / "step-5"
    ckpt.save_checkpoint(path, model, opt, {"config_hash": ckpt.config_hash(cfg)})
    assert resume_checkpoint(cfg, None) == path
    assert resume_checkpoint(cfg, False) is None
    # logging-only changes keep the hash; a different LR does not
    logging = cfg.model_copy(deep=True)
    logging.train.log_every, logging.train.save_every = 5, 7
    assert resume_checkpoint(logging, None) == path
    changed = lm_config(tmp_path / "m", tmp_path / "d.jsonl", tmp_path / "run", {"lr": 2e-3})
    for mode in (None, True):
        with pytest.raises(TunelabError, match="different training config") as err:
            resume_checkpoint(changed, mode)
        assert "\n" not in str(err.value)
    assert json.loads((path / "state.json").read_text())["config_hash"] != ckpt.config_hash(changed)


def test_resume_accepts_length_and_cadence_changes_and_names_the_others(tmp_path):
    cfg = lm_config(tmp_path / "m", tmp_path / "d.jsonl", tmp_path / "run", {"max_steps": 4})
    model, opt = tiny_setup()
    path = ckpt.checkpoints_dir(cfg.run_dir) / "step-4"
    state = {"step": 4, "config_hash": ckpt.config_hash(cfg), "settings": ckpt.run_settings(cfg)}
    ckpt.save_checkpoint(path, model, opt, state)
    later = cfg.model_copy(deep=True)
    later.train.max_steps, later.train.epochs, later.train.eval_every = 8, 5.0, 3
    later.train.early_stopping.patience, later.eval.batch_size = 7, 2
    assert resume_checkpoint(later, None) == path
    changes = ckpt.settings_changes(path, later)
    assert changes["train.max_steps"] == (4, 8) and changes["train.eval_every"] == (None, 3)
    assert set(changes) == {
        "train.max_steps",
        "train.epochs",
        "train.eval_every",
        "train.early_stopping.patience",
        "eval.batch_size",
    }
    other = later.model_copy(deep=True)
    other.train.batch_size, other.method.lora.r, other.train.seed = 8, 16, 3
    with pytest.raises(TunelabError) as err:
        resume_checkpoint(other, None)
    message = str(err.value)
    assert "(method.lora.r 4 -> 16, train.batch_size 4 -> 8, train.seed 42 -> 3)" in message
    assert "train.max_steps" not in message and "\n" not in message
