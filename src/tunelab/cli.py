"""The ``tunelab`` command line. Each command is a thin wrapper over the Python API.

Heavy libraries (torch, transformers) are imported inside the commands, after the config
has been validated, so ``tunelab validate`` and ``tunelab schema`` answer instantly.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from tunelab.errors import TunelabError

app = typer.Typer(
    name="tunelab",
    help="Fine-tune pretrained models end to end: data, methods, training, evaluation, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Prepare and inspect a run's data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).")]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Overrides such as train.lr=1e-4 data.max_length=256."),
]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    _state["debug"] = debug
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not debug:  # library deprecation notices are not the user's problem
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def _load(config: Path, overrides: list[str] | None):
    from tunelab.config import load_config

    return load_config(config, overrides or [])


@app.command()
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a run config, its files, model and metrics; print OK or every problem (exit 2)."""
    from tunelab.preflight import check_run

    check_run(_load(config, overrides), err_console, source=str(config))
    console.print("OK")


@app.command()
def schema() -> None:
    """Print the JSON Schema of the run config."""
    from tunelab.config import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@data_app.command("prepare")
def data_prepare(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Load, clean, split and tokenise the data (cached); print the data report."""
    from tunelab.data import prepare_data, print_report
    from tunelab.preflight import check_data

    cfg = _load(config, overrides)
    check_data(cfg, source=str(config))
    prepared = prepare_data(cfg)
    print_report(prepared, console)


@data_app.command("inspect")
def data_inspect(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Print rows per split, labels, token-length percentiles and cleaning counts."""
    from tunelab.data import prepare_data, print_inspection

    cfg = _load(config, overrides)
    prepared = prepare_data(cfg)
    print_inspection(prepared, console)


@app.command()
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="Resume from the run directory's latest checkpoint (default: auto when the "
            "config matches).",
        ),
    ] = None,
) -> None:
    """Train a model as the config describes."""
    from tunelab.train import train as run_training

    cfg = _load(config, overrides)
    run_training(cfg, resume=resume, console=console)


@app.command("eval")
def evaluate(
    target: Annotated[str, typer.Argument(help="A run directory or a run config.")],
    overrides: OverridesArg = None,
    split: Annotated[
        str | None, typer.Option(help="Split to evaluate (default: eval.split, i.e. test).")
    ] = None,
) -> None:
    """Evaluate a run (or the base model of a config) on a split."""
    from tunelab.evaluate import evaluate as run_eval

    run_eval(target, split=split, overrides=overrides or [], console=console)


@app.command("compare-prompting")
def compare_prompting(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Evaluate the base model zero-shot and k-shot beside the fine-tuned run."""
    from tunelab.evaluate import compare_prompting as run_compare

    cfg = _load(config, overrides)
    run_compare(cfg, console=console)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    out: Annotated[Path, typer.Argument(help="Where to write the standalone model.")],
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an earlier tunelab export in OUT (never other files)."
        ),
    ] = False,
) -> None:
    """Write a standalone merged model that loads without tunelab (OUT: a new or empty folder)."""
    from tunelab.export import export_run

    export_run(run_dir, out, console=console, overwrite=overwrite)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory.")],
    input: Annotated[str, typer.Option("--input", help="A text, or a .txt/.jsonl file.")],
    adapter: Annotated[
        str | None, typer.Option(help="Name of the LoRA adapter to activate.")
    ] = None,
) -> None:
    """Run the trained model on text: a label with probabilities, or generated text."""
    from tunelab.inference import predict_cli

    predict_cli(run_dir, input, adapter=adapter, console=console)


def main() -> None:
    """Console-script entry point: user errors print one or two lines and exit 2."""
    try:
        app()
    except TunelabError as exc:
        if _state["debug"]:
            raise
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
