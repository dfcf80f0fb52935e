"""Federated test helpers: the tiny-BERT federated config and an in-process Flower Grid.

:class:`LoopbackGrid` is Flower's ``Grid`` interface (``get_node_ids``,
``send_and_receive``) in this process: every message goes to tunelab's real ``ClientApp``
(``tunelab.federated.client.client_app``) with the node's ``node_config``, as a SuperNode
would deliver it, and a handler's exception comes back as Flower's error reply. So the whole
server loop (``tunelab.federated.runner.serve``: handshake, rounds, the Flower strategy,
checkpoints, results) runs without starting Ray (about 10 s a run). It records what each
round sent and received, for checks computed in the tests. ``crash`` makes a node's client
fail in a round, as a client process dying mid-round does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def fed_raw(model_dir: Path, data: Path, out: Path, **federated: Any) -> dict[str, Any]:
    """A LoRA classification run on the tiny BERT with a federated section."""
    return {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data),
            "format": "classification",
            "max_length": 32,
            "cache_dir": str(out.parent / "data-cache"),
        },
        "method": {"name": "lora", "lora": {"r": 4}},
        "train": {"batch_size": 8, "lr": 5e-3, "report_to": ["tensorboard"], "seed": 3},
        "eval": {"at_end": True, "split": "test"},
        "output": {"dir": str(out)},
        "federated": {"clients": 3, "rounds": 2, "local_steps": 2, **federated},
    }


class LoopbackGrid:
    """Flower's Grid in this process (see the module docstring)."""

    def __init__(self, clients: int, crash: dict[tuple[int, int], str] | None = None) -> None:
        self.node_configs = {100 + i: {"partition-id": i} for i in range(clients)}
        self.crash = crash or {}  # (partition, round) -> the error the client dies with
        self.rounds: dict[int, dict[str, Any]] = {}  # round -> sent arrays, replies

    def get_node_ids(self) -> list[int]:
        return list(self.node_configs)

    def send_and_receive(self, messages: list[Any], timeout: float | None = None) -> list[Any]:
        from flwr.app import Context, Error, Message, RecordDict

        from tunelab.federated.client import client_app

        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            config = self.node_configs[node]
            context = Context(1, node, dict(config), RecordDict(), {})
            server_round = None
            if message.metadata.message_type == "train":
                server_round = int(message.content["config"]["server-round"])
            reason = self.crash.get((config["partition-id"], server_round))
            try:
                if reason:
                    raise RuntimeError(reason)
                reply = client_app(message, context)
            except Exception as error:  # what a SuperNode reports for a failed ClientApp
                text = f"Exception ClientAppException occurred. Message: {error}'>"
                reply = Message(Error(0, text), reply_to=message)
            replies.append(reply)
            if server_round is not None:
                entry = self.rounds.setdefault(server_round, {"sent": None, "replies": []})
                entry["sent"] = arrays_of(message.content["arrays"])
                if not reply.has_error():
                    entry["replies"].append(
                        (
                            int(reply.content["metrics"]["num-examples"]),
                            arrays_of(reply.content["arrays"]),
                        )
                    )
        return replies


def arrays_of(record: Any) -> dict[str, np.ndarray]:
    """An ``ArrayRecord`` as float64 NumPy arrays (copies)."""
    return {key: array.numpy().astype(np.float64) for key, array in record.items()}
