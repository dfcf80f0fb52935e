"""Progress (live bar or plain lines), ``metrics.jsonl``, trackers and the end-of-run summary."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tunelab.errors import TunelabError
from tunelab.io import atomic_write_text

METRICS_FILE = "metrics.jsonl"
PLAIN_INTERVAL_S = 10.0  # shortest gap between two plain progress lines
# what training throughput counts (tunelab.modalities.registry.throughput_unit): label, format
RATE_LABELS = {"tokens": "tok/s", "examples": "ex/s"}
RATE_FORMATS = {"tokens": ",.0f", "examples": ".2f"}
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_trackers(report_to: list[str]) -> None:
    """Fail at start, with the install command, when a requested tracker is missing."""
    for name in report_to:
        if importlib.util.find_spec(TRACKER_PACKAGES[name]) is None:
            raise TunelabError(
                f"train.report_to lists {name}, but {name} is not installed; "
                f"`pip install {TRACKER_PACKAGES[name]}` or remove it from train.report_to"
            )


def peak_memory_mb() -> float:
    """Peak memory of this process: allocated GPU memory on CUDA, else peak RSS."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")  # a container's memory limit (cgroup v2)


def memory_limit_mb() -> float | None:
    """What the peak counts against: the CUDA device's memory, else the machine's RAM (or
    the container's limit when that is lower)."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / 2**20
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = CGROUP_LIMIT.read_text().strip()
    except OSError:
        limit = "max"
    return min(ram, int(limit) if limit.isdigit() else ram) / 2**20


def truncate_metrics(run_dir: Path, after_step: int) -> None:
    """Drop ``metrics.jsonl`` lines logged after ``after_step`` (work lost since a checkpoint).

    A half-written last line (a crash during the append) is dropped too; an unreadable line
    before it is an error naming the line. The file is rewritten atomically.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            if number == len(lines):
                break
            raise TunelabError(
                f"{path}:{number}: not a metrics record; delete that line to resume"
            ) from None
        if step <= after_step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))


