"""Adjusting while training: out of memory halves the micro-batch (same effective batch, same
loss), instability rolls back and lowers the learning rate."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from train_helpers import checkpoint_weights, lm_config, max_diff, metrics, write_text_data
from tunelab.config import TrainConfig
from tunelab.errors import TunelabError
from tunelab.train import train
from tunelab.train.instability import StabilityGuard
from tunelab.train.oom import OOM_ENV, split_batch

STEPS = 6
SAME_ORDER = {  # no length grouping: batches of 2 are the halves of the batches of 4
    "max_steps": STEPS,
    "group_by_length": False,
    "save_every": STEPS,
    "scheduler": "constant",
}


def no_dropout(cfg):
    cfg.method.settings.dropout = 0.0
    return cfg


def test_oom_halves_micro_batch_and_matches_a_smaller_micro_batch_run(
    tiny_llama_dir, tmp_path, monkeypatch
):
    data = write_text_data(tmp_path / "text.jsonl", n=48)
    small = no_dropout(lm_config(tiny_llama_dir, data, tmp_path / "small",
                                 {**SAME_ORDER, "batch_size": 2, "gradient_accumulation_steps": 2}))  # fmt: skip
    reference = train(small)
    monkeypatch.setenv(OOM_ENV, "2@3")  # from step 3 on, more than 2 rows do not fit
    big = no_dropout(lm_config(tiny_llama_dir, data, tmp_path / "big",
                               {**SAME_ORDER, "batch_size": 4}))  # fmt: skip
    adapted = train(big)

    assert adapted.summary["oom_adjustments"] == [
        {"step": 3, "micro_batch_size": 2, "gradient_accumulation_steps": 2}
    ]
    assert adapted.summary["micro_batch_size"] == 2
    assert adapted.summary["gradient_accumulation_steps"] == 2
    assert reference.summary["oom_adjustments"] == []
    # every step saw the same examples with the same loss: nothing lost, nothing repeated
    ref_rows, run_rows = metrics(small.run_dir), metrics(big.run_dir)
    assert [r["step"] for r in run_rows] == list(range(1, STEPS + 1))
    assert [r["loss_items"] for r in run_rows] == [r["loss_items"] for r in ref_rows]
    for ours, theirs in zip(run_rows, ref_rows, strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], abs=1e-5)
    weights = max_diff(
        checkpoint_weights(big.run_dir, STEPS), checkpoint_weights(small.run_dir, STEPS)
    )
    assert weights < 1e-5
    adjust = metrics(big.run_dir, "adjust")
    assert [(r["step"], r["micro_batch_size"]) for r in adjust] == [(3, 2)]
    state = json.loads((big.run_dir / "checkpoints" / f"step-{STEPS}" / "state.json").read_text())
    assert state["loop"]["micro_split"] == 2  # resume keeps the smaller micro-batch


def test_oom_stop_and_micro_batch_of_one_are_one_line_errors(tiny_llama_dir, tmp_path, monkeypatch):
    data = write_text_data(tmp_path / "text.jsonl", n=24)
    monkeypatch.setenv(OOM_ENV, "2")
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "stop", {"max_steps": 2, "on_oom": "stop"})
    with pytest.raises(
        TunelabError, match=r"out of memory at step 1 \(train.on_oom is stop\).*tunelab plan"
    ):
        train(cfg)
    assert metrics(cfg.run_dir, "error")[0]["error"] == "out_of_memory"

    monkeypatch.setenv(OOM_ENV, "0")  # nothing fits: 4 -> 2 -> 1, then give up
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "none", {"max_steps": 2})
    with pytest.raises(TunelabError, match="a micro-batch of 1 does not fit"):
        train(cfg)
    assert [r["micro_batch_size"] for r in metrics(cfg.run_dir, "adjust")] == [2, 1]


def test_split_batch_keeps_rows_and_trims_padding():
    ids = torch.tensor([[5, 6, 7, 0], [5, 6, 0, 0], [5, 0, 0, 0]])
    batch = {"input_ids": ids, "attention_mask": (ids != 0).long(), "labels": ids.clone()}
    first, second = split_batch(batch, 2)
    assert first["input_ids"].tolist() == [[5, 6, 7], [5, 6, 0]]  # rows 0-1, 3 columns used
    assert second["input_ids"].tolist() == [[5]]
    assert second["labels"].tolist() == [[5]] and second["attention_mask"].tolist() == [[1]]


DIVERGE = {  # SGD at lr 1e30: the first update blows the weights up
    "max_steps": 4,
    "optimizer": "sgd",
    "momentum": 0.0,
    "lr": 1e30,
    "max_grad_norm": None,
    "scheduler": "constant",
    "save_every": 1,
    "keep_last": 5,
}


def test_rollback_restores_weights_and_lowers_lr(tiny_llama_dir, tmp_path):
    data = write_text_data(tmp_path / "text.jsonl", n=40)
    rollback = {"action": "rollback", "lr_factor": 1e-31, "max_rollbacks": 2}
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "rb", {**DIVERGE, "instability": rollback})
    result = train(cfg)
    assert result.steps == 4
    [event] = result.summary["rollbacks"]
    assert event["step"] == 2 and event["restored_step"] == 0
    assert event["reason"].startswith("non-finite loss")
    assert result.summary["lr_scale"] == pytest.approx(1e-31)
    # step 1's update blew LoRA B up; the rollback at step 2 restored the start, where B is 0
    blown, restored = checkpoint_weights(cfg.run_dir, 1), checkpoint_weights(cfg.run_dir, 2)
    b_keys = [k for k in restored if "lora_B" in k]
    assert b_keys and all(blown[k].abs().max() > 1e3 for k in b_keys)
    assert all(torch.count_nonzero(restored[k]) == 0 for k in b_keys)
    rows = metrics(cfg.run_dir)
    assert rows[2]["lr"] == pytest.approx(0.1) and all(math.isfinite(r["loss"]) for r in rows[2:])
    assert metrics(cfg.run_dir, "rollback")[0]["step"] == 2


def test_rollbacks_stop_with_a_diagnosis(tiny_llama_dir, tmp_path):
    data = write_text_data(tmp_path / "text.jsonl", n=40)
    rollback = {"action": "rollback", "lr_factor": 0.5, "max_rollbacks": 1}
    cfg = lm_config(tiny_llama_dir, data, tmp_path / "rb", {**DIVERGE, "instability": rollback})
    with pytest.raises(
        TunelabError, match=r"training is unstable after 1 rollbacks \(step 2: non-finite"
    ):
        train(cfg)
    assert len(metrics(cfg.run_dir, "rollback")) == 1
    assert metrics(cfg.run_dir, "error")[0]["error"] == "unstable"


def test_spikes_against_the_recent_median():
    guard = StabilityGuard(TrainConfig(instability={"action": "rollback", "min_history": 3}))
    assert guard.problem(50.0, 1.0, True) is None  # no history yet
    for loss in [2.0, 2.2, 1.8]:
        guard.losses.append(loss)
        guard.grad_norms.append(1.0)
    assert guard.problem(5.9, 1.0, True) is None  # 5.9 <= 3 x median 2.0
    assert guard.problem(6.1, 1.0, True).startswith("loss spike 6.1 > 3 x median 2")
    assert guard.problem(2.0, 10.5, True).startswith("gradient norm spike")
    assert guard.problem(float("nan"), 1.0, True).startswith("non-finite loss")
    assert guard.problem(2.0, float("inf"), False) == "non-finite gradient norm"


def test_a_copy_is_trusted_only_after_the_next_good_step():
    guard = StabilityGuard(TrainConfig(instability={"action": "rollback", "snapshot_every": 2}))
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    guard.good = guard.take(model, opt, 0)
    values = {}
    for step in (1, 2):
        with torch.no_grad():
            model.weight.add_(1.0)
        values[step] = model.weight.detach().clone()
        guard.accept(1.0, 1.0, step, model, opt)
    assert guard.good.step == 0 and guard.pending.step == 2  # step 2's copy: unconfirmed
    with torch.no_grad():
        model.weight.add_(1.0)
    guard.accept(1.0, 1.0, 3, model, opt)  # step 3 was fine: the copy after step 2 is good
    assert guard.restore(model, opt, sched) == 2
    assert torch.equal(model.weight, values[2])
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_rollback_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"skip_nonfinite and instability\.action rollback"):
        TrainConfig(skip_nonfinite=True, instability={"action": "rollback"})
    with pytest.raises(ValueError, match="lr_factor"):
        TrainConfig(instability={"lr_factor": 2})
