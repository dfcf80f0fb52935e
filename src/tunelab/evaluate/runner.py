"""``tunelab eval``: evaluate a trained run (or a config's base model) on a split.

Metrics accumulate batch by batch and predictions stream to ``predictions.jsonl``, so memory
stays bounded however large the split is. Results: ``eval_results.json`` (atomic; see scored).
"""

from __future__ import annotations

import json
import os
import random
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
from tunelab.evaluate.classification import ClassificationAccumulator, class_tables
from tunelab.evaluate.consistency import ConsistencyAccumulator, NliScorer
from tunelab.evaluate.diversity import DiversityAccumulator
from tunelab.evaluate.efficiency import LatencyMeter, efficiency_metrics
from tunelab.evaluate.generation import GenerationAccumulator
from tunelab.evaluate.language import Language, resolve_language
from tunelab.evaluate.perplexity import perplexity
from tunelab.evaluate.qa import QAAccumulator
from tunelab.evaluate.scored import results_dir, scored_model
from tunelab.io import atomic_write_json
from tunelab.metric_catalog import (
    GENERATION_METRICS,
    QA_METRICS,
    allowed_eval_metrics,
    eval_metrics_problem,
)
from tunelab.train.collate import PadCollator

if TYPE_CHECKING:
    from tunelab.data import PreparedData

_TENSOR_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def evaluate(
    target: str | Path,
    split: str | None = None,
    overrides: Sequence[str] = (),
    console: Console | None = None,
) -> dict[str, Any]:
    """Evaluate ``target`` on ``split`` (default ``eval.split``); return the metrics.

    ``target`` is a run directory (``config.yaml`` + ``model/``: the trained model is
    evaluated and results are written there) or a run config YAML (its base model is
    evaluated, results go to ``output.dir/eval_base/``).
    """
    from tunelab.data import prepare_data
    from tunelab.models import load_model, load_tokenizer

    path = Path(target)
    if path.is_dir():
        if not (path / "config.yaml").is_file():
            raise TunelabError(f"{path}: not a run directory (no config.yaml)")
        from tunelab.inference import load

        cfg = load_config(path / "config.yaml", [f"output.dir={path}", *overrides])
        cfg = with_stored_rendering(cfg, path / "model")  # render as the model was trained
        check_metrics(cfg)
        loaded = load(path)
        model, tokenizer, fine_tuned = loaded.model, loaded.tokenizer, True
        prepared = prepare_data(cfg, tokenizer)
    elif path.is_file():
        cfg = load_config(path, list(overrides))
        check_metrics(cfg)
        tokenizer = load_tokenizer(cfg.model)
        prepared = prepare_data(cfg, tokenizer)
        model, fine_tuned = load_model(cfg.model, cfg.task, prepared.label_names), False
    else:
        raise TunelabError(f"{path}: no such run directory or config file")
    results = evaluate_model(
        cfg, model, tokenizer, prepared, split=split, console=console, fine_tuned=fine_tuned
    )
    if cfg.eval.prompting_baseline:
        from tunelab.evaluate.prompting import compare_prompting

        compare_prompting(cfg, console=console)
    return results


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
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    latency = LatencyMeter()
    started = time.perf_counter()
    with prediction_writer(out / "predictions.jsonl") as writer:
        if cfg.task == "classification":
            results = run_classification(
                model, tokenizer, dataset, examples, prepared, cfg, writer, latency, device
            )
        else:
            results = run_causal_lm(
                model, tokenizer, dataset, examples, metrics, cfg, writer, latency, device
            )
    model.train(was_training)
    if "efficiency" in metrics:
        from tunelab.paths import resolve_path

        base_dir = resolve_path(cfg.model.name_or_path)
        run_dir = out if fine_tuned else None
        results.update(efficiency_metrics(latency, model, base_dir, run_dir))
    results = {k: v for k, v in results.items() if _wanted(k, metrics)}
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


def check_metrics(cfg: RunConfig) -> set[str]:
    """The metrics to compute: ``eval.metrics`` (checked against the task) or the defaults."""
    if cfg.eval.metrics is None:
        chosen = set(allowed_eval_metrics(cfg.task, cfg.data.format))
        if "meteor" in chosen and not _wordnet_ready():
            chosen.discard("meteor")
        return chosen
    problem = eval_metrics_problem(cfg.task, cfg.data.format, cfg.eval.metrics)
    if problem:
        raise TunelabError(problem)
    chosen = set(cfg.eval.metrics)
    if "meteor" in chosen:
        from tunelab.evaluate.wordnet_setup import require_wordnet

        require_wordnet()
    return chosen


def _wordnet_ready() -> bool:
    from tunelab.evaluate.wordnet_setup import SETUP_COMMAND, wordnet_available

    if wordnet_available():
        return True
    Console(stderr=True).print(
        f"[yellow]meteor skipped: WordNet is not installed (run `{SETUP_COMMAND}`)[/]"
    )
    return False


