"""Federated fine-tuning on Flower (``tunelab federated``, docs/federated.md).

One simulation run (Ray starts once for it, about 10 s) is checked several ways: rows per
round, bytes per round, predict/export on its run directory, the recorded settings; a copy
stopped after round 1 resumes to the same global tensors (FedAdam's server moments and DP
noise included). Everything else runs without Ray: partitions, config errors, the client's
handlers called directly (fingerprint refusal, FedProx term), failing clients.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from federated_helpers import fed_raw
from train_helpers import write_classification_data
from tunelab.config import load_config
from tunelab.errors import ConfigError, TunelabError
from tunelab.federated.partition import label_counts, partition_rows

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


SIM = {
    "fraction": 0.67,  # 2 of 3 clients per round
    "partition": {"kind": "dirichlet", "alpha": 0.5},
    "strategy": {"name": "fedadam", "server_lr": 0.05},
    "privacy": {"noise_multiplier": 0.01, "clipping_norm": 5.0},
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory, tiny_bert_dir) -> dict[str, Any]:
    from tunelab.federated import federate

    root = tmp_path_factory.mktemp("federated")
    data = write_classification_data(root / "data.jsonl", 120)
    raw = fed_raw(tiny_bert_dir, data, root / "run", **SIM)
    result = federate(load_config(raw), resume=False)
    # what a run stopped after round 1 leaves: its round-1 checkpoint and metrics
    stopped = root / "stopped"
    shutil.copytree(root / "run" / "checkpoints" / "round-1", stopped / "checkpoints" / "round-1")
    shutil.copy(root / "run" / "metrics.jsonl", stopped / "metrics.jsonl")
    resumed = federate(load_config({**raw, "output": {"dir": str(stopped)}}))
    return {
        "root": root,
        "run": root / "run",
        "stopped": stopped,
        "result": result,
        "resumed": resumed,
    }


def rows(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_simulation_logs_every_round_with_its_clients_and_bytes(sim):
    run = sim["run"]
    logged = rows(run)
    assert logged and all("round" in row for row in logged)
    assert sim["result"].stop_reason == "completed"
    global_tensors = load_file(str(run / "checkpoints" / "round-1" / "global.safetensors"))
    tensor_bytes = sum(t.numel() * 4 for t in global_tensors.values())  # fp32 on the wire
    for server_round in (1, 2):
        clients = [r for r in logged if r["type"] == "client" and r["round"] == server_round]
        assert len({c["client"] for c in clients}) == 2  # fraction 0.67 of 3 clients
        (train,) = [r for r in logged if r["type"] == "train" and r["round"] == server_round]
        # the arrays' bytes as Flower serialises them: the tensors plus a small header each
        assert train["bytes_sent"] == train["bytes_received"]
        assert (
            2 * tensor_bytes < train["bytes_sent"] < 2 * (tensor_bytes + 256 * len(global_tensors))
        )
        (evaluation,) = [r for r in logged if r["type"] == "eval" and r["round"] == server_round]
        assert 0.0 <= evaluation["eval_accuracy"] <= 1.0
    # only the trained tensors travel: LoRA and the head, a small part of the model
    summary = json.loads((run / "train_summary.json").read_text())
    assert tensor_bytes == summary["federated"]["trainable_bytes"]
    assert tensor_bytes < 0.2 * summary["federated"]["full_model_bytes"]
    assert all("lora" in k or "classifier" in k for k in global_tensors)
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))


def test_simulation_records_strategy_privacy_and_partition(sim):
    fed = json.loads((sim["run"] / "train_summary.json").read_text())["federated"]
    assert fed["strategy"] == {"name": "fedadam", "server_lr": 0.05}
    assert fed["privacy"]["noise_multiplier"] == 0.01
    assert fed["privacy"]["clipping_norm"] == 5.0
    assert fed["privacy"]["sampled_clients"] == 2
    prepared = json.loads((sim["run"] / "data_report.json").read_text())
    assert sum(fed["partition"]["rows"]) == prepared["rows"]["train"]
    assert [len(r["clients"]) for r in fed["history"]] == [2, 2]


def test_resume_after_a_round_equals_the_uninterrupted_run(sim):
    assert sim["resumed"].stop_reason == "completed"
    a = load_file(str(sim["run"] / "checkpoints" / "round-2" / "global.safetensors"))
    b = load_file(str(sim["stopped"] / "checkpoints" / "round-2" / "global.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    first = load_file(str(sim["run"] / "checkpoints" / "round-1" / "global.safetensors"))
    assert not all(torch.equal(a[k], first[k]) for k in a)  # round 2 did train
    kinds = [(r["type"], r["round"]) for r in rows(sim["stopped"])]
    assert kinds.count(("train", 1)) == kinds.count(("train", 2)) == 1


def test_the_result_is_an_ordinary_run_dir(sim, tmp_path):
    from tunelab.export import export_run
    from tunelab.inference import load, predict

    loaded = load(sim["run"])
    out = predict(loaded, ["sport match goal win", "tech phone chip software"])
    assert len(out) == 2 and all(o["label"] in {"sport", "tech", "film"} for o in out)
    export_run(sim["run"], tmp_path / "export")
    assert (tmp_path / "export" / "tunelab_export.json").is_file()
    results = json.loads((sim["run"] / "eval_results.json").read_text())
    assert 0.0 <= results["metrics"]["accuracy"] <= 1.0


# --- partitions -------------------------------------------------------------------------


def test_iid_partition_is_disjoint_and_even():
    parts = partition_rows("iid", 4, 103, None, 0.5, seed=1)
    flat = sorted(i for p in parts for i in p)
    assert flat == list(range(103))
    assert sorted(len(p) for p in parts) == [25, 26, 26, 26]
    assert parts == partition_rows("iid", 4, 103, None, 0.5, seed=1)


def test_dirichlet_alpha_controls_label_skew():
    labels = [i % 5 for i in range(1000)]

    def skew(alpha: float) -> float:  # mean share of each client's most common label
        counts = label_counts(partition_rows("dirichlet", 4, 1000, labels, alpha, 0), labels)
        return float(np.mean([max(c.values()) / sum(c.values()) for c in counts]))

    assert skew(0.1) > 0.6 > 0.3 > skew(100.0)  # 0.2 = perfectly balanced over 5 labels


def test_more_clients_than_examples_is_one_line():
    with pytest.raises(
        TunelabError, match=r"federated\.clients is 9 but the train split has only 5"
    ):
        partition_rows("iid", 9, 5, None, 0.5, 0)


# --- config errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("federated", "expected"),
    [
        ({"strategy": {"name": "fedfoo"}}, "unknown strategy 'fedfoo'; choose one of"),
        ({"strategy": {"name": "fedavg", "mu": 0.1}}, "mu does not apply to fedavg"),
        ({"privacy": {"noise_multiplier": -1, "clipping_norm": 1}}, "noise_multiplier"),
        ({"privacy": {"noise_multiplier": 1, "clipping_norm": 0}}, "clipping_norm"),
        ({"partition": {"kind": "files", "files": ["a.jsonl"]}}, "1 files for 3 clients"),
        ({"local_steps": 2, "local_epochs": 1}, "local_steps or local_epochs"),
    ],
)
def test_bad_federated_settings_are_one_line(tmp_path, federated, expected):
    raw = fed_raw(tmp_path, tmp_path / "d.jsonl", tmp_path / "run")
    raw["federated"] = {"clients": 3, **federated}
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(raw)
    assert "federated" in str(info.value)


def test_dirichlet_on_data_without_labels_is_refused(tmp_path):
    raw = fed_raw(tmp_path, tmp_path / "d.jsonl", tmp_path / "run", partition={"kind": "dirichlet"})
    raw["data"]["format"] = "text"
    with pytest.raises(ConfigError, match=r"dirichlet splits by label.*use kind: iid"):
        load_config(raw)


def test_federated_with_stages_or_tasks_is_refused(tmp_path):
    raw = fed_raw(tmp_path, tmp_path / "d.jsonl", tmp_path / "run")
    raw["stages"] = [{"name": "a"}, {"name": "b", "train": {"lr": 1e-4}}]
    with pytest.raises(ConfigError, match=r"federated: takes one stage over one dataset"):
        load_config(raw)


def test_example_config_validates():
    cfg = load_config(Path(__file__).parents[1] / "examples" / "federated.yaml")
    assert cfg.federated.clients == 4 and cfg.federated.partition.kind == "dirichlet"


# --- the client, called directly ---------------------------------------------------------


@pytest.fixture
def flower_ids():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id = None


def test_client_with_another_base_model_refuses(tmp_path, tiny_bert_dir, tokenizer_dir, flower_ids):
    from flwr.app import Context, Message, RecordDict
    from transformers import AutoTokenizer

    from tunelab.federated.client import handshake, train
    from tunelab.federated.server import config_record
    from tunelab.testing import save_tiny_model

    other = save_tiny_model(
        "bert", tmp_path / "other", AutoTokenizer.from_pretrained(tokenizer_dir), seed=7
    )
    data = write_classification_data(tmp_path / "d.jsonl", 60)
    cfg = load_config(fed_raw(tiny_bert_dir, data, tmp_path / "run"))
    contexts = [
        Context(1, node, {"partition-id": node, **extra}, RecordDict(), {})
        for node, extra in ((0, {}), (1, {"model-path": str(other)}))
    ]
    probe = config_record(cfg, "server")
    prints = [
        handshake(Message(RecordDict({"config": probe}), 1, "query"), ctx).content["info"][
            "fingerprint"
        ]
        for ctx in contexts
    ]
    assert prints[0] != prints[1]
    config = config_record(cfg, prints[0])
    config["server-round"] = 1
    message = Message(RecordDict({"config": config}), 1, "train")
    with pytest.raises(TunelabError, match=r"client 1: base model fingerprint \w+ differs"):
        train(message, contexts[1])


def test_fedprox_term_adds_mu_half_squared_distance():
    from tunelab.federated.local import proximal_loss

    model = torch.nn.Linear(3, 1, bias=False)

    def loss_fn(module, batch):
        return module(batch["x"]).sum(), batch["labels"].numel()

    wrapped = proximal_loss(loss_fn, model, mu=0.5, task="classification")
    with torch.no_grad():
        model.weight += torch.tensor([[1.0, 2.0, 2.0]])  # distance 3 from the anchor
    batch = {"x": torch.ones(4, 3), "labels": torch.zeros(4, dtype=torch.long)}
    plain, _ = loss_fn(model, batch)
    loss, items = wrapped(model, batch)
    assert items == 4
    assert loss.item() == pytest.approx(plain.item() + 0.5 * 0.5 * 9.0 * 4)


def test_a_failing_client_fails_the_round_or_is_skipped(flower_ids):
    from flwr.app import ConfigRecord, Error, Message, RecordDict

    from tunelab.federated.server import split_replies

    sent = [Message(RecordDict({"c": ConfigRecord({"a": 1})}), node, "train") for node in (5, 6)]
    ok = Message(RecordDict({"c": ConfigRecord({"a": 1})}), reply_to=sent[0])
    crash = Message(
        Error(0, "Exception ClientAppException occurred. Message: out of memory'>"),
        reply_to=sent[1],
    )
    nodes = {5: 0, 6: 1}
    with pytest.raises(TunelabError, match=r"round 3: client 1: out of memory; earlier rounds"):
        split_replies([ok, crash], nodes, "fail", 3)
    valid, failures = split_replies([ok, crash], nodes, "skip", 3)
    assert valid == [ok] and failures == ["client 1: out of memory"]


# --- the command line and the shipped example ------------------------------------------


def test_command_without_a_federated_section_is_one_line():
    import subprocess
    import sys

    example = Path(__file__).parents[1] / "examples" / "quickstart.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "tunelab.cli", "federated", str(example)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: the config has no federated: section; add one (docs/federated.md) or use "
        "tunelab train"
    ]


@pytest.mark.integration
def test_shipped_example_runs_two_short_rounds(tmp_path):
    from tunelab.federated import federate

    example = Path(__file__).parents[1] / "examples" / "federated.yaml"
    cfg = load_config(
        example,
        [
            f"output.dir={tmp_path / 'run'}",
            f"data.cache_dir={tmp_path / 'cache'}",
            "data.max_samples=200",
            "data.max_length=64",
            "train.batch_size=8",
            "federated.rounds=2",
            "federated.local_steps=2",
        ],
    )
    result = federate(cfg)
    assert result.stop_reason == "completed"
    evals = [r for r in rows(tmp_path / "run") if r["type"] == "eval"]
    assert [r["round"] for r in evals] == [1, 2]
    fed = json.loads((tmp_path / "run" / "train_summary.json").read_text())["federated"]
    assert len(fed["partition"]["rows"]) == 4 and fed["trainable_bytes"] < fed["full_model_bytes"]
    metrics = json.loads((tmp_path / "run" / "eval_results.json").read_text())["metrics"]
    assert 0.0 <= metrics["accuracy"] <= 1.0


# --- one column value per client ---------------------------------------------------------


def column_raw(tmp_path: Path, sources: list[str]) -> dict[str, Any]:
    """Rows tagged with a ``source`` column, and a separate validation file."""
    lines = [
        json.dumps(
            {"text": f"row {i} text", "label": "ab"[i % 2], "source": sources[i % len(sources)]}
        )
        for i in range(30)
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "v.jsonl").write_text("\n".join(lines[:4]) + "\n")
    raw = fed_raw(tmp_path, tmp_path / "d.jsonl", tmp_path / "run")
    raw["data"]["validation_path"] = str(tmp_path / "v.jsonl")
    raw["federated"]["partition"] = {"kind": "column", "column": "source"}
    return raw


def test_column_partition_gives_each_client_one_value(tmp_path):
    from tunelab.federated.client import client_config

    raw = column_raw(tmp_path, ["north", "east", "south"])
    cfg = load_config(raw)
    for partition, value in enumerate(["east", "north", "south"]):  # sorted values
        view, got, own_file = client_config(
            cfg.model_dump(mode="json"), {"partition-id": partition}
        )
        assert got == partition and own_file
        rows = [json.loads(line) for line in Path(view.data.path).read_text().splitlines()]
        assert len(rows) == 10 and {r["source"] for r in rows} == {value}
        assert view.data.validation_path is None and view.data.split.train == 1.0


def test_column_partition_errors_are_one_line(tmp_path):
    from tunelab.federated.columns import column_groups

    raw = column_raw(tmp_path, ["north", "east"])  # 2 values for 3 clients
    with pytest.raises(
        TunelabError, match=r"'source' has 2 values \(east, north\) but federated\.clients is 3"
    ):
        column_groups(load_config(raw))
    raw["federated"]["partition"]["column"] = "hospital"
    with pytest.raises(
        TunelabError,
        match=r"column 'hospital' is not a column of .*d\.jsonl:1 \(columns: label, source, text\)",
    ):
        column_groups(load_config(raw))
    del raw["data"]["validation_path"]
    with pytest.raises(ConfigError, match=r"kind column needs data\.validation_path"):
        load_config(raw)
