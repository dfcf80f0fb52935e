"""``tunelab serve`` and ``tunelab chat``: the commands over ``tunelab.serving``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.errors import TunelabError

RunArg = Annotated[
    Path, typer.Argument(help="Run directory, its model/ folder, or a tunelab export folder.")
]
AdapterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--adapter",
        help="NAME=RUN_DIR (a LoRA run or PEFT adapter folder) served as model NAME; "
        "a bare NAME takes RUN_DIR/adapters/NAME. Repeat for more.",
    ),
]


def parse_adapters(run_dir: Path, values: list[str] | None) -> dict[str, Path]:
    """``--adapter`` values as {name: folder}."""
    from tunelab.inference import resolve_adapter

    adapters: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if sep and not (name and path):
            raise TunelabError(f"--adapter {value!r}: expected NAME=RUN_DIR")
        name, folder = (name, Path(path)) if sep else resolve_adapter(run_dir, value)
        if name in adapters:
            raise TunelabError(f"--adapter {name}: given twice")
        adapters[name] = folder
    return adapters


def serve(
    run_dir: RunArg,
    adapter: AdapterOpt = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one, printed).")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="TUNELAB_API_KEY",
            help="Require Authorization: Bearer KEY on every route but /health.",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Model name of the run (default: its folder's name).")
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(help="The most new tokens a request may ask for.")
    ] = 512,
    max_queue: Annotated[int, typer.Option(help="Queued requests before 503.")] = 64,
    max_batch: Annotated[int, typer.Option(help="Rows decoded together.")] = 16,
    drain_seconds: Annotated[
        float, typer.Option(help="On SIGTERM, how long in-flight requests may take to finish.")
    ] = 60.0,
) -> None:
    """Serve a run over an OpenAI-compatible HTTP API (chat, completions, classify)."""
    from tunelab.serving.app import ServeSettings
    from tunelab.serving.server import serve as run_server

    settings = ServeSettings(
        api_key=api_key or None, max_tokens=max_tokens, max_queue=max_queue, max_batch=max_batch
    )
    adapters = parse_adapters(run_dir, adapter)
    run_server(run_dir, adapters, host, port, settings, name, drain_seconds, say=_say)


def chat(
    run_dir: RunArg,
    adapter: AdapterOpt = None,
    max_tokens: Annotated[int, typer.Option(help="The most new tokens per reply.")] = 128,
    temperature: Annotated[float, typer.Option(help="0: greedy (default).")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
) -> None:
    """Chat with a run in the terminal (/reset, /adapter NAME, /models, /exit)."""
    from tunelab.decoding import Sampling
    from tunelab.serving.chat import chat_cli

    chat_cli(
        run_dir, parse_adapters(run_dir, adapter), max_tokens, Sampling(temperature, top_p, seed)
    )


def _say(text: str) -> None:
    print(text, flush=True)  # the address line is read by scripts: no buffering
