"""Every registered strategy runs a federated run end to end, and its global tensors are
what the strategy's published update rule gives for the clients' returned tensors.

The server loop (``tunelab.federated.runner.serve``) and tunelab's ClientApp run in this
process over :class:`federated_helpers.LoopbackGrid` (no Ray): 3 clients on the tiny BERT,
2 rounds of 1 local step (2 for FedAvg and FedProx). Each round's expected global is computed here from what the grid
saw the clients return (weighted mean, coordinate median, trimmed mean, the server
optimisers' formulas), and compared with the round checkpoint tunelab wrote. A client that
dies mid-round fails the run (earlier rounds kept, resume finishes it) or is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from safetensors.torch import load_file

from federated_helpers import LoopbackGrid, fed_raw
from train_helpers import write_classification_data
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.federated.strategies import STRATEGIES

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ADAM = {"server_lr": 0.05, "tau": 1e-3, "beta_1": 0.9, "beta_2": 0.99}
OPTIONS: dict[str, dict[str, float]] = {
    "fedavg": {},
    "fedprox": {"mu": 10.0},
    "fedadam": ADAM,
    "fedyogi": ADAM,
    "fedadagrad": {"server_lr": 0.05, "tau": 1e-3},
    "fedavgm": {"server_lr": 1.0, "server_momentum": 0.9},
    "fedmedian": {},
    "fedtrimmedavg": {"trim_fraction": 0.34},  # 3 clients: drop the lowest and the highest
}


@pytest.fixture(scope="module")
def flower_ids():
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id = None


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_bert_dir) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("fed-strategies")
    data = write_classification_data(root / "data.jsonl", 90)
    return {"root": root, "data": data, "model": tiny_bert_dir}


def run_raw(setup: dict[str, Any], name: str, **federated: Any) -> dict[str, Any]:
    strategy = name.split("-")[0]
    steps = 2 if strategy in ("fedavg", "fedprox") else 1  # FedProx's term acts from step 2
    raw = fed_raw(setup["model"], setup["data"], setup["root"] / name, local_steps=steps)
    raw["train"]["report_to"] = []
    raw["eval"]["at_end"] = False  # the run's end is checked in test_federated.py
    raw["output"].update(attention_examples=0, report=False)
    raw["federated"].update(
        partition={"kind": "dirichlet", "alpha": 1.0},  # unequal client sizes: weights matter
        strategy={"name": strategy, **OPTIONS[strategy]},
        **federated,
    )
    return raw


def serve(raw: dict[str, Any], grid: LoopbackGrid, resume: bool | None = False) -> Any:
    from tunelab.federated.runner import serve as serve_rounds

    return serve_rounds(grid, load_config(raw), resume, Console(quiet=True))


@pytest.fixture(scope="module")
def runs(setup, flower_ids):
    """name -> (result, grid) of a 2-round run with that strategy (each run once)."""
    done: dict[str, tuple[Any, LoopbackGrid]] = {}

    def get(name: str) -> tuple[Any, LoopbackGrid]:
        if name not in done:
            grid = LoopbackGrid(3)
            done[name] = (serve(run_raw(setup, name), grid), grid)
        return done[name]

    return get


def weighted_mean(replies: list[tuple[int, dict[str, np.ndarray]]]) -> dict[str, np.ndarray]:
    total = sum(n for n, _ in replies)
    return {k: sum(n * arrays[k] for n, arrays in replies) / total for k in replies[0][1]}


def stacked(replies: list[tuple[int, dict[str, np.ndarray]]], key: str) -> np.ndarray:
    return np.stack([arrays[key] for _, arrays in replies])


def expected_round(name: str, sent: dict, replies: list, state: dict, t: int) -> dict:
    """The strategy's update rule, written out (Flower 1.42's conventions: FedAdam's bias
    correction uses t + 1; FedAdagrad has beta_1 = 0; FedAvgM's first momentum is the
    pseudo-gradient itself)."""
    mean = weighted_mean(replies)
    if name in ("fedavg", "fedprox"):
        return mean
    if name == "fedmedian":
        return {k: np.median(stacked(replies, k), axis=0) for k in sent}
    if name == "fedtrimmedavg":  # 3 clients, cut 1 at each end: the middle value
        return {k: np.sort(stacked(replies, k), axis=0)[1] for k in sent}
    if name == "fedavgm":
        opts = OPTIONS[name]
        for k in sent:
            grad = sent[k] - mean[k]
            state[k] = grad if k not in state else opts["server_momentum"] * state[k] + grad
        return {k: sent[k] - opts["server_lr"] * state[k] for k in sent}
    opts = {"beta_1": 0.0, "beta_2": 0.0, **OPTIONS[name]}
    b1, b2, eta, tau = opts["beta_1"], opts["beta_2"], opts["server_lr"], opts["tau"]
    if name == "fedadam":
        eta = eta * np.sqrt(1 - b2 ** (t + 1)) / (1 - b1 ** (t + 1))
    out = {}
    for k in sent:
        delta = mean[k] - sent[k]
        m = b1 * state.get(("m", k), 0.0) + (1 - b1) * delta
        v = state.get(("v", k), np.zeros_like(delta))
        if name == "fedadam":
            v = b2 * v + (1 - b2) * delta**2
        elif name == "fedyogi":
            v = v - (1 - b2) * delta**2 * np.sign(v - delta**2)
        else:  # fedadagrad
            v = v + delta**2
        state[("m", k)], state[("v", k)] = m, v
        out[k] = sent[k] + eta * m / (np.sqrt(v) + tau)
    return out


def global_tensors(run_dir: Path, server_round: int) -> dict[str, np.ndarray]:
    path = run_dir / "checkpoints" / f"round-{server_round}" / "global.safetensors"
    return {k: v.double().numpy() for k, v in load_file(str(path)).items()}


def test_every_registered_strategy_is_covered():
    assert set(OPTIONS) == set(STRATEGIES)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_strategy_runs_and_aggregates_by_its_rule(name, runs, setup):
    result, grid = runs(name)
    run_dir = setup["root"] / name
    assert result.stop_reason == "completed" and result.summary["rounds"] == 2
    assert (run_dir / "model" / "tunelab_method.json").is_file()
    state: dict = {}
    for t in (1, 2):
        sent, replies = grid.rounds[t]["sent"], grid.rounds[t]["replies"]
        assert len(replies) == 3
        got = global_tensors(run_dir, t)
        want = expected_round(name, sent, replies, state, t)
        assert got.keys() == sent.keys()
        for key in sent:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)
        assert any(not np.allclose(got[k], sent[k]) for k in sent)  # the round moved it
        if t == 2:  # round 2 starts from round 1's global
            assert all(np.allclose(sent[k], global_tensors(run_dir, 1)[k]) for k in sent)
    if name in ("fedmedian", "fedtrimmedavg"):  # robust: not the mean of the clients
        mean = weighted_mean(grid.rounds[1]["replies"])
        assert any(not np.allclose(global_tensors(run_dir, 1)[k], mean[k]) for k in mean)


def test_fedprox_keeps_clients_closer_to_the_global_model(runs):
    def drift(name: str) -> float:  # how far round 1's clients moved from the global
        rnd = runs(name)[1].rounds[1]
        sent = rnd["sent"]
        return sum(
            float(np.sum((arrays[k] - sent[k]) ** 2)) for _, arrays in rnd["replies"] for k in sent
        )

    assert runs("fedavg")[1].rounds[1]["sent"].keys() == runs("fedprox")[1].rounds[1]["sent"].keys()
    assert drift("fedprox") < drift("fedavg")


# --- a client dying mid-round ------------------------------------------------------------


def test_a_client_crashing_mid_round_fails_keeps_earlier_rounds_and_resumes(setup, runs):
    raw = run_raw(setup, "fedavg-crash")
    run_dir = Path(raw["output"]["dir"])
    with pytest.raises(TunelabError, match=r"^round 2: client 1: out of memory; earlier rounds"):
        serve(raw, LoopbackGrid(3, crash={(1, 2): "out of memory"}))
    assert (run_dir / "checkpoints" / "round-1" / "global.safetensors").is_file()
    assert not (run_dir / "checkpoints" / "round-2").exists()
    result = serve(raw, LoopbackGrid(3), resume=None)  # as `tunelab federated CONFIG` again
    assert result.stop_reason == "completed"
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["round"] for r in logged if r["type"] == "train"] == [1, 2]
    runs("fedavg")  # the same run, uninterrupted
    uninterrupted = global_tensors(setup["root"] / "fedavg", 2)
    resumed = global_tensors(run_dir, 2)
    assert all(np.allclose(resumed[k], uninterrupted[k], atol=1e-7) for k in resumed)


def test_a_client_crashing_with_skip_is_left_out_of_the_round(setup, flower_ids):
    raw = run_raw(setup, "fedavg-skip", on_client_failure="skip")
    grid = LoopbackGrid(3, crash={(0, 2): "segfault in the data loader"})
    result = serve(raw, grid)
    assert result.stop_reason == "completed"
    run_dir = Path(raw["output"]["dir"])
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    (second,) = [r for r in logged if r["type"] == "train" and r["round"] == 2]
    assert second["clients"] == 2 and second["failed_clients"] == 1
    fed = json.loads((run_dir / "train_summary.json").read_text())["federated"]
    assert fed["history"][1]["failures"] == ["client 0: segfault in the data loader"]
    assert len(grid.rounds[2]["replies"]) == 2  # the mean of the two that answered
    want = weighted_mean(grid.rounds[2]["replies"])
    got = global_tensors(run_dir, 2)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6)
