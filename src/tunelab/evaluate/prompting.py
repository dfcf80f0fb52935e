"""Prompting vs fine-tuning: the base model zero-shot and k-shot beside the fine-tuned run.

Classification with a causal LM: the prompt lists the label names and ends with ``Label:``;
the answer is the label whose tokens have the highest log-likelihood after the prompt (so it
is always a valid label). An encoder classifier has no LM head: prompting does not apply.
Generation formats: zero-shot uses each example's own prompt; k-shot puts ``eval.shots``
training conversations (drawn with ``train.seed``) before it. The fine-tuned row comes from
the run's ``eval_results.json`` and ``train_summary.json``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from tunelab.config import RunConfig
from tunelab.errors import TunelabError
from tunelab.evaluate.classification import ClassificationAccumulator
from tunelab.evaluate.efficiency import LatencyMeter, dir_size_mb, read_train_summary
from tunelab.evaluate.rows import limited_rows
from tunelab.evaluate.scoring import check_metrics, score_generations
from tunelab.io import atomic_write_json

RESULT_FILE = "prompting_comparison.json"


def task_metric(cfg: RunConfig) -> str:
    """The headline metric of the task: accuracy, qa_f1 (qa) or rougeL."""
    if cfg.task == "classification":
        return "accuracy"
    return "qa_f1" if cfg.data.format == "qa" else "rougeL"


def compare_prompting(cfg: RunConfig, console: Console | None = None) -> dict[str, Any]:
    """Evaluate the base model zero-shot and k-shot on ``eval.split``; write and print the table."""
    from tunelab.data import prepare_data
    from tunelab.models import load_model, load_tokenizer

    console = console or Console()
    if cfg.task_names:
        raise TunelabError(
            "compare-prompting takes one dataset; this config has data.tasks "
            f"({', '.join(cfg.task_names)}): give one task's data block as data"
        )
    metric = task_metric(cfg)
    record: dict[str, Any] = {"split": cfg.eval.split, "metric": metric, "rows": []}
    note = not_applicable(cfg)
    if note is None:
        tokenizer = load_tokenizer(cfg.model)
        prepared = prepare_data(cfg, tokenizer)
        if cfg.eval.split not in prepared.examples:
            raise TunelabError(
                f"no {cfg.eval.split!r} split; the data has: {list(prepared.examples)}"
            )
        model = load_model(cfg.model, "causal_lm").eval()
        shots = sorted({0, cfg.eval.shots})
        for k in shots:
            record["rows"].append(prompting_row(cfg, model, tokenizer, prepared, k, metric))
    else:
        record["note"] = note
    record["rows"].append(fine_tuned_row(cfg.run_dir, metric))
    atomic_write_json(cfg.run_dir / RESULT_FILE, record)
    print_comparison(console, record)
    return record


def not_applicable(cfg: RunConfig) -> str | None:
    """Why prompting cannot be compared for this config, or None when it can."""
    from transformers import AutoConfig

    from tunelab.models import check_task_fit, model_source

    if cfg.data.format == "text":
        return "prompting does not apply: plain-text data has no prompts or references"
    if cfg.task == "classification":
        config = AutoConfig.from_pretrained(model_source(cfg.model))
        try:
            check_task_fit(config, "causal_lm", cfg.model.name_or_path)
        except TunelabError:
            return (
                f"prompting does not apply: {cfg.model.name_or_path} ({config.model_type}) is an "
                "encoder classifier without a language-model head"
            )
    return None


def prompting_row(
    cfg: RunConfig, model: nn.Module, tokenizer: Any, prepared: Any, k: int, metric: str
) -> dict[str, Any]:
    """Metrics, wall time and latency of the base model prompted with ``k`` examples."""
    _, examples = limited_rows(prepared, cfg.eval.split, cfg.eval.max_samples)
    train = prepared.examples.get("train", [])
    shots = random.Random(cfg.train.seed).sample(train, min(k, len(train)))
    latency = LatencyMeter()
    started = time.perf_counter()
    if cfg.task == "classification":
        metrics = classify_by_likelihood(
            model, tokenizer, examples, shots, prepared.label_names, cfg, latency
        )
    else:
        from tunelab.data.rendering import Rendering, read_rendering

        stored = read_rendering(cfg.run_dir / "model")
        rendering = stored or Rendering.from_config(cfg.data, tokenizer)
        prompts = [few_shot_prompt(rendering, tokenizer, shots, ex) for ex in examples]
        metrics = score_generations(
            model, tokenizer, prompts, examples, check_metrics(cfg), cfg, latency,
            add_special_tokens=rendering.renderer(tokenizer).add_special_tokens,
        )  # fmt: skip
    timing = latency.compute()
    return {
        "setting": f"{k}-shot prompting",
        "value": metrics.get(metric),
        "wall_time_s": time.perf_counter() - started,
        "extra_artifact_mb": 0.0,
        "latency_p50_ms": timing.get("latency_p50_ms"),
        "metrics": metrics,
    }


def few_shot_prompt(
    rendering: Any, tokenizer: Any, shots: Sequence[dict[str, Any]], example: dict[str, Any]
) -> str:
    """The example's conversation rendered after the shots' conversations (no system turns),
    with the run's stored rendering (the one its fine-tuned model was trained with)."""
    from tunelab.data.rendering import render_prompt

    messages = [m for shot in shots for m in shot["messages"] if m["role"] != "system"]
    return render_prompt(rendering, tokenizer, messages + list(example["messages"]))


