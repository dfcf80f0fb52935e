"""``tunelab plan`` and auto on tiny real models: the estimate against the peak RSS of a real
training process, the JSON rows, auto's choice and what it writes, QLoRA, the bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from transformers import AutoTokenizer

from tunelab.allocator import launch_env
from tunelab.cli import main
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.testing import WORDS, save_tiny_model

SHAPE = {  # big enough that weights, gradients and Adam states are a fifth of the peak
    "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
    "num_attention_heads": 8, "num_key_value_heads": 8,
}  # fmt: skip
QLORA_SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_key_value_heads": 4}


@pytest.fixture(scope="module")
def mid_llama(tmp_path_factory, tokenizer_dir) -> Path:
    path = tmp_path_factory.mktemp("mid_llama")
    return save_tiny_model("llama", path, AutoTokenizer.from_pretrained(tokenizer_dir), **SHAPE)


@pytest.fixture(scope="module")
def qlora_llama(tmp_path_factory, tokenizer_dir) -> Path:
    """Linear sizes that are multiples of 64, as NF4 needs."""
    path = tmp_path_factory.mktemp("qlora_llama")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    return save_tiny_model("llama", path, tok, **QLORA_SHAPE)


def raw_config(tmp_path: Path, model_dir: Path, **train: Any) -> dict[str, Any]:
    """Text rows long enough that every batch is padded to data.max_length (64)."""
    rows = [{"text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(120))} for i in range(24)]
    data = tmp_path / "lm.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "format": "text", "max_length": 64,
                 "split": {"train": 1.0, "validation": 0.0, "test": 0.0}},
        "method": {"name": "full"},
        "train": {"max_steps": 3, "batch_size": 4, "report_to": [], "group_by_length": False, **train},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "run")},
    }  # fmt: skip


def run_cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["tunelab", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def measured_peak_mb(config: Path, tmp_path: Path) -> float:
    """ru_maxrss of a fresh ``tunelab train`` process (what /usr/bin/time -v reports), started
    from a small launcher so pytest's own size does not count (Linux keeps it across exec),
    in the environment the ``tunelab`` command restarts itself with (its allocator)."""
    launcher = (
        "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL); _, s, u = os.wait4(p.pid, 0);"
        " print(os.waitstatus_to_exitcode(s), u.ru_maxrss)"
    )
    command = [sys.executable, "-m", "tunelab.cli", "train", str(config), "--no-resume"]
    env = launch_env(os.environ) or dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-c", launcher, *command], capture_output=True, text=True, env=env
    )
    code, kib = done.stdout.split()
    assert code == "0"
    return int(kib) / 1024


def test_estimate_within_20_percent_of_a_real_training_process(tmp_path, mid_llama):
    from tunelab.plan.planner import build_plan

    raw = raw_config(tmp_path, mid_llama)
    cfg = load_config(raw)
    plan = build_plan(cfg, methods=["full"], grid=False)
    row = next(r for r in plan.rows if r.micro_batch == 4)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    measured = measured_peak_mb(config, tmp_path)
    assert abs(row.peak_memory_mb / measured - 1) <= 0.20, (row.peak_memory_mb, measured)
    # the estimate assumed the allocator the training process really ran on
    summary = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert summary["allocator"] == plan.hardware.allocator
    # the parts that do not depend on the estimator: fp32 weights, as many gradients, 2x Adam
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(mid_llama, dtype=torch.float32)
    weights_mb = sum(p.numel() * 4 for p in model.parameters()) / 2**20
    assert row.breakdown_mb["weights"] == pytest.approx(weights_mb, rel=0.01)
    assert row.breakdown_mb["gradients"] == pytest.approx(weights_mb, rel=0.01)
    assert row.breakdown_mb["optimizer"] == pytest.approx(2 * weights_mb, rel=0.01)
    assert row.trainable_params == sum(p.numel() for p in model.parameters())


def test_plan_json_rows(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    config = tmp_path / "plan.yaml"
    raw = raw_config(tmp_path, tiny_llama_dir)
    raw["method"] = {"name": "lora", "lora": {"r": 4}}
    config.write_text(yaml.safe_dump(raw))
    code, out, err = run_cli(
        ["plan", str(config), "--json", "--method", "lora", "--memory-budget", "64GB"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    rows = result["rows"]
    assert {"method", "peak_memory_mb", "step_time_s", "fits"} <= set(rows[0])
    assert {r["method"] for r in rows} == {"lora"}
    assert {r["micro_batch"] for r in rows} == {1, 2, 4}
    assert all(r["micro_batch"] * r["gradient_accumulation_steps"] == 4 for r in rows)
    assert {r["gradient_checkpointing"] for r in rows} == {False, True}
    assert all(r["fits"] for r in rows) and result["budget_mb"] == 64 * 1024
    # PEFT's own count of LoRA r=4 parameters on every linear layer but the head
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    peft = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_llama_dir),
        LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    assert rows[0]["trainable_params"] == peft.get_nb_trainable_parameters()[0]
    for key in ("fp32", True):  # more examples per micro-batch never need less memory
        same = [r for r in rows if r["precision"] == "fp32" and r["gradient_checkpointing"] is key]
        peaks = [r["peak_memory_mb"] for r in sorted(same, key=lambda r: r["micro_batch"])]
        assert peaks == sorted(peaks)
    # the table reads whole in an 80-column terminal (and in a piped output): nothing cut
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = run_cli(
        ["plan", str(config), "--method", "lora", "--memory-budget", "64GB"], monkeypatch, capsys
    )
    assert code == 0, err
    table = out[out.index("method") :].splitlines()
    assert "…" not in out and max(len(line) for line in table[:-1]) <= 80
    first = next(line.split() for line in table if line.startswith("lora"))
    row = rows[0]
    assert first[first.index("x") - 1 : first.index("x") + 2] == [
        str(row["micro_batch"]), "x", str(row["gradient_accumulation_steps"])
    ]  # fmt: skip


def test_impossible_budget_names_the_smallest_config(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    config = tmp_path / "plan.yaml"
    config.write_text(yaml.safe_dump(raw_config(tmp_path, tiny_llama_dir)))
    code, _, err = run_cli(
        ["plan", str(config), "--method", "full", "--memory-budget", "50MB"], monkeypatch, capsys
    )
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert "nothing fits the memory budget of 50 MB" in line
    assert "smallest configuration is full" in line and "micro-batch 1 x 4" in line
    assert "Traceback" not in err


def test_auto_chooses_writes_and_reproduces(tmp_path, tiny_llama_dir):
    from tunelab.train import train

    raw = raw_config(tmp_path, tiny_llama_dir, batch_size="auto", effective_batch_size=4)
    raw["method"] = {"name": "auto"}
    raw["train"].update(memory_budget="64GB", max_steps=2)
    result = train(load_config(raw))
    auto = result.summary["auto"]
    assert auto["method"]["name"] == "lora" and auto["method"]["lora"]["r"] == 8  # 24 examples
    assert auto["batch_size"] == 4 and auto["gradient_accumulation_steps"] == 1
    assert any("effective batch 4" in reason for reason in auto["reasons"])
    written = (tmp_path / "run" / "config.yaml").read_text()
    assert written.startswith("# chosen by auto: method lora")
    again = load_config(yaml.safe_load(written))  # no auto left: trains the same without it
    assert again.method.name == "lora" and again.method.lora.r == 8
    assert again.train.batch_size == 4 and again.train.gradient_accumulation_steps == 1


def test_auto_splits_the_batch_and_turns_on_checkpointing_to_fit(tmp_path, mid_llama):
    from tunelab.plan.auto import choose
    from tunelab.plan.planner import build_plan

    raw = raw_config(tmp_path, mid_llama, batch_size="auto", effective_batch_size=8)
    raw["method"] = {"name": "lora", "lora": {"r": 4}}  # activations dominate the peak
    cfg = load_config(raw)
    plan = build_plan(cfg, methods=["lora"], precisions=["fp32"])
    peak = {(r.gradient_checkpointing, r.micro_batch): r.peak_memory_mb for r in plan.rows}
    assert peak[(False, 8)] > peak[(False, 2)] > peak[(True, 2)]
    plan.budget_mb = (peak[(False, 2)] + peak[(False, 4)]) / 2  # micro-batch 2 fits, 4 does not
    plan.rows = [
        r.__class__(**{**r.as_dict(), "fits": r.peak_memory_mb <= plan.budget_mb})
        for r in plan.rows
    ]
    row = choose(cfg, plan, ["lora"])
    assert (row.micro_batch, row.gradient_accumulation_steps, row.gradient_checkpointing) == (
        2,
        4,
        False,
    )
    plan.budget_mb = (
        (peak[(True, 1)] + peak[(False, 1)]) / 2 if peak[(True, 1)] < peak[(False, 1)] else 0
    )
    plan.rows = [
        r.__class__(**{**r.as_dict(), "fits": r.peak_memory_mb <= plan.budget_mb})
        for r in plan.rows
    ]
    row = choose(cfg, plan, ["lora"])
    assert row is not None and row.gradient_checkpointing  # only checkpointing fits now


def test_auto_with_no_applicable_method_is_one_line(tmp_path, tiny_llama_dir, monkeypatch, capsys):
    config = tmp_path / "auto.yaml"
    raw = raw_config(tmp_path, tiny_llama_dir)
    raw["method"] = {"name": "auto", "auto": {"candidates": ["bitfit"], "allow_quantize": False}}
    config.write_text(yaml.safe_dump(raw))
    code, _, err = run_cli(["train", str(config)], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: method auto:") and "bitfit" in line and "no bias terms" in line


def test_memory_budget_must_be_a_size(tmp_path, tiny_llama_dir):
    raw = raw_config(tmp_path, tiny_llama_dir, memory_budget="lots")
    with pytest.raises(TunelabError, match=r"train\.memory_budget: 'lots' is not a memory size"):
        load_config(raw)


def test_qlora_nf4_trains_and_saves_a_plain_lora_adapter(tmp_path, qlora_llama):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunelab.train import train

    raw = raw_config(tmp_path, qlora_llama, max_steps=3, lr=1e-2)
    raw["method"] = {"name": "lora", "lora": {"r": 4, "quantize": "nf4"}}
    result = train(load_config(raw))
    assert result.stop_reason == "completed" and result.steps == 3
    adapter = tmp_path / "run" / "model"
    base = AutoModelForCausalLM.from_pretrained(qlora_llama, dtype=torch.float32)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    before = base(ids).logits
    tuned = PeftModel.from_pretrained(base, adapter)  # a plain adapter on an fp32 base
    assert any("lora_B" in n and p.abs().sum() > 0 for n, p in tuned.named_parameters())
    assert not torch.allclose(tuned(ids).logits, before)
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 4


def test_probe_times_real_steps_in_a_fresh_process(tmp_path, tiny_llama_dir):
    from tunelab.plan.planner import build_plan

    raw = raw_config(tmp_path, tiny_llama_dir)
    raw["method"] = {"name": "lora", "lora": {"r": 4}}
    plan = build_plan(load_config(raw), probe=True, methods=["lora"], grid=False)
    assert {r.timed_by for r in plan.rows} == {"probe"}
    fit = plan.candidates[0].probe
    assert fit["seq"] == 64 and fit["per_reference"] > 0
    times = [
        r.step_time_s / r.gradient_accumulation_steps
        for r in sorted(plan.rows, key=lambda r: r.micro_batch)
    ]
    assert times == sorted(times)  # a bigger micro-batch never takes less time
    assert plan.probe_measured["lora"] > plan.base_mb * 0.8  # a whole training process's RSS


def test_auto_with_stages_is_refused_in_one_line(tmp_path):
    from tunelab.config import load_config
    from tunelab.errors import ConfigError

    raw = {
        "model": {"name_or_path": str(tmp_path)},
        "data": {"path": str(tmp_path / "d.jsonl"), "format": "classification"},
        "method": {"name": "auto"},
        "stages": [{"name": "a"}, {"name": "b", "train": {"lr": 1e-4}}],
        "output": {"dir": str(tmp_path / "run")},
    }
    with pytest.raises(ConfigError, match=r"auto plan one stage over one dataset"):
        load_config(raw)
