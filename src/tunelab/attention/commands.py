"""``tunelab attention``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tunelab.cli_args import console


def attention(
    source: Annotated[Path, typer.Argument(help="A trained run directory, or a run config.")],
    text: Annotated[str, typer.Option("--text", help="The input to read the attention over.")],
    layer: Annotated[
        int | None, typer.Option("--layer", help="Only this layer (default: all; -1: last).")
    ] = None,
    head: Annotated[
        int | None, typer.Option("--head", help="Only this head (default: all, and their mean).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="HTML file (default: attention.html in the run dir)."),
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", help="Causal LM: tokens to generate first.")
    ] = 16,
    base: Annotated[
        bool, typer.Option("--base/--no-base", help="Show the base model beside a run's.")
    ] = True,
) -> None:
    """Attention maps per layer and head, and their rollout, as an HTML page."""
    from tunelab.attention.api import attention as run_attention
    from tunelab.attention.api import default_page

    out = out or default_page(source)
    result = run_attention(source, text, out, layer, head, max_new_tokens, base)
    first = result.maps[0]
    layers, heads = first.weights.shape[:2]
    extra = f" + {result.generated} generated" if result.generated else ""
    console.print(
        f"attention of {', '.join(m.label for m in result.maps)}: {layers} layers x {heads} "
        f"heads over {result.prompt_tokens} tokens{extra}; wrote {out}",
        soft_wrap=True,
    )
