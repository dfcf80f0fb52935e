"""``tunelab eval``: evaluate a trained run (or a config's base model) on a split.

Metrics accumulate batch by batch and predictions stream to ``predictions.jsonl``, so memory
stays bounded however large the split is. Results: ``eval_results.json`` (atomic; see scored).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from tunelab.config import RunConfig, load_config
from tunelab.data.rendering import Rendering, render_prompt, with_stored_rendering
from tunelab.errors import TunelabError
from tunelab.evaluate.classification import class_tables, probabilities
from tunelab.evaluate.efficiency import LatencyMeter
from tunelab.evaluate.registry import METRICS, ScoringContext
from tunelab.evaluate.rows import limited_rows, tensor_batches
from tunelab.evaluate.scored import results_dir, scored_model
from tunelab.evaluate.scoring import (
    build_scorers,
    check_metrics,
    kept,
    score_generations,
    write_line,
)
from tunelab.io import atomic_write_json
from tunelab.modalities.registry import modality_for
from tunelab.task_runs import run_tasks, task_dir

if TYPE_CHECKING:
    from tunelab.data import PreparedData


def evaluate(
    target: str | Path,
    split: str | None = None,
    overrides: Sequence[str] = (),
    console: Console | None = None,
    task: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``target`` on ``split`` (default ``eval.split``); return the metrics.

    ``target`` is a run directory (``config.yaml`` + ``model/``: the trained model is
    evaluated and results are written there) or a run config YAML (its base model is
    evaluated, results go to ``output.dir/eval_base/``). With ``data.tasks``: ``task``, or
    every task, each in its folder ``RUN_DIR/tasks/NAME`` (returns ``{task: metrics}``).
    """
    path = Path(target)
    if path.is_dir() and (names := run_tasks(path)):
        chosen = [task_dir(path, task).name] if task else names
        results = {
            name: evaluate(path / "tasks" / name, split, overrides, console) for name in chosen
        }
        if task is None:
            atomic_write_json(path / "eval_results.json", {"split": split, "tasks": results})
        return results
    if path.is_dir():
        task_dir(path, task)  # --task on a one-task run: refused
        return _evaluate_run(path, split, overrides, console)
    if not path.is_file():
        raise TunelabError(f"{path}: no such run directory or config file")
    cfg = load_config(path, list(overrides))
    if cfg.task_names or task:
        chosen = [cfg.data.task(task).name] if task and cfg.task_names else cfg.task_names
        if not chosen:
            task_dir(cfg.run_dir, task)  # --task on a one-task config: refused
        return {name: _evaluate_base(cfg.for_task(name), split, console) for name in chosen}
    return _evaluate_base(cfg, split, console)


def _evaluate_run(
    path: Path, split: str | None, overrides: Sequence[str], console: Console | None
) -> dict[str, Any]:
    """Evaluate the trained model of the run directory ``path``."""
    from tunelab.data import prepare_data
    from tunelab.inference import load

    if not (path / "config.yaml").is_file():
        raise TunelabError(f"{path}: not a run directory (no config.yaml)")
    cfg = load_config(path / "config.yaml", [f"output.dir={path}", *overrides])
    cfg = with_stored_rendering(cfg, path / "model")  # render as the model was trained
    check_metrics(cfg)
    loaded = load(path)
    prepared = prepare_data(cfg, loaded.tokenizer)
    results = evaluate_model(
        cfg, loaded.model, loaded.tokenizer, prepared, split=split, console=console
    )
    _prompting(cfg, console)
    return results


def _evaluate_base(cfg: RunConfig, split: str | None, console: Console | None) -> dict[str, Any]:
    """Evaluate the base model of ``cfg`` (results in ``output.dir/eval_base``)."""
    from tunelab.data import prepare_data
    from tunelab.models import load_model, load_processor

    check_metrics(cfg)
    fmt = None if cfg.task_names else cfg.data.format
    tokenizer = load_processor(cfg.model, fmt, None if cfg.task_names else cfg.data)
    prepared = prepare_data(cfg, tokenizer)
    model = load_model(cfg.model, cfg.task, prepared.label_names, fmt=fmt)
    results = evaluate_model(
        cfg, model, tokenizer, prepared, split=split, console=console, fine_tuned=False
    )
    _prompting(cfg, console)
    return results


def _prompting(cfg: RunConfig, console: Console | None) -> None:
    if cfg.eval.prompting_baseline:
        from tunelab.evaluate.prompting import compare_prompting

        compare_prompting(cfg, console=console)


def evaluate_model(
    cfg: RunConfig,
    model: nn.Module,
    tokenizer: Any,
    prepared: PreparedData,
    split: str | None = None,
    out_dir: str | Path | None = None,
    console: Console | None = None,
    fine_tuned: bool = True,
) -> dict[str, Any]:
    """Evaluate an in-memory ``model`` on ``prepared.splits[split]``; return flat metrics.

    Args:
        cfg: the run config (``eval`` section: metrics, batch size, max samples, generation).
        model: a classifier or causal LM (plain or PEFT), already carrying the trained weights.
        tokenizer: its tokenizer.
        prepared: ``tunelab.data.prepare_data(cfg, tokenizer)``.
        split: split name; default ``cfg.eval.split``.
        out_dir: where the results go; default the run dir (base model: ``RUN_DIR/eval_base``).
        console: where the results table is printed (default: a new Console).
        fine_tuned: False when ``model`` is the untrained base model (no artifact size or
            training cost is reported).
    """
    console = console or Console()
    split = split or cfg.eval.split
    out = Path(out_dir) if out_dir is not None else results_dir(cfg, fine_tuned)
    if split not in prepared.splits:
        raise TunelabError(f"no {split!r} split; the data has: {', '.join(prepared.splits)}")
    metrics = check_metrics(cfg)
    dataset, examples = limited_rows(prepared, split, cfg.eval.max_samples)
    ctx = scoring_context(cfg, model, prepared, metrics, out if fine_tuned else None)
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    with prediction_writer(out / "predictions.jsonl") as writer:
        if cfg.task == "classification":
            results = run_classification(ctx, tokenizer, dataset, examples, writer)
        else:
            results = run_causal_lm(ctx, tokenizer, dataset, examples, writer)
    model.train(was_training)
    for scorer in build_scorers(ctx, "run"):
        results.update(scorer.compute())
    results = kept(results, metrics)
    record = {
        "split": split,
        "task": cfg.task,
        "model": scored_model(cfg, fine_tuned),
        "num_examples": len(examples),
        "eval_wall_time_s": time.perf_counter() - started,
        "metrics": results,
    }
    atomic_write_json(out / "eval_results.json", record)
    print_results(console, record)
    return results