class Monitor:
    """Logs to the progress display, ``metrics.jsonl`` and Accelerate's trackers (main process).

    On a terminal the progress is Rich's live bar; elsewhere (CI logs, ``> file``) it is whole
    plain lines (:class:`PlainProgress`). In a stage of a staged run (``stage``), every record
    carries ``"stage": NAME`` and tracker tags start with ``NAME/``. ``report(live)``,
    when given, rewrites the run's report after each validation (``live=True``) and once
    the loop ends (``live=False``).
    """

    def __init__(
        self,
        run_dir: Path,
        accelerator: Any,
        console: Console,
        total_steps: int,
        start: int,
        log_every: int = 1,
        stage: str | None = None,
        report: Callable[[bool], Any] | None = None,
        unit: str = "tokens",
    ) -> None:
        self.path = Path(run_dir) / METRICS_FILE
        self.stage = stage
        self.report = report if accelerator.is_main_process else None  # report(live)
        self.accelerator = accelerator
        self.main = accelerator.is_main_process
        self.console = console
        live = self.main and (console.is_interactive or console.is_jupyter)
        plain = self.main and not live
        self.plain = PlainProgress(console, total_steps, start, log_every, unit) if plain else None
        rate = f"{RATE_FORMATS[unit]}}} {RATE_LABELS[unit]}"  # the rest of a format field
        self.progress = Progress(
            TextColumn(f"[bold]{stage or 'train'}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]:.2f}  loss {task.fields[loss]:.4f}"),
            TextColumn("lr {task.fields[lr]:.2e}  {task.fields[tps]:" + rate),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not live,
        )
        self.task = self.progress.add_task(
            "train",
            total=total_steps,
            completed=start,
            epoch=0.0,
            loss=float("nan"),
            lr=0.0,
            tps=0.0,
        )

    def __enter__(self) -> Monitor:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.report is not None:  # whatever ended the loop, the page stops reloading
            self.report(False)

    def advance(self, step: int, record: dict[str, float]) -> None:
        """Move the progress to ``step`` showing the latest step's numbers."""
        self.progress.update(
            self.task,
            completed=step,
            epoch=record["epoch"],
            loss=record["loss"],
            lr=record["lr"],
            tps=record["tokens_per_s"],
        )
        if self.plain is not None:
            self.plain.advance(step, record)

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append ``{"type": kind, "step": step, **values}`` to metrics.jsonl and trackers."""
        if not self.main:
            return
        record = {"type": kind, "step": step, **values}
        if self.stage is not None:
            record["stage"] = self.stage
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        prefix = "train/" if kind == "train" else ""
        if self.stage is not None:
            prefix = f"{self.stage}/{prefix}"
        scalars = {
            f"{prefix}{k}": v
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        self.accelerator.log(scalars, step=step)
        if kind == "eval" and self.report is not None:
            self.report(True)

    def message(self, text: str) -> None:
        if self.main:
            self.console.print(text)


class PlainProgress:
    """Progress as whole lines, for output that is not a terminal.

    A line every ``log_every`` steps, at most one per ``PLAIN_INTERVAL_S`` seconds, and
    always for the first and the last step: ``step 10/150  epoch 0.07  loss 1.2340  ...``.
    """

    def __init__(
        self, console: Console, total_steps: int, start: int, log_every: int, unit: str = "tokens"
    ) -> None:
        self.console = console
        self.unit = unit
        self.total = total_steps
        self.start = start
        self.log_every = log_every
        self.started = time.monotonic()
        self.last_line: float | None = None

    def due(self, step: int, now: float) -> bool:
        """Whether ``step`` gets a line."""
        if step in (self.start + 1, self.total):
            return True
        recent = self.last_line is not None and now - self.last_line < PLAIN_INTERVAL_S
        return step % self.log_every == 0 and not recent

    def advance(self, step: int, record: dict[str, float]) -> None:
        now = time.monotonic()
        if not self.due(step, now):
            return
        self.last_line = now
        elapsed = now - self.started
        eta = elapsed / max(step - self.start, 1) * (self.total - step)
        line = (
            f"step {step}/{self.total}  epoch {record['epoch']:.2f}  loss {record['loss']:.4f}  "
            f"lr {record['lr']:.2e}  {rate_text(record['tokens_per_s'], self.unit, before=True)}  "
            f"elapsed {clock(elapsed)}  eta {clock(eta)}"
        )
        self.console.print(line, soft_wrap=True, markup=False, highlight=False)


def rate_text(rate: float, unit: str, before: bool = False) -> str:
    """A throughput with its unit (``1,234 tok/s``, ``1.25 ex/s``; ``before``: ``tok/s 1,234``)."""
    number = format(rate, RATE_FORMATS[unit])
    return f"{RATE_LABELS[unit]} {number}" if before else f"{number} {RATE_LABELS[unit]}"


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration."""
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def print_summary(console: Console, summary: dict[str, Any], run_dir: Path) -> None:
    """The end-of-run table: time, throughput, memory, best metric, artifacts."""
    table = Table(title="training summary", show_header=False)
    best = summary.get("best_metric")
    rows = [
        ("wall time", f"{summary['wall_time_s']:.1f} s"),
        ("steps", f"{summary['steps']}"),
        (
            "train throughput",
            rate_text(summary["tokens_per_s"], summary.get("throughput_unit", "tokens")),
        ),
        (
            "peak memory",
            f"{summary['peak_memory_mb']:,.0f} MB ({summary.get('allocator', 'system')} malloc)",
        ),
        ("trainable params", f"{summary['trainable_params']:,} / {summary['total_params']:,}"),
        (
            "best " + summary["best_metric_name"],
            f"{best:.4f} at step {summary['best_step']}" if best is not None else "n/a",
        ),
        *adjustment_rows(summary),
        ("final artifact", str(Path(run_dir) / "model")),
        ("run directory", str(run_dir)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def adjustment_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Summary rows for what the loop changed while training (none when nothing was)."""
    rows = []
    if summary.get("oom_adjustments"):
        first = summary["oom_adjustments"][0]["step"]
        rows.append((
            "out of memory",
            f"from step {first}: micro-batch {summary['micro_batch_size']} x accumulation "
            f"{summary['gradient_accumulation_steps']}",
        ))  # fmt: skip
    if summary.get("rollbacks"):
        steps = ", ".join(str(r["step"]) for r in summary["rollbacks"])
        rows.append(("rollbacks", f"at steps {steps}; LR x{summary['lr_scale']:g}"))
    return rows
