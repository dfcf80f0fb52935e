"""Issue 17 section 4 through the server loop: bad input met at run time is one line, before
any round (clients over examples, a client with another base model, node configs that
clash or are out of range). The config-time cases (unknown strategy, DP out of range,
dirichlet without labels, a partition column that does not exist) are in
tests/test_federated.py; a client crashing mid-round in tests/test_federated_strategies.py.
The server loop runs over :class:`federated_helpers.LoopbackGrid` (no Ray).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from federated_helpers import LoopbackGrid, fed_raw
from train_helpers import write_classification_data
from tunelab.config import load_config
from tunelab.errors import ConfigError, TunelabError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def flower_ids():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id = None


def raw_for(tmp_path: Path, model: Path, rows: int = 60, **federated: Any) -> dict[str, Any]:
    data = write_classification_data(tmp_path / "data.jsonl", rows)
    raw = fed_raw(model, data, tmp_path / "run", rounds=1, local_steps=1, **federated)
    raw["train"]["report_to"] = []
    return raw


def serve(raw: dict[str, Any], grid: LoopbackGrid) -> Any:
    from tunelab.federated.runner import serve as serve_rounds

    return serve_rounds(grid, load_config(raw), False, Console(quiet=True))


def no_round_ran(raw: dict[str, Any], grid: LoopbackGrid) -> bool:
    return not grid.rounds and not (Path(raw["output"]["dir"]) / "checkpoints").exists()


def test_more_clients_than_train_examples_stops_before_any_client(tmp_path, tiny_bert_dir):
    raw = raw_for(tmp_path, tiny_bert_dir, rows=10, clients=9)  # fewer than 9 after cleaning
    raw["eval"]["at_end"] = False
    grid = LoopbackGrid(9)
    with pytest.raises(
        TunelabError, match=r"^federated\.clients is 9 but the train split has only (\d+) "
    ) as info:
        serve(raw, grid)
    assert int(str(info.value).split("only ")[1].split()[0]) < 9
    assert no_round_ran(raw, grid)


def test_a_client_with_another_base_model_is_refused_at_the_handshake(
    tmp_path, tiny_bert_dir, tokenizer_dir, flower_ids
):
    from transformers import AutoTokenizer

    from tunelab.testing import save_tiny_model

    other = save_tiny_model(
        "bert", tmp_path / "other", AutoTokenizer.from_pretrained(tokenizer_dir), seed=7
    )
    raw = raw_for(tmp_path, tiny_bert_dir, clients=2)
    grid = LoopbackGrid(2)
    grid.node_configs[101]["model-path"] = str(other)  # this SuperNode's local base model
    with pytest.raises(
        TunelabError,
        match=r"^client 1 \(node 101\) has a different base model \(fingerprint \w+, server \w+\)",
    ):
        serve(raw, grid)
    assert no_round_ran(raw, grid)


def test_two_nodes_with_one_partition_id_are_refused(tmp_path, tiny_bert_dir, flower_ids):
    raw = raw_for(tmp_path, tiny_bert_dir, clients=2)
    grid = LoopbackGrid(2)
    grid.node_configs[101]["partition-id"] = 0
    with pytest.raises(TunelabError, match=r"^two nodes say partition-id 0; give each node"):
        serve(raw, grid)
    assert no_round_ran(raw, grid)


def test_a_node_with_a_partition_id_out_of_range_is_one_line(tmp_path, tiny_bert_dir, flower_ids):
    raw = raw_for(tmp_path, tiny_bert_dir, clients=2)
    grid = LoopbackGrid(2)
    grid.node_configs[101]["partition-id"] = 5
    with pytest.raises(
        TunelabError,
        match=r"^client node 101 failed to start: node config partition-id 5 is outside 0\.\.1 "
        r"\(federated\.clients is 2\)$",
    ):
        serve(raw, grid)
    assert no_round_ran(raw, grid)


@pytest.mark.parametrize(
    ("privacy", "key"),
    [
        ({"noise_multiplier": 101, "clipping_norm": 1}, "noise_multiplier"),
        ({"noise_multiplier": 1}, "clipping_norm"),
    ],
)
def test_more_dp_settings_out_of_range_are_one_line(tmp_path, privacy, key):
    raw = fed_raw(tmp_path, tmp_path / "d.jsonl", tmp_path / "run", privacy=privacy)
    with pytest.raises(ConfigError, match=rf"federated\.privacy\.{key}") as info:
        load_config(raw)
    assert "\n" not in str(info.value)
