"""The deployment engine on loopback: a SuperLink, two SuperNodes with their own data files,
``flwr run`` of ``examples/federated-app`` (insecure; docs/federated.md).

Bounded in time; every process it starts is stopped at the end, also on failure. About
1-2 minutes (a fresh client process per message), so marked ``integration``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from train_helpers import write_classification_data

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "federated-app"
BIN = Path(sys.executable).parent
RUN_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """A process in its own session (so its children stop with it), logging to ``log``."""
    return subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL what is left after 20 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_for_port(port: int, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s:\n{tail}")


@pytest.mark.integration
def test_two_supernodes_on_loopback(tmp_path, tiny_bert_dir):
    lines = write_classification_data(tmp_path / "all.jsonl", 72).read_text().splitlines()
    for i in range(2):  # each client holds its own file; the server validates on the whole set
        (tmp_path / f"client{i}.jsonl").write_text("\n".join(lines[i::2]) + "\n")
    run_dir = tmp_path / "run"
    config = {
        "model": {"name_or_path": str(tiny_bert_dir)},
        "data": {"path": str(tmp_path / "all.jsonl"), "format": "classification", "max_length": 32},
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"batch_size": 8, "lr": 5e-3, "report_to": []},
        "eval": {"at_end": False},
        "output": {"dir": str(run_dir)},
        "federated": {"clients": 2, "rounds": 1, "local_steps": 1, "engine": "deployment"},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    home = tmp_path / "flwr-home"
    home.mkdir()
    port = free_port()
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "loopback"\n\n'
        f'[superlink.loopback]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    env = {
        **os.environ,
        "FLWR_HOME": str(home),
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),  # flower-superexec
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    processes = []
    try:
        processes.append(
            start(
                [str(BIN / "flower-superlink"), "--insecure", "--port", str(port)],
                tmp_path / "superlink.log",
                env,
            )
        )
        wait_for_port(port, tmp_path / "superlink.log")
        for i in range(2):
            node_config = f"partition-id={i} data-path='{tmp_path / f'client{i}.jsonl'}'"
            command = [str(BIN / "flower-supernode"), "--insecure"]
            command += ["--superlink", f"127.0.0.1:{port}", "--port", str(free_port())]
            command += ["--node-config", node_config]
            processes.append(start(command, tmp_path / f"supernode{i}.log", env))
        done = subprocess.run(
            [
                str(BIN / "flwr"),
                "run",
                str(APP),
                "loopback",
                "--stream",
                "--run-config",
                f"config='{tmp_path / 'run.yaml'}'",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=RUN_TIMEOUT_S,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "round 1/1  clients 2" in done.stdout, done.stdout[-3000:]
    finally:
        for process in reversed(processes):
            stop(process)
    assert all(p.poll() is not None for p in processes)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    clients = sorted(r["client"] for r in rows if r["type"] == "client")
    assert clients == [0, 1]  # each SuperNode trained on its own file
    sizes = sorted(r["num-examples"] for r in rows if r["type"] == "client")
    assert sum(sizes) == 72 and all(size >= 30 for size in sizes)
    assert (run_dir / "model" / "tunelab_method.json").is_file()
