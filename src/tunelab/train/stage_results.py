"""What a staged run leaves in ``RUN_DIR`` besides its stages' folders: ``model/`` (the last
stage's artifact), ``metrics.jsonl`` (every stage's records, each with its ``stage``),
``train_summary.json`` (totals plus one entry per stage), the final evaluation and the model
card. Written by the main process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tunelab.config import RunConfig
from tunelab.io import atomic_dir, atomic_write_json, atomic_write_text
from tunelab.train.monitor import METRICS_FILE, print_summary
from tunelab.train.run import TrainResult

SUMMED = ("wall_time_s", "steps", "input_tokens", "loss_tokens", "skipped_steps")
STAGE_KEYS = (
    "method",
    "steps",
    "wall_time_s",
    "stop_reason",
    "best_metric_name",
    "best_metric",
    "best_step",
    "trainable_params",
    "total_params",
)


def join_metrics(run_dir: Path, stage_dirs: list[Path]) -> None:
    """``RUN_DIR/metrics.jsonl``: the stages' records in order (each names its stage)."""
    lines = []
    for folder in stage_dirs:
        path = folder / METRICS_FILE
        if path.is_file():
            lines += [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    atomic_write_text(Path(run_dir) / METRICS_FILE, "".join(f"{line}\n" for line in lines))


def finish_run(
    cfg: RunConfig, stages: dict[str, RunConfig], stages_hash: str, console: Console
) -> TrainResult:
    """After the last stage (``stages``: name -> its config, in order): the run's artifact,
    summary, evaluation, model card and ``report.html``."""
    stage_cfgs = list(stages.values())
    summaries = [{**read_summary(c.run_dir), "method": c.method.name} for c in stage_cfgs]
    summary = staged_summary(list(stages), summaries)
    summary["config_hash"] = stages_hash
    final_metrics = None
    if os.environ.get("RANK", "0") == "0":
        link_tree(stage_cfgs[-1].run_dir / "model", cfg.run_dir / "model")
        if stage_cfgs[-1].task_names:  # data.tasks: each task's run folder too
            link_tree(stage_cfgs[-1].run_dir / "tasks", cfg.run_dir / "tasks")
        atomic_write_json(cfg.run_dir / "train_summary.json", summary)
        print_stages(console, summary["stages"])
        print_summary(console, summary, cfg.run_dir)
        if cfg.eval.at_end:  # with the prompting baseline when eval.prompting_baseline is set
            from tunelab.evaluate import evaluate

            final_metrics = evaluate(cfg.run_dir, console=console)
        elif cfg.eval.prompting_baseline:
            from tunelab.evaluate import compare_prompting

            compare_prompting(cfg, console=console)
        write_card(cfg, stage_cfgs[-1], summary, final_metrics)
        if cfg.output.report:  # every stage's curves on one page, boundaries drawn
            from tunelab.report.live import update_run_report

            update_run_report(cfg.run_dir, live=False, console=console)
    return TrainResult(
        cfg.run_dir, cfg.run_dir / "model", summary["stop_reason"], summary["steps"],
        summary["best_metric"], summary["best_step"], summary, final_metrics,
    )  # fmt: skip


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "train_summary.json").read_text(encoding="utf-8"))


def staged_summary(names: list[str], summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's summary: the last stage's numbers (its artifact is the run's), totals over
    the stages, and ``stages``: name, method, steps, time, best metric, trainable params."""
    last = summaries[-1]
    summary = {**last, **{key: sum(s[key] for s in summaries) for key in SUMMED}}
    del summary["method"]
    train_time = sum(s["input_tokens"] / max(s["tokens_per_s"], 1e-9) for s in summaries)
    summary["tokens_per_s"] = summary["input_tokens"] / max(train_time, 1e-9)
    summary["peak_memory_mb"] = max(s["peak_memory_mb"] for s in summaries)
    summary["stages"] = [
        {"name": name, **{key: s.get(key) for key in STAGE_KEYS}}
        for name, s in zip(names, summaries, strict=True)
    ]
    return summary


def link_tree(source: Path, target: Path) -> None:
    """Replace ``target`` with a copy of ``source`` made of hard links where the disk allows."""

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    with atomic_dir(target) as tmp:
        shutil.copytree(source, tmp, copy_function=link, dirs_exist_ok=True)


def print_stages(console: Console, stages: list[dict[str, Any]]) -> None:
    """One row per stage: steps, time, best metric and trainable parameters."""
    table = Table(title="stages")
    for column in ("stage", "steps", "time", "best", "trainable params", "stopped"):
        table.add_column(column)
    for s in stages:
        best = s["best_metric"]
        table.add_row(
            s["name"],
            str(s["steps"]),
            f"{s['wall_time_s']:.1f} s",
            f"{s['best_metric_name']} {best:.4f}" if best is not None else "n/a",
            f"{s['trainable_params']:,} / {s['total_params']:,}",
            s["stop_reason"],
        )
    console.print(table)


def write_card(
    cfg: RunConfig, last: RunConfig, summary: dict[str, Any], metrics: dict[str, Any] | None
) -> None:
    """``RUN_DIR/README.md``: the last stage's card (its base is the previous hand-off) with
    the run's stages listed."""
    from tunelab.methods import write_model_card

    best = {summary["best_metric_name"]: summary["best_metric"]}
    card_cfg = last.for_task(last.task_names[0]) if last.task_names else last
    card_cfg = card_cfg.model_copy(update={"output": cfg.output})
    path = write_model_card(cfg.run_dir, card_cfg, {**best, **(metrics or {})})
    rows = [
        f"- {s['name']}: {s['steps']} steps, best {s['best_metric_name']} {s['best_metric']}"
        for s in summary["stages"]
    ]
    text = path.read_text(encoding="utf-8").rstrip("\n")
    atomic_write_text(path, f"{text}\n\n## Stages\n\n" + "\n".join(rows) + "\n")
