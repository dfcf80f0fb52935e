"""LR schedules: warmup, constant/linear/cosine decay and the floor, through a real optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.config import TrainConfig
from tunelab.train.schedule import build_scheduler, lr_factor, warmup_steps_for


def lrs(cfg: TrainConfig, total: int) -> list[float]:
    """The LR each of ``total`` updates runs with."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=cfg.lr)
    sched = build_scheduler(opt, cfg, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_constant_with_warmup_steps():
    cfg = TrainConfig(lr=1.0, scheduler="constant", warmup_steps=4)
    assert lrs(cfg, 8) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_linear_decays_to_min_lr():
    cfg = TrainConfig(lr=1.0, scheduler="linear", warmup_steps=2, min_lr=0.2)
    # after warmup: progress (s - 2) / 4 over steps 2..5, floor 0.2
    expected = [0.5, 1.0, 1.0, 0.8, 0.6, 0.4]
    assert lrs(cfg, 6) == pytest.approx(expected)


def test_cosine_without_warmup():
    cfg = TrainConfig(lr=2.0, scheduler="cosine")
    expected = [2.0 * 0.5 * (1 + math.cos(math.pi * s / 4)) for s in range(4)]
    assert lrs(cfg, 4) == pytest.approx(expected)
    assert expected[2] == pytest.approx(1.0)


def test_cosine_floor_and_warmup_ratio():
    cfg = TrainConfig(lr=1.0, scheduler="cosine", warmup_ratio=0.25, min_lr=0.1)
    assert warmup_steps_for(cfg, 10) == 3  # ceil(2.5)
    values = lrs(cfg, 10)
    assert values[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert values[3] == pytest.approx(1.0)
    assert min(values[3:]) > 0.1
    assert lr_factor(10, "cosine", 10, 3, 0.1) == pytest.approx(0.1)


def test_group_lrs_keep_their_ratio():
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    cfg = TrainConfig(lr=1.0, scheduler="linear")
    opt = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 0.1}])
    sched = build_scheduler(opt, cfg, 4)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75, 0.075])
