"""Round checkpoints: ``RUN_DIR/checkpoints/round-N/`` after every completed round.

Each holds, without pickle: ``global.safetensors`` (the global trainable tensors after the
round), ``strategy.safetensors`` (the strategy's server state, e.g. FedAdam's moments,
FedAvgM's momentum) and ``state.json`` (round, early stopping, the federated hash, the
per-round history). Written atomically (:func:`tunelab.io.atomic_dir`); the last
``train.keep_last`` rounds and the best round are kept.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.federated.strategies import STRATEGIES
from tunelab.io import atomic_dir, atomic_write_json
from tunelab.train.checkpoint import checkpoints_dir, config_hash

ROUND_DIR = re.compile(r"^round-(\d+)$")
# federated.* keys that do not change the weights of a round already taken
UNHASHED = ("engine", "client_cpus", "client_gpus", "round_timeout_s", "on_client_failure")


def federated_hash(cfg: RunConfig) -> str:
    """Hash of what fixes every round's result: the training config and ``federated``."""
    fed = cfg.federated.model_dump(mode="json", exclude=set(UNHASHED))
    text = json.dumps([config_hash(cfg), fed], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def round_dirs(run_dir: Path) -> dict[int, Path]:
    """The complete round checkpoints, by round."""
    folder = checkpoints_dir(run_dir)
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        match = ROUND_DIR.match(path.name)
        if match and (path / "state.json").is_file():
            found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def strategy_state(strategy: Any) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays of the strategy's server state, and the shape of each attribute."""
    inner = getattr(strategy, "strategy", strategy)  # a DP wrapper holds the strategy
    spec = next(s for s in STRATEGIES.values() if type(inner).__name__ == s.flower_class)
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for attr in spec.state:
        value = getattr(inner, attr, None)
        if isinstance(value, dict):
            kinds[attr] = "dict"
            arrays.update({f"{attr}/{k}": np.ascontiguousarray(v) for k, v in value.items()})
        elif isinstance(value, list):
            kinds[attr] = "list"
            arrays.update({f"{attr}/{i}": np.ascontiguousarray(v) for i, v in enumerate(value)})
    return arrays, kinds


def load_strategy_state(
    strategy: Any, arrays: dict[str, np.ndarray], kinds: dict[str, str]
) -> None:
    """Put saved server state back into ``strategy``."""
    inner = getattr(strategy, "strategy", strategy)
    for attr, kind in kinds.items():
        items = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{attr}/")}
        if kind == "dict":
            setattr(inner, attr, items)
        else:
            setattr(inner, attr, [items[str(i)] for i in range(len(items))])


def save_round(
    run_dir: Path,
    server_round: int,
    arrays: Any,
    strategy: Any,
    state: dict[str, Any],
    keep: set[int],
    keep_last: int,
) -> None:
    """Write ``checkpoints/round-N`` and prune older rounds (keeping ``keep``)."""
    server, kinds = strategy_state(strategy)
    with atomic_dir(checkpoints_dir(run_dir) / f"round-{server_round}") as tmp:
        save_file(
            {k: np.ascontiguousarray(a.numpy()) for k, a in arrays.items()},
            str(tmp / "global.safetensors"),
        )
        save_file(server or {"_": np.zeros(1)}, str(tmp / "strategy.safetensors"))
        atomic_write_json(
            tmp / "state.json", {**state, "round": server_round, "strategy_state": kinds}
        )
    rounds = list(round_dirs(run_dir))
    for old in rounds[:-keep_last]:
        if old not in keep:
            shutil.rmtree(round_dirs(run_dir)[old], ignore_errors=True)


def load_round(path: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """The global tensors (an ``ArrayRecord``), strategy arrays and state of a round."""
    from flwr.app import Array, ArrayRecord

    tensors = load_file(str(path / "global.safetensors"))
    arrays = ArrayRecord({k: Array.from_numpy_ndarray(v) for k, v in tensors.items()})
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return arrays, load_file(str(path / "strategy.safetensors")), state


def resume_round(cfg: RunConfig, resume: bool | None) -> Path | None:
    """The round checkpoint to resume from (None: start fresh); refuses another config's."""
    if resume is False:
        return None
    rounds = round_dirs(cfg.run_dir)
    if not rounds:
        if resume:
            raise TunelabError(f"--resume: no round checkpoint in {checkpoints_dir(cfg.run_dir)}")
        return None
    latest = rounds[max(rounds)]
    stored = json.loads((latest / "state.json").read_text(encoding="utf-8"))
    if stored.get("federated_hash") != federated_hash(cfg):
        raise TunelabError(
            f"{latest} was written by another federated config (model, data, method, train or "
            "federated settings changed); restore them, or pass --no-resume to start over"
        )
    return latest
