"""``tunelab doctor``: real tiny runs that show a pathology are named, with evidence and a fix;
a healthy run gets no finding."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import tunelab
from train_helpers import LABELS, lm_raw, write_text_data
from tunelab.cli import app
from tunelab.config import load_config
from tunelab.doctor import Finding, RunRecord, diagnose, load_run, register
from tunelab.doctor.registry import CHECKS
from tunelab.errors import TunelabError
from tunelab.testing import corpus_lines
from tunelab.train import train
from tunelab.train.oom import OOM_ENV
from tunelab.train.precision import recommend

SPLIT = {"split": {"train": 0.8, "validation": 0.2, "test": 0.0}}


def run_lm(model_dir, data, out, train_cfg, method=None, **data_extra):
    raw = lm_raw(model_dir, data, out, train_cfg, data_extra={**SPLIT, **data_extra})
    raw["method"] = method or {"name": "full"}
    cfg = load_config(raw)
    with contextlib.suppress(TunelabError):  # a crashed run is a run the doctor reads too
        train(cfg)
    return cfg.run_dir


def codes(run_dir) -> set[str]:
    return {f.code for f in diagnose(run_dir)}


def by_code(run_dir, code: str) -> Finding:
    return next(f for f in diagnose(run_dir) if f.code == code)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("doctor-data")
    return {
        "many": write_text_data(root / "many.jsonl", n=120),
        "mid": write_text_data(root / "mid.jsonl", n=80),
        "few": write_text_data(root / "few.jsonl", n=16),
    }


def test_healthy_run_gets_no_finding(tiny_llama_dir, data, tmp_path):
    precision = recommend("cpu").precision  # the right precision for this machine
    run = run_lm(tiny_llama_dir, data["mid"], tmp_path / "ok",
                 {"epochs": 1, "lr": 1e-2, "warmup_ratio": 0.2, "eval_every": 6, "precision": precision})  # fmt: skip
    assert diagnose(run) == []
    result = CliRunner().invoke(app, ["doctor", str(run)])
    assert result.exit_code == 0 and "no problems found" in result.output


def test_too_high_lr_without_warmup_and_padding(tiny_llama_dir, data, tmp_path):
    cfg = {"max_steps": 8, "lr": 1.0, "group_by_length": False}
    run = run_lm(tiny_llama_dir, data["many"], tmp_path / "hot", cfg)
    found = codes(run)
    assert {"lr_too_high", "warmup_missing", "padding"} <= found
    high = by_code(run, "lr_too_high")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["type"] == "train"]
    first = sorted(losses[:3])[1]
    peak = max(sorted(losses[i - 1 : i + 2])[1] for i in range(1, len(losses) - 1))
    assert peak > 1.2 * first  # the curve itself shows it, lasting more than one step
    assert f"{peak:.4g}" in high.evidence and "train.lr: 0.0001 (typical for full" in high.fix
    assert "train.packing: true" in by_code(run, "padding").fix
    # the same LR with a warmup: the doctor does not blame the warmup
    warm = run_lm(tiny_llama_dir, data["many"], tmp_path / "warm",
                  {**cfg, "warmup_ratio": 0.5, "group_by_length": True})  # fmt: skip
    assert "warmup_missing" not in codes(warm) and "padding" not in codes(warm)


def test_tiny_data_and_many_epochs_overfit(tiny_llama_dir, data, tmp_path):
    run = run_lm(tiny_llama_dir, data["few"], tmp_path / "overfit",
                 {"epochs": 12, "lr": 3e-2, "batch_size": 4, "eval_every": 2, "warmup_ratio": 0.1})  # fmt: skip
    found = codes(run)
    assert {"overfitting", "tiny_dataset"} <= found
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["eval_loss"] for r in evals if r["type"] == "eval"]
    assert losses[-1] > min(losses) * 1.05  # validation really turned up
    assert "train.epochs:" in by_code(run, "overfitting").fix


def test_lr_too_low_for_lora(tiny_llama_dir, data, tmp_path):
    run = run_lm(tiny_llama_dir, data["many"], tmp_path / "cold", {"max_steps": 10, "lr": 1e-6},
                 method={"name": "lora", "lora": {"r": 4}})  # fmt: skip
    low = by_code(run, "lr_too_low")
    assert "train.lr: 0.0001" in low.fix and "lora" in low.title


def test_truncation_label_imbalance_and_duplicates(tiny_bert_dir, tmp_path):
    path = tmp_path / "cls.jsonl"
    with path.open("w") as fh:
        for i, line in enumerate(corpus_lines(60, 3)):
            label = LABELS[0] if i % 10 else LABELS[1]  # 54 : 6
            row = json.dumps({"text": f"{line} {line}", "label": label}) + "\n"
            fh.write(row * 2)  # every row twice: half the file is duplicates
    raw = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "data": {
            "path": str(path),
            "format": "classification",
            "max_length": 8,
            "cache_dir": str(tmp_path / "cache"),
        },
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"max_steps": 2, "report_to": [], "batch_size": 8},
        "eval": {"at_end": False},
        "output": {"dir": str(tmp_path / "cls")},
    }
    train(load_config(raw))
    truncation = by_code(tmp_path / "cls", "truncation")
    report = json.loads((tmp_path / "cls" / "data_report.json").read_text())
    assert f"{report['truncated']['train']} of {report['rows']['train']}" in truncation.evidence
    assert "data.max_length:" in truncation.fix
    imbalance = by_code(tmp_path / "cls", "label_imbalance")
    counts = report["labels"]["train"]
    assert f"{max(counts.values())} rows" in imbalance.evidence
    removed = report["cleaning"]["removed"]["duplicates"]["removed"]
    assert removed >= 60 and f"{removed} of " in by_code(tmp_path / "cls", "duplicates").evidence
    result = CliRunner().invoke(app, ["doctor", str(tmp_path / "cls"), "--json"])
    listed = json.loads(result.output)
    assert {"truncation", "label_imbalance", "duplicates"} <= {f["code"] for f in listed}
    assert all(set(f) == {"code", "title", "evidence", "fix", "severity", "steps"} for f in listed)


def test_out_of_memory_crash_and_adjustment(tiny_llama_dir, data, tmp_path, monkeypatch):
    monkeypatch.setenv(OOM_ENV, "2")
    crashed = run_lm(
        tiny_llama_dir, data["few"], tmp_path / "oom", {"max_steps": 1, "on_oom": "stop"}
    )
    oom = by_code(crashed, "out_of_memory")
    assert oom.severity == "error" and oom.steps == (1,)
    assert "tunelab plan CONFIG" in oom.fix and "train.batch_size: 2" in oom.fix
    adjusted = run_lm(tiny_llama_dir, data["few"], tmp_path / "adjusted", {"max_steps": 2})
    assert (
        "train.batch_size: 2 and train.gradient_accumulation_steps: 2"
        in by_code(adjusted, "oom_adjusted").fix
    )


def test_train_prints_the_findings(tiny_llama_dir, data, tmp_path):
    raw = lm_raw(tiny_llama_dir, data["few"], tmp_path / "cli", {"max_steps": 3, "optimizer": "sgd",
                 "momentum": 0.0, "lr": 1e30, "max_grad_norm": None, "skip_nonfinite": True})  # fmt: skip
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train", str(path)])
    assert result.exit_code == 0, result.output
    assert "doctor" in result.output and "non-finite training steps" in result.output
    nonfinite = by_code(tmp_path / "cli", "nonfinite")
    assert nonfinite.steps == (2, 3)


def record(train_rows=(), summary=None, config=None) -> RunRecord:
    rows = [{"type": "train", "step": i + 1, **r} for i, r in enumerate(train_rows)]
    return RunRecord(Path("x"), config or {"train": {}}, summary, None, rows, [], [])


def test_checks_that_need_a_gpu_or_fp16_on_records():
    # memory: a GPU run at 95% of its device
    near = record(summary={"peak_memory_mb": 76000, "memory_limit_mb": 80000})
    [finding] = [f for f in diagnose(near) if f.code == "memory_near_limit"]
    assert "95%" in finding.evidence and "gradient_checkpointing" in finding.fix
    # fp16: the loss scale halves 5 times after step 20 (5 skipped updates)
    scales = [65536.0] * 22 + [32768.0] * 2 + [16384.0] * 2 + [8192.0] * 2 + [4096.0, 2048.0]
    rows = [{"loss": 2.0, "grad_norm": 1.0, "loss_scale": s} for s in scales]
    fp16 = record(rows, {"bf16_available": True}, {"train": {"precision": "fp16"}})
    [finding] = [f for f in diagnose(fp16) if f.code == "fp16_skipped_steps"]
    assert finding.steps == (22, 24, 26, 28, 29) and "train.precision: bf16" in finding.fix
    # a loss spike and a gradient-norm explosion, among rows with extra fields (e.g. a stage)
    rows = [{"loss": 2.0, "grad_norm": 1.0, "stage": "sft"} for _ in range(8)]
    rows[6] = {"loss": 9.0, "grad_norm": 500.0, "stage": "sft"}
    found = {f.code: f for f in diagnose(record(rows))}
    assert found["loss_spikes"].steps == (7,) and found["grad_explosions"].steps == (7,)
    assert "median 2" in found["loss_spikes"].evidence
    # near convergence, one hard small batch below the starting loss is noise, not a spike;
    # the same jump that lasts (the model got worse) is one
    falling = [1.6, 1.6, 1.5, 1.2, 0.8] + [0.3, 0.2] * 5
    noisy = falling + [1.45] + [0.3, 0.2] * 3
    lasting = falling + [1.45, 1.5, 1.4, 1.45, 1.5] + [0.3, 0.2] * 3
    codes = {
        name: {f.code: f for f in diagnose(record([{"loss": v, "grad_norm": 1.0} for v in losses]))}
        for name, losses in (("noisy", noisy), ("lasting", lasting))
    }
    assert "loss_spikes" not in codes["noisy"]
    assert codes["lasting"]["loss_spikes"].steps[0] == len(falling) + 1
    # metrics but no summary and no recorded error: killed or crashed
    killed = record([{"loss": 2.0, "grad_norm": 1.0}] * 3)
    assert [f.code for f in diagnose(killed)] == ["unfinished"]
    assert "ends at step 3" in diagnose(killed)[0].evidence


def test_truncation_counts_the_rows_dropped_for_a_cut_response():
    # 30 kept rows (1 of them cut) and 70 dropped: their whole response was cut off
    report = {
        "rows": {"train": 30},
        "truncated": {"train": 71},
        "no_loss_dropped": {"train": 70},
        "max_length": 256,
        "token_lengths": {"train": {"p50": 54, "p90": 202, "p99": 254, "max": 265}},
    }
    config = {"train": {}, "data": {"truncation_side": "right"}}
    run = RunRecord(Path("x"), config, None, report, [{"type": "train", "step": 1, "loss": 2.0}])
    [finding] = [f for f in diagnose(run) if f.code == "truncation"]
    assert finding.evidence.startswith("71 of 100 train rows (71%)")
    assert "70 of them lost their whole response" in finding.evidence
    # the kept rows' p99 (254) is no advice when the limit is 256 and long rows were dropped
    assert "a data.max_length above 256" in finding.fix
    assert "data.truncation_side: left" in finding.fix


def test_registry_takes_a_new_check():
    def always(run):
        yield Finding("custom", "custom", "evidence", "fix", "info")

    register(always, "custom_check")
    try:
        assert [f.code for f in tunelab.diagnose(record())] == ["custom"]
    finally:
        del CHECKS["custom_check"]


def test_not_a_run_is_one_line(tmp_path):
    with pytest.raises(TunelabError, match="is not a tunelab run"):
        load_run(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "doctor", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "is not a tunelab run" in done.stderr and "Traceback" not in done.stderr


def test_a_staged_run_is_judged_stage_by_stage(tiny_llama_dir, data, tmp_path):
    """Each stage against its own method and learning rate: a too-hot first stage is named
    with its own LR, not the top-level config's, and the calm second stage is not blamed."""
    raw = lm_raw(tiny_llama_dir, data["many"], tmp_path / "staged",
                 {"lr": 1e-2, "warmup_ratio": 0.2}, data_extra=SPLIT)  # fmt: skip
    raw["stages"] = [
        {"name": "hot", "method": {"name": "full"},
         "train": {"max_steps": 8, "lr": 1.0, "warmup_ratio": 0.0}},
        {"name": "calm", "train": {"max_steps": 8}},
    ]  # fmt: skip
    from tunelab.train.stages import train as train_stages

    cfg = load_config(raw)
    train_stages(cfg)
    found = diagnose(cfg.run_dir)
    assert found and all(f.title.startswith(("stage hot: ", "stage calm: ")) for f in found)
    hot = next(f for f in found if f.code == "lr_too_high")
    assert hot.title == "stage hot: learning rate too high for full"
    assert "at train.lr 1" in hot.evidence
    assert not any(f.title.startswith("stage calm: learning rate too high") for f in found)


def test_one_noisy_batch_is_not_a_too_high_lr():
    """A single batch's loss above the first (small batches are noisy) while the curve falls
    is no finding; the same rise lasting two steps is."""
    from tunelab.doctor.curves import lr_too_high

    lora = {"method": {"name": "lora"}, "train": {"lr": 1e-3}}
    noisy = [{"loss": v} for v in (0.82, 1.19, 0.63, 0.45, 0.40, 0.38)]
    assert not list(lr_too_high(record(train_rows=noisy, config=lora)))
    lasting = [{"loss": v} for v in (0.82, 0.80, 1.19, 1.25, 1.3, 1.2)]
    (finding,) = lr_too_high(record(train_rows=lasting, config=lora))
    assert "rose from 0.82 (steps 1-3) to 1.25 (around step 4)" in finding.evidence
