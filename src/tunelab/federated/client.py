"""The Flower ``ClientApp``: a handshake (partition, example count, base fingerprint) and
one round of local training with tunelab's loop.

The server sends the run config with every message; a client applies what its SuperNode's
``--node-config`` says (``partition-id``, its own ``data-path`` and ``model-path``) and
writes only under ``$TUNELAB_CACHE/federated-clients``. A client whose base model differs
from the server's refuses to train.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from tunelab.config import RunConfig, load_config
from tunelab.errors import TunelabError
from tunelab.federated.local import LocalTrainer, build_trainer, train_round
from tunelab.federated.partition import partition_rows
from tunelab.federated.transport import load_arrays, model_arrays
from tunelab.paths import cache_root

client_app = ClientApp()
_TRAINERS: dict[str, LocalTrainer] = {}  # one per config and client, kept for the process


def client_config(run_config: dict[str, Any], node: dict[str, Any]) -> tuple[RunConfig, int, bool]:
    """The client's view of the run config, its partition id, and whether it has a data
    file of its own (else it takes its partition of the train split)."""
    raw = json.loads(json.dumps(run_config))
    fed = raw["federated"]
    partition = int(node.get("partition-id", 0))
    if not 0 <= partition < fed["clients"]:
        raise TunelabError(
            f"node config partition-id {partition} is outside 0..{fed['clients'] - 1} "
            f"(federated.clients is {fed['clients']})"
        )
    files = fed["partition"]["files"]
    own_file = node.get("data-path") or (files[partition] if files else None)
    workspace = cache_root() / "federated-clients"
    if fed["partition"]["kind"] == "column" and not own_file:
        from tunelab.federated.columns import write_client_file

        key = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:16]
        own_file = write_client_file(
            load_config(raw), partition, workspace / f"column-{key}-{partition}"
        )
    if own_file:
        raw["data"].update(path=str(own_file), validation_path=None, test_path=None)
        raw["data"]["split"].update(train=1.0, validation=0.0, test=0.0)
        fed["partition"] = {"kind": "iid"}  # the whole file is this client's
    if node.get("model-path"):
        raw["model"]["name_or_path"] = str(node["model-path"])
    key = hashlib.sha256(json.dumps([raw, partition], sort_keys=True).encode()).hexdigest()[:16]
    raw["output"]["dir"] = str(workspace / f"{key}-{partition}")
    raw["train"]["report_to"] = []
    raw["eval"]["at_end"] = False
    return load_config(raw), partition, bool(own_file)


def trainer_for(content: RecordDict, node: dict[str, Any]) -> tuple[LocalTrainer, int]:
    """This process's trainer for the message's config and this node (built on first use)."""
    from tunelab.data import prepare_data
    from tunelab.models import load_tokenizer

    run_config = json.loads(str(content["config"]["run_config"]))
    cfg, partition, own_file = client_config(run_config, node)
    key = f"{cfg.output.dir}"
    if key not in _TRAINERS:
        prepared = prepare_data(cfg, load_tokenizer(cfg.model))
        rows = prepared.splits["train"]
        fed = cfg.federated
        if not own_file:
            labels = rows["labels"] if cfg.task == "classification" else None
            parts = partition_rows(
                fed.partition.kind, fed.clients, len(rows), labels, fed.partition.alpha,
                fed.partition.seed,
            )  # fmt: skip
            rows = rows.select(parts[partition])
        _TRAINERS[key] = build_trainer(cfg, rows, prepared.label_names)
    return _TRAINERS[key], partition


def reply(message: Message, **records: Any) -> Message:
    """A reply to ``message`` carrying ``records``."""
    return Message(RecordDict(records), reply_to=message)


@client_app.query()
def handshake(message: Message, context: Context) -> Message:
    """Report this client's partition, example count and base model fingerprint."""
    trainer, partition = trainer_for(message.content, dict(context.node_config))
    info = {
        "partition": partition,
        "examples": trainer.examples,
        "fingerprint": trainer.fingerprint,
    }
    return reply(message, info=ConfigRecord(info))


@client_app.train()
def train(message: Message, context: Context) -> Message:
    """One round: check the base, load the global tensors, train, send the tensors back."""
    trainer, partition = trainer_for(message.content, dict(context.node_config))
    config = message.content["config"]
    if config["fingerprint"] != trainer.fingerprint:
        raise TunelabError(
            f"client {partition}: base model fingerprint {trainer.fingerprint} differs from "
            f"the server's {config['fingerprint']}; every client must load the same "
            "model.name_or_path"
        )
    model = trainer.loop.backend.unwrap(trainer.loop.model)
    load_arrays(model, message.content["arrays"])
    server_round = int(config["server-round"])
    seed = trainer.cfg.train.seed + 1000 * partition + server_round
    metrics = train_round(trainer, server_round, seed)
    metrics.update({"num-examples": trainer.examples, "partition": partition})
    arrays: ArrayRecord = model_arrays(model)
    return reply(message, arrays=arrays, metrics=MetricRecord(metrics))