# metric family -> result keys it produces
_KEYS = {
    "accuracy": ("accuracy",),
    "f1": ("f1_macro", "f1_macro_labels", "f1_micro", "per_class"),
    "auc": ("auc", "auc_classes_skipped"),
    "confusion_matrix": ("confusion_matrix", "labels"),
    "perplexity": ("loss", "perplexity"),
    "bleu": ("bleu",),
    "rouge": ("rouge1", "rouge2", "rougeL"),
    "meteor": ("meteor",),
    "exact_match": ("exact_match",),
    "qa_f1": ("qa_f1",),
    "diversity": ("distinct_1", "distinct_2", "self_bleu"),
    "consistency": ("consistency", "consistency_scored", "consistency_nli"),
}


def _wanted(key: str, metrics: set[str]) -> bool:
    if key == "language":
        return True
    for family, keys in _KEYS.items():
        if key in keys:
            return family in metrics
    return "efficiency" in metrics


def limited_rows(
    prepared: PreparedData, split: str, max_samples: int | None
) -> tuple[Any, list[dict[str, Any]]]:
    """The split's tokenised rows and canonical examples; at most ``max_samples`` of them.

    The subset is a seeded random sample (kept in split order), not the first rows, so it
    stays representative when a split is ordered by label.
    """
    dataset, examples = prepared.splits[split], prepared.examples[split]
    if max_samples is not None and max_samples < len(examples):
        chosen = sorted(random.Random(0).sample(range(len(examples)), max_samples))
        dataset, examples = dataset.select(chosen), [examples[i] for i in chosen]
    return dataset, examples


def tensor_batches(dataset: Any, batch_size: int, pad_token_id: int) -> Iterator[dict]:
    """Padded tensor batches of the tokenised rows, in order."""
    collate = PadCollator(pad_token_id)
    columns = [c for c in _TENSOR_COLUMNS if c in dataset.column_names]
    for start in range(0, len(dataset), batch_size):
        chunk = dataset[start : start + batch_size]
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*(chunk[c] for c in columns), strict=True)
        ]
        yield collate(rows)


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


def _write(fh: TextIO, record: dict[str, Any]) -> None:
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")


@torch.no_grad()
def run_classification(
    model: nn.Module,
    tokenizer: Any,
    dataset: Any,
    examples: list[dict[str, Any]],
    prepared: PreparedData,
    cfg: RunConfig,
    writer: TextIO,
    latency: LatencyMeter,
    device: torch.device,
) -> dict[str, Any]:
    """Batched forward passes; accuracy, F1, AUC and confusion matrix accumulated per batch."""
    names = prepared.label_names or [str(i) for i in range(model.config.num_labels)]
    acc = ClassificationAccumulator(len(names), names)
    index = 0
    for batch in tensor_batches(dataset, cfg.eval.batch_size, tokenizer.pad_token_id):
        labels = batch.pop("labels")
        start = time.perf_counter()
        logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
        latency.add(time.perf_counter() - start, len(labels))
        probs = acc.update(logits, labels)
        for row in probs:
            example = examples[index]
            _write(
                writer,
                {
                    "index": index,
                    "text": example["text"],
                    "text_pair": example.get("text_pair"),
                    "label": example["label"],
                    "prediction": names[int(row.argmax())],
                    "probabilities": {
                        n: round(float(p), 6) for n, p in zip(names, row, strict=True)
                    },
                },
            )
            index += 1
    return acc.compute()


def run_causal_lm(
    model: nn.Module,
    tokenizer: Any,
    dataset: Any,
    examples: list[dict[str, Any]],
    metrics: set[str],
    cfg: RunConfig,
    writer: TextIO,
    latency: LatencyMeter,
    device: torch.device,
) -> dict[str, Any]:
    """Teacher-forced perplexity, then batched generation scored against the references."""
    results: dict[str, Any] = {}
    if "perplexity" in metrics:
        results.update(split_perplexity(model, dataset, cfg.eval.batch_size, tokenizer, device))
    if not metrics & (GENERATION_METRICS | QA_METRICS):
        for index, example in enumerate(examples):
            _write(writer, {"index": index, "text": example.get("text")})
        return results
    rendering = Rendering.from_config(cfg.data, tokenizer)
    prompts = [render_prompt(rendering, tokenizer, ex["messages"]) for ex in examples]
    results.update(
        score_generations(
            model, tokenizer, prompts, examples, metrics, cfg, latency,
            add_special_tokens=rendering.renderer(tokenizer).add_special_tokens, writer=writer,
        )
    )  # fmt: skip
    return results


@torch.no_grad()
def split_perplexity(
    model: nn.Module, dataset: Any, batch_size: int, tokenizer: Any, device: torch.device
) -> dict[str, float]:
    """exp(sum of token NLL / loss tokens) over the split's tokenised rows."""
    return perplexity(model, tensor_batches(dataset, batch_size, tokenizer.pad_token_id), device)


