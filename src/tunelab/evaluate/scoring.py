"""Which registered metrics an evaluation computes, their scorers, and generation scoring.

Shared by the ``tunelab eval`` runner and the prompting baseline: the metrics come from the
registry (``tunelab.evaluate.registry``), one scorer per scorer factory, fed batch by batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

import torch
from rich.console import Console
from torch import nn

from tunelab.config import RunConfig
from tunelab.decoding import encode_prompts, generate
from tunelab.errors import TunelabError
from tunelab.evaluate.efficiency import LatencyMeter
from tunelab.evaluate.language import resolve_language
from tunelab.evaluate.registry import (
    METRICS,
    Scorer,
    ScoringContext,
    Stage,
    allowed_metrics,
    eval_metrics_problem,
    missing_reason,
)
from tunelab.modalities.registry import modality_for


def check_metrics(cfg: RunConfig) -> set[str]:
    """The metrics to compute: ``eval.metrics`` (checked against the task) or the defaults.

    A default metric this machine cannot compute (METEOR without WordNet) is skipped with a
    note; one listed in ``eval.metrics`` is an error naming what to install.
    """
    if cfg.eval.metrics is None:
        chosen = set()
        for metric in allowed_metrics(cfg.data.format):
            reason = missing_reason(metric.name) if metric.default else None
            if reason:
                Console(stderr=True).print(f"[yellow]{metric.name} skipped: {reason}[/]")
            elif metric.default:
                chosen.add(metric.name)
        return chosen
    problem = eval_metrics_problem(cfg.task, cfg.data.format, cfg.eval.metrics)
    if problem:
        raise TunelabError(problem)
    chosen = set(cfg.eval.metrics)
    for name in sorted(chosen):
        reason = missing_reason(name)
        if reason:
            raise TunelabError(reason)
    return chosen


def build_scorers(ctx: ScoringContext, stage: Stage) -> list[Scorer]:
    """One scorer per scorer factory of the chosen metrics fed at ``stage``."""
    factories = []
    for metric in METRICS.values():
        wanted = metric.name in ctx.metrics and metric.stage == stage
        if wanted and metric.scorer not in factories:
            factories.append(metric.scorer)
    return [factory(ctx) for factory in factories]


def kept(results: dict[str, Any], metrics: set[str]) -> dict[str, Any]:
    """The results the chosen metrics declare (and the generation ``language``)."""
    keys = {key for name in metrics for key in METRICS[name].keys}
    return {k: v for k, v in results.items() if k == "language" or k in keys}


def write_line(fh: TextIO, record: dict[str, Any]) -> None:
    """One JSON line of ``predictions.jsonl``."""
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")


def prompt_inputs(
    cfg: RunConfig,
    tokenizer: Any,
    prompts: Sequence[str],
    examples: Sequence[dict[str, Any]],
    add_special_tokens: bool,
) -> tuple[list[list[int]], dict[str, Any]]:
    """Prompt ids (and a modality's other inputs, e.g. images) of a generation batch."""
    modality = None if cfg.task_names else modality_for(cfg.data.format)
    if modality is not None:
        return modality.generation_inputs(tokenizer, list(prompts), list(examples))
    return encode_prompts(tokenizer, prompts, cfg.data.max_length, add_special_tokens), {}


def score_generations(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    examples: Sequence[dict[str, Any]],
    metrics: set[str],
    cfg: RunConfig,
    latency: LatencyMeter,
    add_special_tokens: bool,
    writer: TextIO | None = None,
) -> dict[str, Any]:
    """Generate for ``prompts`` batch by batch and score against ``examples``' references."""
    device = next(model.parameters()).device
    language = resolve_language(cfg.eval.language, (ex["reference"] for ex in examples[:1000]))
    ctx = ScoringContext(cfg, frozenset(metrics), model, str(device), latency, language=language)
    scorers = build_scorers(ctx, "generate")
    settings = cfg.eval.generation
    if settings.do_sample:
        torch.manual_seed(cfg.train.seed)  # reproducible sampling
    size = cfg.eval.batch_size
    for start in range(0, len(prompts), size):
        batch, batch_prompts = examples[start : start + size], prompts[start : start + size]
        t0 = time.perf_counter()
        ids, inputs = prompt_inputs(cfg, tokenizer, batch_prompts, batch, add_special_tokens)
        out = generate(model, tokenizer, ids, settings.max_new_tokens, settings, inputs=inputs)
        latency.add(time.perf_counter() - t0, len(batch), out.new_tokens)
        rows: list[dict[str, Any]] = [{} for _ in batch]
        for scorer in scorers:
            for row, extra in zip(rows, scorer.update(out.texts, batch) or rows, strict=True):
                row.update(extra)
        if writer is not None:
            for i, (ex, text, row) in enumerate(zip(batch, out.texts, rows, strict=True)):
                record = {"index": start + i, "prompt": batch_prompts[i]}
                write_line(
                    writer, {**record, "reference": ex["reference"], "prediction": text, **row}
                )
    results: dict[str, Any] = {"language": language}
    for scorer in scorers:
        results.update(scorer.compute())
    return results
