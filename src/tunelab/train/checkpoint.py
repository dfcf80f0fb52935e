"""Atomic training checkpoints: ``RUN_DIR/checkpoints/step-N/``.

A checkpoint holds, all without pickle:

- ``trainable.safetensors``: the trainable weights (``tunelab.methods.trainable_state_dict``)
- ``optimizer.safetensors`` + ``optimizer.json``: optimizer tensors, and its scalars/groups
- ``rng.safetensors``: torch (and CUDA) RNG states
- ``state.json``: step, epoch, batch position, seed, config hash, loop counters, early
  stopping, scheduler, loss scaler, python and numpy RNG states

Each is written into a temporary sibling directory renamed into place at the end
(:func:`tunelab.io.atomic_dir`), so a crash never leaves a ``step-N`` that resume would load.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from safetensors.torch import load_file, save_file
from torch import nn

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.io import atomic_dir

STEP_DIR = re.compile(r"^step-(\d+)$")
STATE_FILE = "state.json"
# train.* keys that do not change the trajectory of the weights: resume may change them.
UNHASHED_TRAIN_KEYS = (
    "eval_every",
    "save_every",
    "keep_last",
    "log_every",
    "report_to",
    "num_workers",
    "eval_batch_size",
    "compile",
    "early_stopping",
)
# settings (and the sections below them) that resume may change: they alter no step already taken
RESUMABLE_KEYS = (
    *(f"train.{key}" for key in UNHASHED_TRAIN_KEYS),
    "train.max_steps",  # extend (the LR schedule is recomputed for the new total)
    "train.epochs",
    "data.cache_dir",
    "model.cache_dir",
    "eval",
)
SETTINGS_SECTIONS = {"model", "data", "method", "train", "eval"}
SHOWN_CHANGES = 4  # changed keys named in full in a refusal


def config_hash(cfg: RunConfig, leave_out: set[str] | frozenset[str] = frozenset()) -> str:
    """Hash of the training-relevant config (model, data, method, train minus logging keys),
    without the dotted keys ``leave_out`` (see :func:`earlier_hash`)."""
    relevant = cfg.model_dump(mode="json", include={"model", "data", "method", "train"})
    for key in UNHASHED_TRAIN_KEYS:
        relevant["train"].pop(key)
    for dotted in leave_out:
        *parents, name = dotted.split(".")
        node = relevant
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(name, None)
    text = json.dumps(relevant, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def added_at_default(model: BaseModel, saved: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted names of ``model``'s fields missing from ``saved`` (its dump by an earlier
    tunelab) that hold their default: fields added since, which change nothing."""
    found: set[str] = set()
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in saved:
            if not field.is_required() and _jsonable(value) == _jsonable(
                field.get_default(call_default_factory=True)
            ):
                found.add(prefix + name)
        elif isinstance(value, BaseModel) and isinstance(saved[name], dict):
            found |= added_at_default(value, saved[name], f"{prefix}{name}.")
    return found


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, fallback=repr)


def saved_config(run_dir: Path) -> dict[str, Any] | None:
    """The ``config.yaml`` the last run in ``run_dir`` wrote (None if absent or unreadable)."""
    path = Path(run_dir) / "config.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def earlier_hash(cfg: RunConfig, run_dir: Path) -> str:
    """The hash the tunelab that trained ``run_dir`` gave ``cfg``: its saved config lacks the
    fields added since, and each of them at its default changes nothing."""
    saved = saved_config(run_dir)
    return config_hash(cfg, added_at_default(cfg, saved) if saved is not None else set())


def hash_matches(cfg: RunConfig, stored: Any, run_dir: Path) -> bool:
    """Whether ``stored`` (a hash ``run_dir`` recorded) is ``cfg``'s, allowing for fields
    added at their default since (:func:`earlier_hash`)."""
    return stored == config_hash(cfg) or stored == earlier_hash(cfg, run_dir)


def run_settings(cfg: RunConfig) -> dict[str, Any]:
    """The config's model, data, method, train and eval settings as flat dotted keys."""
    return flatten_settings(cfg.model_dump(mode="json", include=SETTINGS_SECTIONS))