def classification_prompt(
    example: dict[str, Any], shots: Sequence[dict[str, Any]], label_names: Sequence[str]
) -> str:
    """Label names, the shots with their labels, then the text and ``Label:``."""

    def block(ex: dict[str, Any]) -> str:
        pair = f"\nText 2: {ex['text_pair']}" if ex.get("text_pair") else ""
        return f"Text: {ex['text']}{pair}\nLabel:"

    head = f"Classify the text. Answer with one of: {', '.join(label_names)}.\n\n"
    demos = "".join(f"{block(s)} {s['label']}\n\n" for s in shots)
    return head + demos + block(example)


@torch.no_grad()
def label_log_likelihoods(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    label_names: Sequence[str],
    max_length: int,
) -> torch.Tensor:
    """``[len(prompts), len(labels)]`` summed log-probabilities of `` label`` after each prompt."""
    device = next(model.parameters()).device
    label_ids = [tokenizer(f" {n}", add_special_tokens=False)["input_ids"] for n in label_names]
    room = max_length - max(len(ids) for ids in label_ids)
    seqs, spans = [], []
    for prompt in prompts:
        prompt_ids = tokenizer(prompt)["input_ids"][-room:]
        for ids in label_ids:
            seqs.append(prompt_ids + ids)
            spans.append((len(prompt_ids), len(ids)))
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, seq in enumerate(seqs):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    logprobs = F.log_softmax(
        model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float(), -1
    )
    scores = [
        logprobs[i, start - 1 : start - 1 + n]
        .gather(-1, input_ids[i, start : start + n, None].to(device))
        .sum()
        for i, (start, n) in enumerate(spans)
    ]
    return torch.stack(scores).view(len(prompts), len(label_names)).cpu()


def classify_by_likelihood(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[dict[str, Any]],
    shots: Sequence[dict[str, Any]],
    label_names: Sequence[str],
    cfg: RunConfig,
    latency: LatencyMeter,
) -> dict[str, Any]:
    """Pick the most likely label name for each example; accuracy, F1, AUC, confusion matrix."""
    acc = ClassificationAccumulator(len(label_names), list(label_names))
    index = {name: i for i, name in enumerate(label_names)}
    batch_size = max(1, cfg.eval.batch_size // len(label_names))
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        t0 = time.perf_counter()
        prompts = [classification_prompt(ex, shots, label_names) for ex in batch]
        scores = label_log_likelihoods(model, tokenizer, prompts, label_names, cfg.data.max_length)
        latency.add(time.perf_counter() - t0, len(batch))
        acc.update(scores.softmax(-1), [index[ex["label"]] for ex in batch])
    return acc.compute()


def fine_tuned_row(run_dir: Path, metric: str) -> dict[str, Any]:
    """The fine-tuned run's metric, training + evaluation wall time, artifact size, latency."""
    results_path = run_dir / "eval_results.json"
    if not results_path.is_file():
        return {"setting": "fine-tuned", "note": f"no {results_path}; run tunelab eval first"}
    results = json.loads(results_path.read_text(encoding="utf-8"))
    train_s = read_train_summary(run_dir).get("wall_time_s")
    eval_s = results.get("eval_wall_time_s")
    metrics = results.get("metrics", {})
    return {
        "setting": "fine-tuned",
        "value": metrics.get(metric),
        "wall_time_s": (train_s or 0.0) + (eval_s or 0.0),
        "train_wall_time_s": train_s,
        "extra_artifact_mb": dir_size_mb(run_dir / "model"),
        "latency_p50_ms": metrics.get("latency_p50_ms"),
    }


def print_comparison(console: Console, record: dict[str, Any]) -> None:
    """One row per setting: task metric, wall time, extra artifact size, latency."""
    if record.get("note"):
        console.print(f"[yellow]{record['note']}[/]")
    table = Table(title=f"prompting vs fine-tuning ({record['split']} split)")
    for name in (record["metric"], "wall time (s)", "extra artifact (MiB)", "latency p50 (ms)"):
        table.add_column(name, justify="right")
    table.add_column("setting", justify="left")
    for row in record["rows"]:
        cells = [
            row.get(k) for k in ("value", "wall_time_s", "extra_artifact_mb", "latency_p50_ms")
        ]
        table.add_row(
            *(_cell(c) for c in cells),
            row["setting"] + (f" ({row['note']})" if "note" in row else ""),
        )
    console.print(table)


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)
