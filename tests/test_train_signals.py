"""Interrupting a real `tunelab train` process: SIGTERM saves and exits; kill -9 loses little."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from train_helpers import lm_raw, metrics, write_text_data
from tunelab.config import RunConfig, load_config
from tunelab.train import train
from tunelab.train.checkpoint import latest_checkpoint, list_checkpoints, read_state

MAX_STEPS = 16


def start(raw: dict, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    name = Path(raw["output"]["dir"]).name
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    log = tmp_path / f"{name}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "train", str(path)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    return proc, log


def wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "training ended before the test could interrupt it"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def logged_steps(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def run_config(tiny_llama_dir, tmp_path, name, **train_keys) -> tuple[dict, RunConfig]:
    data = write_text_data(tmp_path / "text.jsonl", n=60)
    train_cfg = {"max_steps": MAX_STEPS, **train_keys}
    split = {"split": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    raw = lm_raw(tiny_llama_dir, data, tmp_path / name, train_cfg, data_extra=split)
    return raw, load_config(raw)


def assert_every_step_once(run_dir: Path) -> None:
    assert [r["step"] for r in metrics(run_dir)] == list(range(1, MAX_STEPS + 1))


def test_sigterm_saves_a_checkpoint_and_resume_completes(tiny_llama_dir, tmp_path):
    raw, cfg = run_config(tiny_llama_dir, tmp_path, "term")
    proc, log = start(raw, tmp_path)
    wait_for(lambda: logged_steps(cfg.run_dir) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    output = log.read_text()
    assert "stopped by SIGTERM" in output and "--resume" in output
    step = read_state(latest_checkpoint(cfg.run_dir))["step"]
    assert 2 <= step < MAX_STEPS
    assert metrics(cfg.run_dir)[-1]["step"] == step
    assert not (cfg.run_dir / "model").exists()
    result = train(cfg, resume=True)
    assert (result.stop_reason, result.steps) == ("completed", MAX_STEPS)
    assert_every_step_once(cfg.run_dir)


def test_kill_9_loses_at_most_the_work_since_the_last_checkpoint(tiny_llama_dir, tmp_path):
    raw, cfg = run_config(tiny_llama_dir, tmp_path, "kill", save_every=2, keep_last=3)
    proc, _ = start(raw, tmp_path)
    wait_for(lambda: len(list_checkpoints(cfg.run_dir)) >= 2, proc)
    proc.kill()
    proc.wait(timeout=30)
    latest = latest_checkpoint(cfg.run_dir)
    step = read_state(latest)["step"]
    assert step >= 4 and step % 2 == 0
    result = train(cfg)  # auto-resume: same config
    assert (result.stop_reason, result.steps) == ("completed", MAX_STEPS)
    assert_every_step_once(cfg.run_dir)
    assert not list(cfg.run_dir.joinpath("checkpoints").glob(".step-*"))
    assert (cfg.run_dir / "model" / "adapter_model.safetensors").is_file()
