"""The deployment engine on loopback: a SuperLink, two SuperNodes with their own data files,
``flwr run`` of ``examples/federated-app`` (docs/federated.md): once insecure, once with TLS
(a CA and a server certificate for 127.0.0.1 made here with ``cryptography``) and SuperNode
authentication (an ECDSA key per node, registered with ``flwr supernode register``).

Bounded in time; every process it starts is stopped at the end, also on failure. About
1-2 minutes each (a fresh client process per message), so marked ``integration``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs for 127.0.0.1 (EC P-256, valid a day): the
    CA, the certificate and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir()
    now = datetime.datetime.now(datetime.UTC)

    def signed(subject: str, key: Any, issuer: Any, signer: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = signed("tunelab-test-ca", ca_key, None, ca_key, ca=True)
    server = signed("127.0.0.1", key, ca.subject, ca_key, ca=False)
    paths = folder / "ca.crt", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def write_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """An ECDSA (P-384) key pair in OpenSSH format, as ``ssh-keygen -t ecdsa -b 384`` makes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


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
@pytest.mark.parametrize("secure", [False, True], ids=["insecure", "tls-and-node-auth"])
def test_two_supernodes_on_loopback(tmp_path, tiny_bert_dir, secure):
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
    link_flags, node_flags, connection = ["--insecure"], [["--insecure"]] * 2, "insecure = true"
    if secure:
        ca, cert, key = write_certificates(tmp_path / "certs")
        link_flags = ["--ssl-ca-certfile", str(ca), "--ssl-certfile", str(cert)]
        link_flags += ["--ssl-keyfile", str(key), "--enable-supernode-auth"]
        keys = [write_node_key(tmp_path / "certs", f"client{i}") for i in range(2)]
        node_flags = [
            ["--root-certificates", str(ca), "--auth-supernode-private-key", str(private)]
            for private, _ in keys
        ]
        connection = f'root-certificates = "{ca}"'
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "loopback"\n\n'
        f'[superlink.loopback]\naddress = "127.0.0.1:{port}"\n{connection}\n'
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
                [str(BIN / "flower-superlink"), *link_flags, "--port", str(port)],
                tmp_path / "superlink.log",
                env,
            )
        )
        wait_for_port(port, tmp_path / "superlink.log")
        if secure:  # the operator registers each SuperNode's public key over TLS
            for _, public in keys:
                registered = subprocess.run(
                    [str(BIN / "flwr"), "supernode", "register", str(public), "loopback"],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=120,
                )
                assert registered.returncode == 0, registered.stdout + registered.stderr
        for i in range(2):
            node_config = f"partition-id={i} data-path='{tmp_path / f'client{i}.jsonl'}'"
            command = [str(BIN / "flower-supernode"), *node_flags[i]]
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
        if secure:  # the port speaks TLS with a certificate the CA signed for 127.0.0.1
            context = ssl.create_default_context(cafile=str(ca))
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as plain,
                context.wrap_socket(plain, server_hostname="127.0.0.1") as tls,
            ):
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        for process in reversed(processes):
            stop(process)
    assert all(p.poll() is not None for p in processes)
    link_log = (tmp_path / "superlink.log").read_text(errors="replace")
    assert f"running on {'https' if secure else 'http'}://127.0.0.1:{port}" in link_log
    if secure:  # each SuperNode runs as the node its registered key created
        registered = set(re.findall(r"Created node_id=(\d+)", link_log))
        logs = [(tmp_path / f"supernode{i}.log").read_text(errors="replace") for i in range(2)]
        nodes = {m.group(1) for log in logs if (m := re.search(r"SuperNode ID: (\d+)", log))}
        assert len(registered) == 2 and nodes == registered
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    clients = sorted(r["client"] for r in rows if r["type"] == "client")
    assert clients == [0, 1]  # each SuperNode trained on its own file
    sizes = sorted(r["num-examples"] for r in rows if r["type"] == "client")
    assert sum(sizes) == 72 and all(size >= 30 for size in sizes)
    assert (run_dir / "model" / "tunelab_method.json").is_file()
