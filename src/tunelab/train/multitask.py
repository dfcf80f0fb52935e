"""Training on ``data.tasks``: per-task data, the task-homogeneous batches, per-task losses,
validation and results.

Each task is prepared as a run of its own (:meth:`RunConfig.for_task`: the task's data block,
``output.dir`` = ``RUN_DIR/tasks/NAME``). Classification tasks share one encoder with one
head per task (:mod:`tunelab.train.task_heads`); causal-LM tasks share the whole model.
After training every task gets a complete one-task run folder, ``RUN_DIR/tasks/NAME/``
(``config.yaml``, ``model/``, ``data_report.json``, ``eval_results.json``), which ``eval``,
``predict`` and ``export`` use through ``--task NAME``; ``RUN_DIR/model/tunelab_tasks.json``
lists them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from tunelab.config import RunConfig, dump_config
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_json
from tunelab.task_runs import TASKS_FILE
from tunelab.train.collate import PadCollator
from tunelab.train.loop import TrainData
from tunelab.train.objective import Batch, LossFn
from tunelab.train.rows import training_rows
from tunelab.train.sampler import LengthGroupedBatchSampler
from tunelab.train.task_heads import active_task, build_multihead, head_children, task_view
from tunelab.train.task_sampler import TaskBatchSampler, mixing_probabilities
from tunelab.train.validate import make_validator, validation_loader

Metrics = dict[str, float]


def prepare_tasks(cfg: RunConfig, tokenizer: Any) -> dict[str, Any]:
    """Every task's prepared data (``RUN_DIR/tasks/NAME/data_report.json``), and the combined
    report in ``RUN_DIR/data_report.json``."""
    from tunelab.data import prepare_data

    prepared = {name: prepare_data(cfg.for_task(name), tokenizer) for name in cfg.task_names}
    report = {"tasks": {name: data.report for name, data in prepared.items()}}
    atomic_write_json(cfg.run_dir / "data_report.json", report)
    return prepared


def task_runs(cfg: RunConfig, prepared: Any) -> list[tuple[RunConfig, Any]]:
    """``(config, prepared data)`` of every task; the run itself when it has one dataset."""
    if isinstance(prepared, dict):
        return [(cfg.for_task(name), data) for name, data in prepared.items()]
    return [(cfg, prepared)]


def task_labels(prepared: dict[str, Any]) -> dict[str, list[str]] | None:
    """Each classification task's label names (None for causal-LM tasks)."""
    labels = {name: data.label_names for name, data in prepared.items()}
    return labels if all(v is not None for v in labels.values()) else None


def load_multihead(cfg: RunConfig, labels: dict[str, list[str]]) -> nn.Module:
    """The shared encoder with one head per task (see :func:`head_source`)."""
    from tunelab.models import load_model

    models = {}
    for name, names in labels.items():
        source, keep = head_source(cfg.model.name_or_path, name, names)
        model = load_model(cfg.model.model_copy(update={"name_or_path": source}), cfg.task, names)
        if not keep:
            for head in head_children(model):
                for module in getattr(model, head).modules():
                    model._init_weights(module)
        models[name] = model
    return build_multihead(models)


def head_source(base: str, task: str, labels: list[str]) -> tuple[str, bool]:
    """Where task ``task``'s head comes from: ``(model path, keep its head)``.

    A base model that is one task's export of a multi-task run (``tunelab export RUN OUT``:
    ``OUT/NAME`` per task, or a stage's hand-off) lends each task the head of the export of
    the same name; a base whose labels are exactly ``labels`` keeps its head (a one-task
    stage before, or any classifier trained on these labels); any other task gets a freshly
    initialised head. The shared encoder is the base's (every export of a run holds the same).
    """
    from tunelab.paths import resolve_path

    path = resolve_path(base)
    if not (path / "config.json").is_file():  # a hub id: its head is as it comes
        return base, True
    sibling = path.parent / task
    exported = (path / "tunelab_export.json").is_file()
    if exported and sibling != path and (sibling / "tunelab_export.json").is_file():
        return str(sibling), _labels_of(sibling) == labels
    return base, _labels_of(path) == labels