def flatten_settings(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as flat dotted keys (``{'a': {'b': 1}}`` -> ``{'a.b': 1}``)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resumable(key: str) -> bool:
    """Whether resume may change setting ``key`` (it alters no step already taken)."""
    return any(key == k or key.startswith(f"{k}.") for k in RESUMABLE_KEYS)


def settings_changes(path: Path, cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (at the checkpoint, now)}`` for every setting ``cfg`` changes since ``path``.

    Raises a TunelabError naming the changed keys when one of them alters the steps already
    taken (lr, batch size, seed, data, method, model...): only :data:`RESUMABLE_KEYS` may change.
    """
    state = read_state(path)
    stored = state.get("settings")
    if stored is None:  # written before checkpoints recorded their settings: compare hashes
        if not hash_matches(cfg, state.get("config_hash"), Path(path).parent.parent):
            raise _refusal(path, "")
        return {}
    changes = settings_diff(stored, cfg)
    refused = [
        f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items() if not resumable(key)
    ]
    if refused:
        more = len(refused) - SHOWN_CHANGES
        named = ", ".join(refused[:SHOWN_CHANGES]) + (f" and {more} more" if more > 0 else "")
        raise _refusal(path, f" ({named})")
    return changes


def settings_diff(stored: dict[str, Any], cfg: RunConfig) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored, now)}`` for the settings ``cfg`` changes since ``stored`` (flat
    :func:`run_settings`); a key ``stored`` lacks whose field is at its default (added to
    tunelab since) is no change."""
    now = run_settings(cfg)
    added = added_at_default(cfg, _nest(stored))
    return {
        key: (stored.get(key), now.get(key))
        for key in sorted(stored.keys() | now.keys())
        if stored.get(key) != now.get(key)
        and not (key not in stored and any(key == a or key.startswith(f"{a}.") for a in added))
    }


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Flat dotted keys back into nested dicts (a key under a non-dict value is dropped)."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, name = key.split(".")
        node: Any = nested
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node[name] = value
    return nested


def _refusal(path: Path, changed: str) -> TunelabError:
    return TunelabError(
        f"{path} was written with a different training config{changed}, which would change "
        "the steps already taken; restore it to resume, pass --no-resume to start over "
        "(deletes the checkpoints), or change output.dir"
    )


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (``step-N`` with a ``state.json``), oldest first."""
    root = checkpoints_dir(run_dir)
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        match = STEP_DIR.match(path.name)
        if match and (path / STATE_FILE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def read_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8"))


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    write: bool = True,
) -> Path:
    """Write a checkpoint of ``model``'s trainable weights, ``optimizer`` and ``state``.

    With FSDP every process calls this (weights and optimizer state are gathered whole);
    only the one with ``write=True`` (the main process) writes.
    """
    from tunelab.methods import trainable_state_dict

    weights = trainable_state_dict(model)
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    if not write:
        return Path(path)
    rng_tensors, rng_meta = capture_rng()
    with atomic_dir(path) as tmp:
        save_file(weights, str(tmp / "trainable.safetensors"))
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(meta), encoding="utf-8")
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        full_state = {**state, "rng": rng_meta}
        (tmp / STATE_FILE).write_text(json.dumps(full_state, indent=1), encoding="utf-8")
    return Path(path)


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Restore weights, optimizer and RNG states from ``path``; return its ``state.json``.

    With FSDP every process calls this and keeps its own shard of each tensor.
    """
    from tunelab.methods import load_trainable_state_dict

    path = Path(path)
    load_trainable_state_dict(model, load_file(str(path / "trainable.safetensors")))
    meta = json.loads((path / "optimizer.json").read_text(encoding="utf-8"))
    tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta, _optimizer_params(optimizer)))
    state = read_state(path)
    restore_rng(load_file(str(path / "rng.safetensors")), state["rng"])
    return state


def load_weights(path: Path, model: nn.Module) -> None:
    """Load only the trainable weights of a checkpoint into ``model``."""
    from tunelab.methods import load_trainable_state_dict

    load_trainable_state_dict(model, load_file(str(Path(path) / "trainable.safetensors")))


def prune_checkpoints(run_dir: Path, keep_last: int, keep_steps: set[int]) -> None:
    """Delete all but the newest ``keep_last`` checkpoints and those in ``keep_steps``."""
    found = list_checkpoints(run_dir)
    newest = {step for step, _ in found[-keep_last:]}
    for step, path in found:
        if step not in newest and step not in keep_steps:
            shutil.rmtree(path, ignore_errors=True)


def remove_partial(run_dir: Path) -> None:
    """Remove temporary directories left by a checkpoint write that never finished."""
    root = checkpoints_dir(run_dir)
    for path in root.glob(".step-*") if root.is_dir() else []:
        shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- optimizer


def _optimizer_params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The optimizer's parameters in state-dict order (its ids are positions in this list)."""
    return [p for group in optimizer.param_groups for p in group["params"]]


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into whole tensors (``pid.key``) and JSON metadata."""
    from tunelab.train.sharding import full_tensor

    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = full_tensor(value.detach()).cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    meta = {"param_groups": sd["param_groups"], "scalars": scalars, "pids": list(sd["state"])}
    return tensors, meta


def _unflatten_optimizer(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], params: list[torch.Tensor]
) -> dict:
    """The optimizer state dict again; state shaped like a sharded parameter is re-sharded."""
    from tunelab.train.sharding import shard_like

    state: dict[int, dict[str, Any]] = {int(pid): {} for pid in meta["pids"]}
    for name in sorted(tensors):  # the same order on every process (re-sharding is collective)
        pid, key = name.split(".", 1)
        value, param = tensors[name], params[int(pid)]
        state[int(pid)][key] = shard_like(value, param) if value.shape == param.shape else value
    for pid, values in meta["scalars"].items():
        state[int(pid)].update(values)
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ----------------------------------------------------------------------------- RNG


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch/CUDA RNG states as tensors; python and numpy states as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    meta = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
    }
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
