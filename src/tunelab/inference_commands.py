"""``tunelab predict``: the command over ``tunelab.inference.predict_cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console


def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    input: Annotated[str, typer.Option("--input", help="A text, or a .txt/.jsonl file.")],
    adapter: Annotated[
        str | None, typer.Option(help="Name of the LoRA adapter to activate.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task of a multi-task run.")] = None,
) -> None:
    """Run the trained model on text: a label with probabilities, or generated text."""
    from tunelab.inference import predict_cli

    predict_cli(run_dir, input, adapter=adapter, console=console, task=task)
