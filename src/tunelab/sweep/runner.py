"""``tunelab sweep``: every planned run trained in turn, each in its own process (so its
peak memory is its own), finished runs skipped, a stopped run resumed, the table kept
current after every run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelab.allocator import launch_env
from tunelab.errors import TunelabError
from tunelab.sweep.plan import PlannedRun, SweepPlan, plan_sweep
from tunelab.sweep.table import run_row, write_table
from tunelab.train.signals import StopRequest, stop_on_signals

FINISHED, SKIPPED, STOPPED, FAILED, PENDING = "finished", "skipped", "stopped", "failed", "pending"
REPORT = "report.html"  # the comparison of the sweep's runs


@dataclass
class SweepResult:
    """Where the sweep is, its rows (one per run, in order) and whether every run finished."""

    sweep_dir: Path
    rows: list[dict[str, Any]]

    @property
    def complete(self) -> bool:
        """True when every run has its trained model."""
        return all(row["status"] in (FINISHED, SKIPPED) for row in self.rows)


def sweep(
    config: str | Path,
    sets: list[str],
    out: str | Path | None = None,
    console: Console | None = None,
) -> SweepResult:
    """Train every combination of the ``--set`` values (``KEY=V1,V2,...``) of ``config``, one
    run folder each under ``out`` (default the config's ``output.dir``), one after another.

    Run again after a stop, it skips the finished runs and resumes the stopped one. A run
    that fails is recorded and the sweep goes on; SIGINT/SIGTERM stops the running one at
    a checkpoint and ends the sweep.
    """
    console = console or Console()
    plan = plan_sweep(config, sets, out)
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    status = {run.name: PENDING for run in plan.runs}
    console.print(f"sweep: {len(plan.runs)} run(s) in {plan.sweep_dir}", soft_wrap=True)
    with stop_on_signals() as stop:
        for i, run in enumerate(plan.runs, 1):
            if stop:
                break
            console.print(f"[bold]sweep run {i}/{len(plan.runs)}: {run.name}[/]", soft_wrap=True)
            status[run.name] = train_run(plan, run, stop, console)
            save(plan, status)
    result = save(plan, status)
    done = sum(row["status"] in (FINISHED, SKIPPED) for row in result.rows)
    report = comparison_report(plan, console)
    console.print(
        f"sweep: {done}/{len(plan.runs)} run(s) trained; table: {plan.sweep_dir / 'sweep.csv'}"
        + (f"; report: {report}" if report else ""),
        soft_wrap=True,
    )
    if stop:
        console.print("sweep stopped; run the same command again to resume it")
    return result


def train_run(plan: SweepPlan, run: PlannedRun, stop: StopRequest, console: Console) -> str:
    """Train one run in a child process (``tunelab train``); return how it ended."""
    from tunelab.train.run import finished_run

    if finished_run(run.cfg) is not None:
        console.print(f"{run.cfg.run_dir}: already trained, skipped", soft_wrap=True)
        return SKIPPED if evaluated(run, stop, console) else STOPPED
    overrides = [f"{key}={value}" for key, value in run.settings.items()]
    overrides.append(f"output.dir={run.cfg.run_dir}")
    command = [sys.executable, "-m", "tunelab.cli", "train", str(plan.config), *overrides]
    env = launch_env(os.environ) or dict(os.environ)  # the allocator `tunelab train` runs on
    # its own session: a terminal's Ctrl-C reaches the sweep, which passes one signal on
    proc = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        code = wait(proc, stop)
    finally:
        if proc.poll() is None:  # a second Ctrl-C: abort the run at once
            proc.kill()
            proc.wait()
    if finished_run(run.cfg) is not None and not stop:
        return FINISHED if evaluated(run, stop, console) else STOPPED
    if code == 0 or stop:  # stopped (at a checkpoint once training began)
        stop.signal_name = stop.signal_name or "SIGTERM"  # a signal sent to the run itself
        return STOPPED
    console.print(f"[red]sweep run {run.name} failed (exit status {code})[/]", soft_wrap=True)
    return FAILED


def evaluated(run: PlannedRun, stop: StopRequest, console: Console) -> bool:
    """Whether a trained run has its end-of-training evaluation (``eval.at_end``); a run
    stopped before it wrote ``eval_results.json`` is evaluated now (``tunelab eval``)."""
    cfg = run.cfg
    if not cfg.eval.at_end or cfg.task_names or (cfg.run_dir / "eval_results.json").is_file():
        return True
    console.print(f"{cfg.run_dir}: trained but not evaluated; evaluating", soft_wrap=True)
    command = [sys.executable, "-m", "tunelab.cli", "eval", str(cfg.run_dir)]
    proc = subprocess.Popen(command, env=launch_env(os.environ) or dict(os.environ))
    try:
        code = wait(proc, stop)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code == 0 and (cfg.run_dir / "eval_results.json").is_file()


def wait(proc: subprocess.Popen, stop: StopRequest) -> int:
    """Wait for ``proc``; pass the sweep's first stop signal on to it once."""
    passed = False
    while proc.poll() is None:
        if stop and not passed:
            proc.send_signal(getattr(signal, stop.signal_name or "SIGTERM"))
            passed = True
        time.sleep(0.1)
    return proc.returncode


def save(plan: SweepPlan, status: dict[str, str]) -> SweepResult:
    """Write the table as it stands; return it."""
    rows = [
        run_row(run.name, run.settings, run.cfg.run_dir, status[run.name],
                run.cfg.train.early_stopping.metric)
        for run in plan.runs
    ]  # fmt: skip
    header = {
        "config": str(plan.config),
        "sweep_dir": str(plan.sweep_dir),
        "sets": {k.key: k.values for k in plan.keys},
    }
    write_table(plan.sweep_dir, header, rows)
    return SweepResult(plan.sweep_dir, rows)


def comparison_report(plan: SweepPlan, console: Console) -> Path | None:
    """``SWEEP_DIR/report.html``: the comparison of every run that has started (a warning,
    not an error, when it cannot be written)."""
    from tunelab.errors import first_line
    from tunelab.report import write_report

    started = [run.cfg.run_dir for run in plan.runs if run.cfg.run_dir.is_dir()]
    if not started:
        return None
    try:
        return write_report(started, plan.sweep_dir / REPORT)
    except Exception as exc:  # the table is written; the report is a side output
        console.print(
            f"[yellow]warning:[/] {plan.sweep_dir / REPORT} not written "
            f"({type(exc).__name__}: {first_line(exc)})",
            soft_wrap=True,
        )
        return None


def require_complete(result: SweepResult) -> None:
    """Raise when a run failed (the CLI's exit status)."""
    failed = [row["run"] for row in result.rows if row["status"] == FAILED]
    if failed:
        raise TunelabError(f"sweep: run(s) {', '.join(failed)} failed; see their output above")
