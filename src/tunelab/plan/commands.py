"""``tunelab plan CONFIG``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console, err_console, load_run_config


def plan(
    config: ConfigArg,
    overrides: OverridesArg = None,
    memory_budget: Annotated[
        str | None,
        typer.Option(
            help="Memory to fit in, e.g. 6GB or 800MB (default: what the device has free)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
    method: Annotated[
        list[str] | None,
        typer.Option("--method", help="Plan only this method (repeatable), e.g. lora+nf4."),
    ] = None,
    probe: Annotated[
        bool, typer.Option("--probe", help="Run a few real steps per method to measure time.")
    ] = False,
) -> None:
    """Estimate peak memory and time of every method, precision, checkpointing and batch."""
    from tunelab.plan.planner import build_plan
    from tunelab.plan.report import nothing_fits, plan_json, print_plan

    cfg = load_run_config(config, overrides)
    quiet = as_json
    note = None if quiet else err_console.print
    result = build_plan(cfg, memory_budget, probe, note, methods=method)
    if as_json:
        typer.echo(json.dumps(plan_json(result), indent=1))
    else:
        print_plan(result, console)
    if not result.fitting():
        raise nothing_fits(result)
