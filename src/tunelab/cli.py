"""The ``tunelab`` command line, built from a table: command name -> where its code lives.

Each command family's code sits in the module that owns it (``tunelab.data.commands``,
``tunelab.train.commands``...); a new command is one function there plus one line in
``COMMANDS``. Command modules import torch and transformers only inside their bodies, so
``tunelab validate`` and ``tunelab schema`` answer instantly.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Annotated

import typer
from rich.text import Text

from tunelab.allocator import relaunch_with_allocator
from tunelab.cli_args import err_console
from tunelab.errors import TunelabError

# name -> "module:function" (a command) or "module:app" (a sub-app of commands), in the
# order ``tunelab --help`` lists them (sub-apps come after the commands).
COMMANDS: dict[str, str] = {
    "validate": "tunelab.config_commands:validate",
    "schema": "tunelab.config_commands:schema",
    "data": "tunelab.data.commands:app",
    "plan": "tunelab.plan.commands:plan",
    "train": "tunelab.train.commands:train",
    "federated": "tunelab.federated.commands:federated",
    "eval": "tunelab.evaluate.commands:evaluate",
    "compare-prompting": "tunelab.evaluate.commands:compare_prompting",
    "export": "tunelab.export_commands:export",
    "predict": "tunelab.inference_commands:predict",
    "doctor": "tunelab.doctor.commands:doctor",
    "tune": "tunelab.tune.commands:tune",
    "report": "tunelab.report.commands:report",
    "attention": "tunelab.attention.commands:attention",
    "sweep": "tunelab.sweep.commands:sweep",
    "serve": "tunelab.serving.commands:serve",
    "chat": "tunelab.serving.commands:chat",
}

_state = {"debug": False}


def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False,
) -> None:
    _state["debug"] = debug
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not debug:  # library deprecation notices are not the user's problem
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)


def build_app(commands: dict[str, str]) -> typer.Typer:
    """The Typer app with each entry of ``commands`` as a command or a sub-app."""
    built = typer.Typer(
        name="tunelab",
        help="Fine-tune pretrained models end to end: data, methods, training, evaluation, export.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    built.callback()(_main)
    for name, target in commands.items():
        module, attribute = target.split(":")
        entry = getattr(importlib.import_module(module), attribute)
        if isinstance(entry, typer.Typer):
            built.add_typer(entry, name=name)
        else:
            built.command(name)(entry)
    return built


app = build_app(COMMANDS)


def console_main() -> None:
    """The ``tunelab`` console script: restart under jemalloc where found, then run."""
    try:
        relaunch_with_allocator(sys.argv)
    except TunelabError as exc:
        err_console.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
        sys.exit(2)
    main()


def main() -> None:
    """Run the CLI in this process: user errors print one or two lines and exit 2."""
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
