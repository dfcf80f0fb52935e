"""tunelab sweep: the plan is validated before anything runs; every combination trains in
its own run directory; a stopped sweep resumes; sweep.json / sweep.csv hold each run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from train_helpers import write_classification_data
from tunelab.errors import ConfigError, TunelabError
from tunelab.evaluate.efficiency import parameter_counts
from tunelab.sweep import plan_sweep, sweep
from tunelab.sweep.plan import split_values

STEPS = 60


def write_config(tmp_path: Path, model_dir: Path) -> Path:
    data = write_classification_data(tmp_path / "cls.jsonl", n=48)
    raw = {
        "model": {"name_or_path": str(model_dir)},
        "data": {"path": str(data), "format": "classification", "max_length": 32,
                 "cache_dir": str(tmp_path / "data-cache")},
        "method": {"name": "full"},
        "train": {"batch_size": 8, "lr": 2e-3, "report_to": [], "epochs": 100, "eval_every": 1000},
        "output": {"dir": str(tmp_path / "sweep"), "report": False, "attention_examples": 0},
    }  # fmt: skip
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_plan_checks_every_run_before_anything_runs(tmp_path, tiny_bert_dir):
    config = write_config(tmp_path, tiny_bert_dir)
    plan = plan_sweep(config, ["method.name=full,lora", "train.lr=1e-3,3e-3", "train.seed=7"])
    assert [r.name for r in plan.runs] == [
        "full_lr-1e-3", "full_lr-3e-3", "lora_lr-1e-3", "lora_lr-3e-3"
    ]  # fmt: skip
    assert plan.sweep_dir == tmp_path / "sweep"
    assert all(r.cfg.train.seed == 7 for r in plan.runs)  # a one-value --set applies to all
    assert plan.runs[3].cfg.method.name == "lora" and plan.runs[3].cfg.train.lr == 3e-3
    assert plan.runs[3].cfg.run_dir == tmp_path / "sweep" / "lora_lr-3e-3"
    with pytest.raises(ConfigError) as bad_key:
        plan_sweep(config, ["train.lrr=1e-3,3e-3"])
    assert str(bad_key.value) == f"{config}: train.lrr: unknown key; did you mean 'train.lr'?"
    with pytest.raises(ConfigError) as bad_value:
        plan_sweep(config, ["train.lr=1e-3,fast", "method.name=full,bitfit"])
    assert str(bad_value.value) == (
        f"{config}: --set train.lr=fast: train.lr: got 'fast'; expected a valid number, "
        "unable to parse string as a number"
    )
    with pytest.raises(TunelabError, match="not of the form KEY=V1,V2"):
        plan_sweep(config, ["train.lr"])
    with pytest.raises(TunelabError, match="choose that with -o DIR"):
        plan_sweep(config, ["output.dir=a,b"])
    assert not (tmp_path / "sweep").exists()  # nothing written by a refused sweep
    assert split_values("[a, b],c,{x: 1, y: 2}") == ["[a, b]", "c", "{x: 1, y: 2}"]


def read_table(sweep_dir: Path) -> tuple[list[dict], list[dict]]:
    runs = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    with (sweep_dir / "sweep.csv").open() as fh:
        return runs, list(csv.DictReader(fh))


def test_a_stopped_sweep_resumes_and_tabulates_every_run(tmp_path, tiny_bert_dir, capfd):
    config = write_config(tmp_path, tiny_bert_dir)
    sets = ["method.name=full,bitfit", f"train.max_steps={STEPS}"]
    sweep_dir = tmp_path / "sweep"
    args = [arg for item in sets for arg in ("--set", item)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "sweep", str(config), *args],
        stdout=(tmp_path / "sweep.log").open("w"), stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    second = sweep_dir / "bitfit" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (second.exists() and len(second.read_text().splitlines()) >= 2):
        assert proc.poll() is None, (tmp_path / "sweep.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, (tmp_path / "sweep.log").read_text()[-2000:]
    assert "sweep stopped; run the same command again" in (tmp_path / "sweep.log").read_text()
    runs, _ = read_table(sweep_dir)
    assert [r["status"] for r in runs] == ["finished", "stopped"]
    stopped_at = len(second.read_text().splitlines())
    assert 2 <= stopped_at < STEPS and not (sweep_dir / "bitfit" / "model").exists()
    first_summary = (sweep_dir / "full" / "train_summary.json").stat().st_mtime_ns

    capfd.readouterr()
    result = sweep(config, sets)
    out = capfd.readouterr().out
    assert result.complete and [r["status"] for r in result.rows] == ["skipped", "finished"]
    assert f"resuming from {sweep_dir / 'bitfit' / 'checkpoints'}" in out  # not a restart
    assert (sweep_dir / "full" / "train_summary.json").stat().st_mtime_ns == first_summary
    steps = [json.loads(line)["step"] for line in second.read_text().splitlines()
             if json.loads(line)["type"] == "train"]  # fmt: skip
    assert steps == list(range(1, STEPS + 1))  # every step once across the stop

    runs, rows = read_table(sweep_dir)
    assert [r["run"] for r in rows] == ["full", "bitfit"] and len(runs) == 2
    for row, csv_row in zip(runs, rows, strict=True):
        run_dir = Path(row["run_dir"])
        summary = json.loads((run_dir / "train_summary.json").read_text())
        metrics = json.loads((run_dir / "eval_results.json").read_text())["metrics"]
        size = sum(f.stat().st_size for f in (run_dir / "model").rglob("*") if f.is_file())
        assert row["artifact_mb"] == pytest.approx(size / 2**20)
        assert row["trainable_params"] == summary["trainable_params"]
        assert row["peak_memory_mb"] == summary["peak_memory_mb"] > 0
        assert row["train_time_s"] == summary["wall_time_s"] > 0
        assert row["latency_p50_ms"] == metrics["latency_p50_ms"] > 0
        assert row["eval.accuracy"] == metrics["accuracy"]
        assert float(csv_row["eval.accuracy"]) == pytest.approx(metrics["accuracy"])
        assert csv_row["method.name"] == run_dir.name and row["steps"] == STEPS
    report = (sweep_dir / "report.html").read_text(encoding="utf-8")  # the comparison
    assert 'data-section="comparison"' in report
    assert 'data-run="full"' in report and 'data-run="bitfit"' in report
    full, bitfit = runs
    assert full["trainable_params"] == full["total_params"] == _bert_params(tiny_bert_dir)
    assert bitfit["trainable_params"] < full["trainable_params"] / 10
    assert bitfit["artifact_mb"] < full["artifact_mb"] / 5

    # stopped during its final evaluation: trained, no eval_results.json; resuming evaluates it
    results = sweep_dir / "full" / "eval_results.json"
    accuracy = json.loads(results.read_text())["metrics"]["accuracy"]
    results.unlink()
    again = sweep(config, sets)
    assert again.complete and [r["status"] for r in again.rows] == ["skipped", "skipped"]
    assert json.loads(results.read_text())["metrics"]["accuracy"] == accuracy
    assert again.rows[0]["eval.accuracy"] == accuracy


def _bert_params(model_dir: Path) -> int:
    """The tiny BERT's parameters with a three-class head, counted here."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=3)
    return parameter_counts(model)["total_params"]
