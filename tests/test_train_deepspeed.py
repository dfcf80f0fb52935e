"""DeepSpeed ZeRO-2 and ZeRO-3 with 2 processes on CPU (``accelerate launch --config_file
examples/accelerate/deepspeed-zero{2,3}.yaml``).

tunelab drives the DeepSpeed engine from its own loop: the run must match one process with
the same global batch (losses, grad norms, validation), its checkpoints must hold whole
tensors equal to that run's (weights and Adam moments, not one process's partition), and a
run resumed from a ZeRO checkpoint must continue exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys
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


def raw_config(tiny_llama_dir, data, out, batch_size, **train_extra):
    # DeepSpeed clips: its gradient_clipping is set from train.max_grad_norm
    return sharded_lm_raw(tiny_llama_dir, data, out, batch_size, max_grad_norm=0.5, **train_extra)


# launch config -> (ZeRO stage, what it offloads to CPU memory)
CONFIGS = {"zero2": (2, []), "zero3": (3, []), "zero3-offload": (3, ["optimizer", "param"])}


def launch_zero(name: str, raw: dict, config_path: Path) -> subprocess.CompletedProcess:
    config = REPO / "examples" / "accelerate" / f"deepspeed-{name}.yaml"
    return accelerate_launch(config, raw, config_path)


@pytest.fixture(scope="module")
def one_process(tiny_llama_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("zero")
    data = write_text_data(root / "text.jsonl", n=60)
    train(load_config(raw_config(tiny_llama_dir, data, root / "one", 4)))
    return root, data


@pytest.fixture(scope="module", params=list(CONFIGS))
def zero_run(request, tiny_llama_dir, one_process):
    root, data = one_process
    name = request.param
    out = root / name
    done = launch_zero(name, raw_config(tiny_llama_dir, data, out, 2), root / f"{name}.yaml")
    return name, out, done


def test_zero_matches_one_process(zero_run, one_process):
    name, out, done = zero_run
    root, _ = one_process
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["distributed_type"] == "DEEPSPEED"
    assert (summary["zero_stage"], summary["zero_offload"]) == CONFIGS[name]
    assert summary["steps"] == STEPS
    one = json.loads((root / "one" / "train_summary.json").read_text())
    counts = ("trainable_params", "total_params")  # whole sizes, also of ZeRO-3 placeholders
    assert [summary[k] for k in counts] == [one[k] for k in counts]
    assert done.stdout.count("training summary") == 1  # only the main process prints
    zero_m, one_m = metrics(out), metrics(root / "one")
    assert [r["step"] for r in zero_m] == list(range(1, STEPS + 1))
    assert [r["loss"] for r in zero_m] == pytest.approx([r["loss"] for r in one_m], abs=1e-5)
    assert [r["grad_norm"] for r in zero_m] == pytest.approx(
        [r["grad_norm"] for r in one_m], abs=1e-5
    )
    assert [r["lr"] for r in zero_m] == pytest.approx([r["lr"] for r in one_m], rel=1e-9)
    assert max(r["grad_norm"] for r in zero_m) > 0.5  # clipping was active
    zero_eval, one_eval = metrics(out, "eval"), metrics(root / "one", "eval")
    assert [r["step"] for r in zero_eval] == [2, 4]
    assert [r["eval_loss"] for r in zero_eval] == pytest.approx(
        [r["eval_loss"] for r in one_eval], abs=1e-5
    )


def test_zero_checkpoints_hold_whole_tensors(zero_run, one_process):
    _, out, _ = zero_run
    root, _ = one_process
    for step in (2, 4):
        zero_w, one_w = checkpoint_weights(out, step), checkpoint_weights(root / "one", step)
        assert max_diff(zero_w, one_w) < 1e-5
        opt = "optimizer.safetensors"
        zero_o = load_file(out / "checkpoints" / f"step-{step}" / opt)
        one_o = load_file(root / "one" / "checkpoints" / f"step-{step}" / opt)
        assert max_diff(zero_o, one_o) < 1e-5  # Adam moments and steps, whole and in order
        zero_meta = json.loads(
            (out / "checkpoints" / f"step-{step}" / "optimizer.json").read_text()
        )
        one_meta = json.loads(
            (root / "one" / "checkpoints" / f"step-{step}" / "optimizer.json").read_text()
        )
        assert [g["lr"] for g in zero_meta["param_groups"]] == pytest.approx(
            [g["lr"] for g in one_meta["param_groups"]]
        )
    assert max(v.abs().max().item() for k, v in zero_w.items() if "lora_B" in k) > 1e-3
    adapter = "model/adapter_model.safetensors"
    assert max_diff(load_file(out / adapter), load_file(root / "one" / adapter)) < 1e-5


def test_zero_resume_continues_exactly(zero_run, one_process, tiny_llama_dir):
    name, out, _ = zero_run
    root, data = one_process
    resumed = stopped_run(out, 2, root / f"resumed-{name}")
    done = launch_zero(name, raw_config(tiny_llama_dir, data, resumed, 2), root / f"r-{name}.yaml")
    assert "resuming from" in done.stdout
    assert [r["loss"] for r in metrics(resumed)] == pytest.approx(
        [r["loss"] for r in metrics(out)], abs=1e-6
    )
    assert max_diff(checkpoint_weights(resumed, 4), checkpoint_weights(out, 4)) < 1e-6
    opt = "checkpoints/step-4/optimizer.safetensors"
    assert max_diff(load_file(resumed / opt), load_file(out / opt)) < 1e-6


def test_skip_nonfinite_is_refused_under_deepspeed(tiny_llama_dir, tmp_path, monkeypatch):
    from tunelab.errors import TunelabError

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    data = write_text_data(tmp_path / "text.jsonl", n=16)
    raw = raw_config(tiny_llama_dir, data, tmp_path / "ds", 2, skip_nonfinite=True)
    with pytest.raises(
        TunelabError, match=r"train\.skip_nonfinite is not supported under DeepSpeed"
    ):
        train(load_config(raw))
    assert not (tmp_path / "ds" / "checkpoints").exists()


def test_missing_deepspeed_is_a_clear_error(tiny_llama_dir, tmp_path, monkeypatch):
    from tunelab.errors import TunelabError

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if it were not installed
    data = write_text_data(tmp_path / "text.jsonl", n=16)
    with pytest.raises(TunelabError, match=r"deepspeed is not installed; `pip install deepspeed`"):
        train(load_config(raw_config(tiny_llama_dir, data, tmp_path / "ds", 2)))


def test_zero_stage_0_is_refused_with_a_pointer_to_ddp(tiny_llama_dir, tmp_path, monkeypatch):
    from tunelab.errors import TunelabError

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "0")
    data = write_text_data(tmp_path / "text.jsonl", n=16)
    with pytest.raises(TunelabError, match=r"zero_stage 0 is plain data parallelism.*ddp\.yaml"):
        train(load_config(raw_config(tiny_llama_dir, data, tmp_path / "ds", 2)))
    assert not (tmp_path / "ds" / "checkpoints").exists()
