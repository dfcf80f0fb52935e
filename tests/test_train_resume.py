"""Exact resume and determinism on CPU (dropout on, gradient accumulation, epoch boundaries);
resuming with changed settings (extended, new cadence) or refused (changed steps)."""

from __future__ import annotations

import io
import shutil

import pytest
import torch
from rich.console import Console

from train_helpers import checkpoint_weights, lm_config, metrics, stopped_run, write_text_data
from tunelab.errors import TunelabError
from tunelab.train import train
from tunelab.train.schedule import lr_factor

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


# ----------------------------------------------------------------------------- changed configs

SHORT = {"max_steps": 4, "save_every": 2, "keep_last": 10, "eval_every": 2}


@pytest.fixture(scope="module")
def four_steps(tiny_llama_dir, tmp_path_factory):
    """A finished 4-step run (checkpoints at steps 2 and 4) and its data."""
    root = tmp_path_factory.mktemp("extend")
    data = write_text_data(root / "text.jsonl", n=40)
    train(lm_config(tiny_llama_dir, data, root / "four", SHORT), resume=False)
    return root, data


def resumed(four_steps, tiny_llama_dir, name, unfinished=False, **changes):
    """Resume a copy of the 4-step run with ``changes`` to train.*; (result, console text).

    ``unfinished``: the copy lacks its summary and model, as a run killed after its last
    checkpoint was written (a finished run with the same steps is not trained again).
    """
    root, data = four_steps
    run_dir = root / name
    shutil.copytree(root / "four", run_dir)
    if unfinished:
        (run_dir / "train_summary.json").unlink()
        shutil.rmtree(run_dir / "model")
    out = io.StringIO()
    cfg = lm_config(tiny_llama_dir, data, run_dir, {**SHORT, **changes})
    result = train(cfg, resume=None, console=Console(file=out, width=300))
    return result, out.getvalue()


def test_resume_with_larger_max_steps_extends_the_run(four_steps, tiny_llama_dir):
    root, _ = four_steps
    result, printed = resumed(four_steps, tiny_llama_dir, "six", max_steps=6)
    assert result.steps == 6
    before, after = metrics(root / "four"), metrics(root / "six")
    assert [r["step"] for r in after] == list(range(1, 7))
    assert after[:4] == before  # the steps already taken are kept as they were
    # the remaining steps follow the cosine schedule recomputed for 6 steps
    cfg = lm_config(root / "m", root / "d", root / "six", SHORT)
    for record in after[4:]:
        factor = lr_factor(record["step"] - 1, "cosine", 6, 0, cfg.train.min_lr / cfg.train.lr)
        assert record["lr"] == pytest.approx(cfg.train.lr * factor, rel=1e-9)
    assert "step 4 of 6" in printed
    assert "changed since the checkpoint: train.max_steps 4 -> 6" in printed
    assert "LR schedule (cosine) is recomputed for 6 steps instead of 4" in printed


def test_resume_with_changed_cadence_is_accepted_and_said(four_steps, tiny_llama_dir):
    result, printed = resumed(
        four_steps, tiny_llama_dir, "cadence", unfinished=True, eval_every=3, log_every=2
    )
    assert result.steps == 4
    assert "changed since the checkpoint: train.eval_every 2 -> 3, train.log_every 1 -> 2" in (
        printed
    )
    assert "LR schedule" not in printed  # same total steps: the schedule is unchanged


def test_resume_with_changed_lr_is_refused_naming_the_key(four_steps, tiny_llama_dir):
    with pytest.raises(TunelabError, match=r"\(train\.lr 0\.005 -> 0\.001\)") as err:
        resumed(four_steps, tiny_llama_dir, "lr", lr=1e-3, max_steps=6)
    assert "train.max_steps" not in str(err.value)  # only what changes the steps taken


def test_resume_with_fewer_steps_than_taken_is_refused(four_steps, tiny_llama_dir):
    with pytest.raises(TunelabError, match=r"is at step 4, but .* now give 3 steps"):
        resumed(four_steps, tiny_llama_dir, "three", max_steps=3)
    root, _ = four_steps  # refused before anything is written
    assert "max_steps: 4" in (root / "three" / "config.yaml").read_text()