def scoring_context(
    cfg: RunConfig,
    model: nn.Module,
    prepared: PreparedData,
    metrics: set[str],
    run_dir: Path | None,
) -> ScoringContext:
    """What the scorers of this evaluation get (``run_dir`` None: the untrained base model)."""
    names = prepared.label_names
    if cfg.task == "classification" and not names:
        names = [str(i) for i in range(model.config.num_labels)]
    device = str(next(model.parameters()).device)
    return ScoringContext(
        cfg, frozenset(metrics), model, device, LatencyMeter(), label_names=names, run_dir=run_dir
    )


@contextmanager
def prediction_writer(path: Path) -> Iterator[TextIO]:
    """Stream JSON lines to a temporary file; rename it to ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@torch.no_grad()
def run_classification(
    ctx: ScoringContext,
    tokenizer: Any,
    dataset: Any,
    examples: list[dict[str, Any]],
    writer: TextIO,
) -> dict[str, Any]:
    """Batched forward passes; the classify-stage metrics accumulated per batch."""
    names, device = ctx.label_names or [], torch.device(ctx.device)
    scorers = build_scorers(ctx, "classify")
    index = 0
    modality = modality_for(ctx.cfg.data.format)
    collate = modality.collator(tokenizer, ctx.cfg.data, train=False) if modality else None
    batch_size = ctx.cfg.eval.batch_size
    for batch in tensor_batches(dataset, batch_size, tokenizer.pad_token_id, collate):
        labels = batch.pop("labels")
        start = time.perf_counter()
        logits = ctx.model(**{k: v.to(device) for k, v in batch.items()}).logits
        ctx.latency.add(time.perf_counter() - start, len(labels))
        probs = probabilities(logits)
        for scorer in scorers:
            scorer.update(probs, labels)
        for row in probs:
            example = examples[index]
            write_line(
                writer,
                {
                    "index": index,
                    **{k: v for k, v in example.items() if k != "label"},
                    "label": example["label"],
                    "prediction": names[int(row.argmax())],
                    "probabilities": {
                        n: round(float(p), 6) for n, p in zip(names, row, strict=True)
                    },
                },
            )
            index += 1
    results: dict[str, Any] = {}
    for scorer in scorers:
        results.update(scorer.compute())
    return results


def run_causal_lm(
    ctx: ScoringContext,
    tokenizer: Any,
    dataset: Any,
    examples: list[dict[str, Any]],
    writer: TextIO,
) -> dict[str, Any]:
    """Teacher-forced metrics (perplexity), then batched generation scored against the
    references (only when a generation metric is chosen)."""
    cfg, model = ctx.cfg, ctx.model
    modality = modality_for(cfg.data.format)
    collate = modality.collator(tokenizer, cfg.data, train=False) if modality else None
    results = teacher_forced(ctx, dataset, tokenizer.pad_token_id, collate)
    if not any(METRICS[m].stage == "generate" for m in ctx.metrics):
        for index, example in enumerate(examples):
            write_line(writer, {"index": index, "text": example.get("text")})
        return results
    rendering = Rendering.from_config(cfg.data, tokenizer)
    prompts = [render_prompt(rendering, tokenizer, ex["messages"]) for ex in examples]
    results.update(
        score_generations(
            model, tokenizer, prompts, examples, set(ctx.metrics), cfg, ctx.latency,
            add_special_tokens=rendering.renderer(tokenizer).add_special_tokens, writer=writer,
        )
    )  # fmt: skip
    return results


@torch.no_grad()
def teacher_forced(
    ctx: ScoringContext, dataset: Any, pad_token_id: int, collate: Any = None
) -> dict[str, Any]:
    """The teacher-forced metrics over the split's tokenised rows, one batch at a time
    (``collate``: a modality's collator, e.g. with the images)."""
    scorers = build_scorers(ctx, "teacher_forced")
    if scorers:
        device = torch.device(ctx.device)
        for batch in tensor_batches(dataset, ctx.cfg.eval.batch_size, pad_token_id, collate):
            batch = {k: v.to(device) for k, v in batch.items()}
            for scorer in scorers:
                scorer.update(batch)
    results: dict[str, Any] = {}
    for scorer in scorers:
        results.update(scorer.compute())
    return results


def print_results(console: Console, record: dict[str, Any]) -> None:
    """A table of the scalar metrics; the confusion matrix and per-class table if there are."""
    table = Table(title=f"evaluation: {record['split']} ({record['num_examples']} examples)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
        elif isinstance(value, int | str) or value is None:
            table.add_row(key, str(value))
    console.print(table)
    for extra in class_tables(record["metrics"]):
        console.print(extra)