def source_text(example: dict[str, Any]) -> str:
    """What an output should be consistent with: the context, else the non-assistant turns."""
    if example.get("context"):
        return example["context"]
    messages = example.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
    return "\n".join(m["content"] for m in messages[:last] if m["role"] != "assistant")


class GenerationScores:
    """Every generation metric in ``metrics``, accumulated batch by batch."""

    def __init__(self, metrics: set[str], language: Language, cfg: RunConfig, device: str) -> None:
        self.metrics = metrics
        self.language = language
        self.text = GenerationAccumulator(metrics & {"bleu", "rouge", "meteor"}, language)
        self.diversity = DiversityAccumulator(language, seed=cfg.train.seed)
        self.consistency = ConsistencyAccumulator()
        self.qa = QAAccumulator()
        use_nli = cfg.eval.nli_model and "consistency" in metrics
        self.nli = NliScorer(cfg.eval.nli_model, device) if use_nli else None
        self.nli_total = 0.0

    def update(
        self, outputs: list[str], examples: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Score a batch; returns each example's scores for ``predictions.jsonl``."""
        references = [ex["reference"] for ex in examples]
        sources = [source_text(ex) for ex in examples]
        rows: list[dict[str, Any]] = [{} for _ in outputs]
        if self.text.metrics:
            _merge(rows, self.text.update(outputs, references))
        if self.metrics & QA_METRICS:
            _merge(rows, self.qa.update(outputs, references))
        if "diversity" in self.metrics:
            self.diversity.update(outputs)
        if "consistency" in self.metrics:
            scores = self.consistency.update(outputs, sources)
            _merge(rows, [{"consistency": s} for s in scores])
        if self.nli is not None:
            scores = self.nli.score(outputs, sources)
            self.nli_total += sum(scores)
            _merge(rows, [{"consistency_nli": s} for s in scores])
        return rows

    def compute(self) -> dict[str, Any]:
        results: dict[str, Any] = {"language": self.language, **self.text.compute()}
        if self.metrics & QA_METRICS:
            results.update(self.qa.compute())
        if "diversity" in self.metrics:
            results.update(self.diversity.compute())
        if "consistency" in self.metrics:
            results.update(self.consistency.compute())
        if self.nli is not None:
            results["consistency_nli"] = self.nli_total / max(self.consistency.count, 1)
        return results


def _merge(rows: list[dict[str, Any]], scores: Sequence[dict[str, Any]]) -> None:
    for row, extra in zip(rows, scores, strict=True):
        row.update(extra)


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
    scores = GenerationScores(metrics, language, cfg, str(device))
    if cfg.eval.generation.do_sample:
        torch.manual_seed(cfg.train.seed)  # reproducible sampling
    size = cfg.eval.batch_size
    for start in range(0, len(prompts), size):
        batch, batch_prompts = examples[start : start + size], prompts[start : start + size]
        t0 = time.perf_counter()
        outputs, n_tokens = generate(model, tokenizer, batch_prompts, cfg, add_special_tokens)
        latency.add(time.perf_counter() - t0, len(batch), n_tokens)
        rows = scores.update(outputs, batch)
        for i, (ex, out, row) in enumerate(zip(batch, outputs, rows, strict=True)):
            if writer is not None:
                record = {"index": start + i, "prompt": batch_prompts[i]}
                _write(writer, {**record, "reference": ex["reference"], "prediction": out, **row})
    return scores.compute()


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    cfg: RunConfig,
    add_special_tokens: bool,
) -> tuple[list[str], int]:
    """Left-padded batched generation; returns the decoded new text and the new-token count."""
    from tunelab.inference import stop_token_ids

    g = cfg.eval.generation
    with _sides(tokenizer, padding="left", truncation="left"):
        enc = tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=cfg.data.max_length,
            return_tensors="pt",
            add_special_tokens=add_special_tokens,
        ).to(next(model.parameters()).device)
    stops = stop_token_ids(tokenizer)
    sampling = {"temperature": g.temperature, "top_p": g.top_p} if g.do_sample else {}
    out = model.generate(
        input_ids=enc["input_ids"],
        attention_mask=enc["attention_mask"],
        max_new_tokens=g.max_new_tokens,
        do_sample=g.do_sample,
        repetition_penalty=g.repetition_penalty,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
        **sampling,
    )
    new = out[:, enc["input_ids"].shape[1] :].tolist()
    texts, count = [], 0
    for row in new:
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        count += min(cut + 1, len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return texts, count


@contextmanager
def _sides(tokenizer: Any, padding: str, truncation: str) -> Iterator[None]:
    old = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side, tokenizer.truncation_side = padding, truncation
    try:
        yield
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old


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
