"""One table comparing several runs: the headline metric, trainable parameters, artifact
size, training time, peak memory and inference latency, the best of each column marked.

:func:`comparison_rows` gives the same numbers as dicts (for ``sweep.json`` / CSV).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunelab.metric_catalog import infer_mode
from tunelab.report.page import Page, note
from tunelab.report.rundata import RunData
from tunelab.report.sections.summary import dir_size_mb

# headline metric of eval_results.json, first present wins
HEADLINE = ("accuracy", "f1_macro", "qa_f1", "rougeL", "bleu", "exact_match", "perplexity")
# column key -> header; lower is better for every one after "value"
COLUMNS = {
    "run": "run",
    "task": "task",
    "method": "method",
    "metric": "metric",
    "value": "value",
    "trainable_params": "trainable params",
    "artifact_size_mb": "artifact (MiB)",
    "train_time_s": "train time (s)",
    "peak_memory_mb": "peak memory (MB)",
    "latency_p50_ms": "latency p50 (ms/example)",
}
LOWER_IS_BETTER = ("trainable_params", "artifact_size_mb", "train_time_s", "peak_memory_mb",
                   "latency_p50_ms")  # fmt: skip


def headline(run: RunData) -> tuple[str | None, float | None]:
    """(metric name, value): the test metric of eval_results.json, else the best validation."""
    metrics = (run.eval_results or {}).get("metrics") or {}
    for name in HEADLINE:
        if isinstance(metrics.get(name), int | float):
            return name, float(metrics[name])
    summary = run.summary or {}
    if summary.get("best_metric") is not None:
        return summary.get("best_metric_name"), float(summary["best_metric"])
    evals = run.eval_rows()
    if evals and isinstance(evals[-1].get("eval_loss"), int | float):
        return "eval_loss (last)", float(evals[-1]["eval_loss"])
    return None, None


def comparison_row(run: RunData) -> dict[str, Any]:
    """The comparison numbers of one run (None where the run has not produced them)."""
    metrics = (run.eval_results or {}).get("metrics") or {}
    summary = run.summary or {}
    name, value = headline(run)
    memory = summary.get("peak_memory_mb")
    if memory is None and run.train_rows():
        memory = run.train_rows()[-1].get("memory_mb")
    size = metrics.get("artifact_size_mb")
    return {
        "run": run.name,
        "task": run.task,
        "method": ((run.config or {}).get("method") or {}).get("name"),
        "metric": name,
        "value": value,
        "trainable_params": summary.get("trainable_params", metrics.get("trainable_params")),
        "artifact_size_mb": size if size is not None else dir_size_mb(run.path / "model"),
        "train_time_s": summary.get("wall_time_s"),
        "peak_memory_mb": memory,
        "latency_p50_ms": metrics.get("latency_p50_ms"),
    }


def comparison_rows(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """:func:`comparison_row` of every run."""
    return [comparison_row(run) for run in runs]


def best_cells(rows: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(row, column) of the best value of each numeric column; the metric's best only among
    runs scored on the same metric (and only where two or more are)."""
    keys = list(COLUMNS)
    best: set[tuple[int, int]] = set()
    for key in LOWER_IS_BETTER:
        best |= pick(rows, key, range(len(rows)), "min", keys.index(key))
    for metric in {r["metric"] for r in rows if r["metric"]}:
        group = [i for i, r in enumerate(rows) if r["metric"] == metric]
        mode = infer_mode(metric)
        if len(group) > 1 and mode:
            best |= pick(rows, "value", group, mode, keys.index("value"))
    return best


def pick(rows: list[dict[str, Any]], key: str, among: Any, mode: str, column: int) -> set:
    """The cells holding the min/max of ``key`` over the rows ``among`` (ties all marked)."""
    values = {i: rows[i][key] for i in among if isinstance(rows[i][key], int | float)}
    if len(values) < 2:
        return set()
    target = min(values.values()) if mode == "min" else max(values.values())
    return {(i, column) for i, v in values.items() if v == target}


def render(runs: Sequence[RunData], page: Page) -> str:
    rows = comparison_rows(runs)
    parts = []
    tasks = {r["task"] for r in rows if r["task"]}
    if len(tasks) > 1:
        parts.append(note(
            f"these runs mix tasks ({', '.join(sorted(tasks))}): their metrics are not "
            "comparable, so a metric's best is marked only among runs scored on that metric"
        ))  # fmt: skip
    table_rows = [[row[k] for k in COLUMNS] for row in rows]
    parts.append(page.table(list(COLUMNS.values()), table_rows, best_cells(rows),
                            text_columns=4, name="comparison"))  # fmt: skip
    parts.append(
        '<p class="muted">best values are highlighted (metric: by its direction; '
        "parameters, size, time, memory and latency: lowest)</p>"
    )
    return "".join(parts)
