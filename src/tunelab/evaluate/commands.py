"""``tunelab eval`` and ``tunelab compare-prompting``."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.cli_args import ConfigArg, OverridesArg, console, load_run_config


def evaluate(
    target: Annotated[str, typer.Argument(help="A run directory or a run config.")],
    overrides: OverridesArg = None,
    split: Annotated[
        str | None, typer.Option(help="Split to evaluate (default: eval.split, i.e. test).")
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="Task of a multi-task run (default: every task).")
    ] = None,
) -> None:
    """Evaluate a run (or the base model of a config) on a split."""
    from tunelab.evaluate import evaluate as run_eval

    run_eval(target, split=split, overrides=overrides or [], console=console, task=task)


def compare_prompting(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Evaluate the base model zero-shot and k-shot beside the fine-tuned run."""
    from tunelab.evaluate import compare_prompting as run_compare

    run_compare(load_run_config(config, overrides), console=console)
