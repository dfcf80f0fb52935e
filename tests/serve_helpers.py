"""Helpers for the serving tests: tiny runs with trained-looking artifacts, a live server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import torch

from method_helpers import build, perturb
from tunelab.methods.artifacts import save_artifact
from tunelab.models import load_tokenizer

SRC = Path(__file__).resolve().parents[1] / "src"


def make_run(model_dir: Path, root: Path, task: str, method: dict[str, Any], seed: int) -> Path:
    """A run directory whose ``model/`` holds ``method`` on ``model_dir`` with noised weights
    (seeded: the same run whatever ran before)."""
    torch.manual_seed(seed)  # the method's own initialisation (LoRA's A) draws from it
    cfg, model = build(model_dir, task, method, root)
    perturb(model, seed=seed, scale=0.3)
    save_artifact(model, cfg, root / "model", load_tokenizer(cfg.model))
    return root


def cli_env() -> dict[str, str]:
    """The environment a tunelab subprocess runs in (this checkout's sources, offline)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    env.pop("TUNELAB_API_KEY", None)
    return env


class Server:
    """``tunelab serve`` in a subprocess on a free loopback port."""

    def __init__(
        self, args: list[str], log: Path, timeout: float = 120, env: dict[str, str] | None = None
    ) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "tunelab.cli", "serve", *args, "--port", "0"]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            env={**cli_env(), **(env or {})},
            text=True,
        )
        line = self.proc.stdout.readline()  # the address line comes once the socket is bound
        found = re.search(r"http://127\.0\.0\.1:(\d+)/v1", line)
        assert found, f"no address line: {line!r}\n{self.stderr()}"
        self.port = int(found.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError(f"server did not answer /health: {self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in Prometheus text."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, flags=re.M)
    assert found, f"{name} not in metrics"
    return float(found.group(1))
