"""The server side of a federated run: handshake, rounds, global validation, checkpoints.

tunelab drives the rounds itself with a Flower strategy's ``configure_train`` and
``aggregate_train`` (not ``Strategy.start``), so it picks the round's clients with a seeded
RNG, stops early, applies ``on_client_failure``, and checkpoints the global tensors and the
strategy's state after every round: a resumed run repeats exactly the rounds it lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console

from tunelab.config import RunConfig
from tunelab.errors import TunelabError

NODE_WAIT_S = 120.0


@dataclass
class RoundOutcome:
    """What one round produced."""

    arrays: Any
    client_metrics: list[dict[str, Any]]
    failures: list[str]
    bytes_sent: int
    bytes_received: int
    train_loss: float | None = None


def wait_for_nodes(grid: Any, clients: int, timeout: float = NODE_WAIT_S) -> list[int]:
    """The node ids once ``clients`` nodes are connected (error after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < clients:
        if time.monotonic() > deadline:
            raise TunelabError(
                f"only {len(nodes)} of federated.clients={clients} nodes connected within "
                f"{timeout:.0f} s; start one SuperNode per client (docs/federated.md)"
            )
        time.sleep(0.2)
    return nodes


def handshake(
    grid: Any, nodes: list[int], config: Any, fingerprint: str, timeout: float
) -> dict[int, int]:
    """Ask every node for its partition and base fingerprint; return partition -> node id.

    A node with another base model, two nodes with one partition, or a node that cannot
    start is a one-line error.
    """
    from flwr.app import Message, RecordDict

    messages = [
        Message(RecordDict({"config": config}), message_type="query", dst_node_id=node)
        for node in nodes
    ]
    by_partition: dict[int, int] = {}
    for answer in grid.send_and_receive(messages, timeout=timeout):
        node = answer.metadata.src_node_id
        if answer.has_error():
            raise TunelabError(
                f"client node {node} failed to start: {one_line(answer.error.reason)}"
            )
        info = answer.content["info"]
        partition = int(info["partition"])
        if info["fingerprint"] != fingerprint:
            raise TunelabError(
                f"client {partition} (node {node}) has a different base model (fingerprint "
                f"{info['fingerprint']}, server {fingerprint}); every client must load the "
                "same model.name_or_path"
            )
        if partition in by_partition:
            raise TunelabError(f"two nodes say partition-id {partition}; give each node its own")
        by_partition[partition] = node
    return by_partition


def one_line(reason: str) -> str:
    """A client's error in one line: its exception message without Flower's wrapping."""
    text = str(reason).split("Message: ", 1)[-1].removesuffix("'>").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def pick_clients(cfg: RunConfig, server_round: int) -> list[int]:
    """The partitions trained in ``server_round`` (seeded by ``train.seed`` and the round)."""
    fed = cfg.federated
    rng = np.random.default_rng([cfg.train.seed, server_round])
    return sorted(rng.choice(fed.clients, size=fed.clients_per_round, replace=False).tolist())


def split_replies(
    replies: list[Any], node_partition: dict[int, int], policy: str, server_round: int
) -> tuple[list[Any], list[str]]:
    """Replies with results, and a line per failed client; ``policy`` fail raises on one."""
    valid, failures = [], []
    for answer in replies:
        partition = node_partition.get(answer.metadata.src_node_id, -1)
        if answer.has_error():
            failures.append(f"client {partition}: {one_line(answer.error.reason)}")
        else:
            valid.append(answer)
    if failures and policy == "fail":
        raise TunelabError(
            f"round {server_round}: {failures[0]}; earlier rounds are kept in checkpoints/ "
            "(resume continues), or set federated.on_client_failure: skip to go on without it"
        )
    if not valid:
        raise TunelabError(
            f"round {server_round}: no client returned a result ({'; '.join(failures)})"
        )
    return valid, failures


def run_round(
    grid: Any,
    strategy: Any,
    cfg: RunConfig,
    server_round: int,
    arrays: Any,
    config: Any,
    nodes: dict[int, int],
) -> RoundOutcome:
    """Send the global tensors to the round's clients, gather and aggregate their updates."""
    from tunelab.federated.transport import arrays_bytes

    fed = cfg.federated
    picked = {nodes[p] for p in pick_clients(cfg, server_round)}
    config["server-round"] = server_round
    messages = [
        m
        for m in strategy.configure_train(server_round, arrays, config, grid)
        if m.metadata.dst_node_id in picked
    ]
    replies = list(grid.send_and_receive(messages, timeout=fed.round_timeout_s))
    node_partition = {node: p for p, node in nodes.items()}
    valid, failures = split_replies(replies, node_partition, fed.on_client_failure, server_round)
    received = sum(arrays_bytes(r.content["arrays"]) for r in valid)  # before DP clips them
    clients = [
        {"client": int(r.content["metrics"]["partition"]), **dict(r.content["metrics"])}
        for r in valid
    ]
    np.random.seed(cfg.train.seed * 100_003 + server_round)  # DP noise: the same on resume
    new_arrays, _ = strategy.aggregate_train(server_round, valid)
    if new_arrays is None:
        raise TunelabError(
            f"round {server_round}: {fed.strategy.name} aggregated nothing from "
            f"{len(valid)} result(s); earlier rounds are kept in checkpoints/"
        )
    weights = [c["num-examples"] for c in clients]
    loss = float(np.average([c["train_loss"] for c in clients], weights=weights))
    return RoundOutcome(
        new_arrays, clients, failures, arrays_bytes(arrays) * len(messages), received, loss
    )


def config_record(cfg: RunConfig, fingerprint: str) -> Any:
    """What every message carries: the run config (JSON) and the server's base fingerprint."""
    from flwr.app import ConfigRecord

    run_config = json.dumps(cfg.model_dump(mode="json"))
    return ConfigRecord({"run_config": run_config, "fingerprint": fingerprint})


def round_line(
    server_round: int, total: int, outcome: RoundOutcome, metrics: dict[str, float]
) -> str:
    """One progress line per round."""
    shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
    failed = f"  ({len(outcome.failures)} client(s) failed)" if outcome.failures else ""
    return (
        f"round {server_round}/{total}  clients {len(outcome.client_metrics)}  "
        f"train_loss {outcome.train_loss:.4f}  {shown}  "
        f"sent {outcome.bytes_sent / 2**20:.2f} MiB  received {outcome.bytes_received / 2**20:.2f} MiB{failed}"
    )


def print_failures(console: Console, server_round: int, failures: list[str]) -> None:
    for line in failures:
        console.print(
            f"[yellow]warning:[/] round {server_round}: {line}; aggregated without it",
            soft_wrap=True,
        )
