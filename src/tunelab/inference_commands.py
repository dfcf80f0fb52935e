"""``tunelab predict``: the command over ``tunelab.inference.predict_cli``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console


def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    input: Annotated[
        str | None, typer.Option("--input", help="A text, or a .txt/.jsonl file.")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="An image file (image_classification).")
    ] = None,
    adapter: Annotated[
        str | None, typer.Option(help="Name of the LoRA adapter to activate.")
    ] = None,
    task: Annotated[str | None, typer.Option(help="Task of a multi-task run.")] = None,
) -> None:
    """Run the trained model on text (or an image): a label with probabilities, or generated
    text."""
    from tunelab.inference import predict_cli

    media = {key: value for key, value in {"image": image}.items() if value is not None}
    predict_cli(run_dir, input, adapter=adapter, console=console, task=task, media=media)