def _labels_of(folder: Path) -> list[str] | None:
    """The label names in a model folder's ``config.json`` (None without them)."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    id2label = config.get("id2label") or {}
    return [id2label[k] for k in sorted(id2label, key=int)] or None


def multitask_data(
    cfg: RunConfig, prepared: dict[str, Any], model: nn.Module, pad_token_id: int, accelerator: Any
) -> TrainData:
    """The tasks' training rows end to end, drawn one task per batch by the mixing rule."""
    rows: list[Any] = []
    samplers, sizes = [], []
    collate: Any = None
    for index, name in enumerate(cfg.task_names):
        task_cfg = cfg.for_task(name)
        task_rows, collate, lengths = training_rows(
            task_cfg, prepared[name].splits["train"], model, pad_token_id
        )
        rows.extend({**row, "task": index} for row in task_rows)
        sizes.append(len(prepared[name].splits["train"]))
        samplers.append(
            LengthGroupedBatchSampler(
                lengths,
                cfg.train.batch_size,
                seed=cfg.train.seed + 7919 * index,
                group_by_length=cfg.train.group_by_length,
                rank=accelerator.process_index,
                world_size=accelerator.num_processes,
            )
        )
    data = cfg.data
    weights = [t.weight for t in data.tasks]
    probs = mixing_probabilities(sizes, data.mixing, weights, data.temperature)
    sampler = TaskBatchSampler(samplers, probs, cfg.train.seed)
    return TrainData(rows, TaskCollator(collate), sampler, cfg.train.num_workers)  # type: ignore[arg-type]


class TaskCollator:
    """A collate function that adds the batch's task index (``task``: one per batch)."""

    def __init__(self, inner: Callable[[list[Any]], Batch]) -> None:
        self.inner = inner

    def __call__(self, rows: list[Any]) -> dict[str, Any]:
        import torch

        tasks = {row["task"] for row in rows}
        if len(tasks) != 1:
            raise TunelabError(f"a batch mixes tasks {sorted(tasks)}; batches hold one task")
        batch = dict(self.inner([{k: v for k, v in r.items() if k != "task"} for r in rows]))
        batch["task"] = torch.tensor([tasks.pop()])
        return batch


def task_loss(cfg: RunConfig, base: LossFn) -> LossFn:
    """``base`` run with the batch's task head active, times that task's ``loss_weight``."""
    names = cfg.task_names
    weights = [t.loss_weight for t in cfg.data.tasks]

    def loss(model: nn.Module, batch: Batch) -> tuple[Any, int]:
        index = int(batch["task"][0])
        inputs = {k: v for k, v in batch.items() if k != "task"}
        with active_task(names[index]):
            value, items = base(model, inputs)
        return value * weights[index], items

    return loss


def task_validator(
    cfg: RunConfig, prepared: dict[str, Any], pad_token_id: int, device: Any
) -> Callable[[nn.Module], Metrics] | None:
    """Validation of every task with a validation split: ``eval_NAME_<metric>`` per task and
    ``eval_<metric>``, the unweighted mean over the tasks."""
    batch_size = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
    runs = {}
    for name, data in prepared.items():
        if "validation" in data.splits:
            loader = validation_loader(
                data.splits["validation"], PadCollator(pad_token_id), batch_size
            )
            runs[name] = make_validator(loader, cfg.task, device)
    if not runs:
        return None

    def run(model: nn.Module) -> Metrics:
        metrics: Metrics = {}
        per_task: dict[str, Metrics] = {}
        for name, validate in runs.items():
            with active_task(name):
                per_task[name] = validate(model)
            for key, value in per_task[name].items():
                metrics[f"eval_{name}_{key.removeprefix('eval_')}"] = value
        for key in next(iter(per_task.values())):
            values = [m[key] for m in per_task.values()]
            metrics[key] = math.fsum(values) / len(values)
        return metrics

    return run


def save_task_results(
    cfg: RunConfig,
    model: nn.Module,
    tokenizer: Any,
    prepared: dict[str, Any],
    console: Console,
) -> dict[str, Any]:
    """One one-task run folder per task (config, artifact, final eval), and the task list in
    ``RUN_DIR/model/tunelab_tasks.json``; returns each task's final metrics (``eval.at_end``)."""
    from tunelab.methods import save_artifact, write_model_card

    labels = task_labels(prepared)
    final: dict[str, Any] = {}
    entries = []
    for name in cfg.task_names:
        task_cfg = cfg.for_task(name)
        names = labels[name] if labels else None
        dump_config(task_cfg, task_cfg.run_dir / "config.yaml")
        with task_view(model, name, names) if names else nullcontext(model) as view:
            save_artifact(view, task_cfg, task_cfg.run_dir / "model", tokenizer, names)
            if cfg.eval.at_end:
                from tunelab.evaluate import evaluate_model

                console.print(f"task {name}:")
                final[name] = evaluate_model(
                    task_cfg, view, tokenizer, prepared[name], console=console
                )
        write_model_card(task_cfg.run_dir, task_cfg, final.get(name))
        entries.append({"name": name, "path": f"tasks/{name}", "label_names": names})
    atomic_write_json(cfg.run_dir / "model" / TASKS_FILE, {"task": cfg.task, "tasks": entries})
    if final:
        atomic_write_json(cfg.run_dir / "eval_results.json", {"tasks": final})
    return {f"{name}_{key}": value for name, res in final.items() for key, value in res.items()}
