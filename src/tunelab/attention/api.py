"""``tunelab attention``: read a run's (or a config's base model's) attention over a text and
write the page."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.attention.maps import AttentionMaps, read_attention
from tunelab.attention.page import page, payload
from tunelab.attention.source import Source, generated_ids, open_source, prompt_ids
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_text


@dataclass
class AttentionResult:
    """The attention of every model of a source over one input (fine-tuned first, then base).

    The input is ``prompt_tokens`` tokens of the text as the model sees it, followed (causal
    LM) by the ``generated`` tokens the fine-tuned model generated after it.
    """

    source: str
    text: str
    task: str
    prompt_tokens: int
    generated: int
    maps: list[AttentionMaps]


def read_attention_maps(
    source: str | Path | Source, text: str, max_new_tokens: int = 16, base: bool = True
) -> AttentionResult:
    """The attention maps of a run directory's fine-tuned model and (``base``) its base model,
    or of a config's base model, over ``text``; a causal LM first generates up to
    ``max_new_tokens`` tokens, and the maps cover the prompt and those tokens."""
    if not text.strip():
        raise TunelabError("--text is empty; give the text to read the attention over")
    opened = source if isinstance(source, Source) else open_source(source, base)
    return maps_over(opened, prompt_ids(opened, text), text, max_new_tokens)


def maps_over(opened: Source, prompt: list[int], text: str, max_new_tokens: int) -> AttentionResult:
    """Every model's maps over ``prompt`` and the tokens generated after it."""
    for label, model in opened.models:  # one token first: fail before generating
        read_attention(model, opened.tokenizer, prompt[:1], label, opened.name)
    new = generated_ids(opened, prompt, max_new_tokens)
    ids = prompt + new
    maps = [
        read_attention(model, opened.tokenizer, ids, label, opened.name)
        for label, model in opened.models
    ]
    return AttentionResult(opened.name, text, opened.task, len(prompt), len(new), maps)


def choose(option: str, wanted: int | None, count: int) -> list[int]:
    """The layer or head indices ``--layer``/``--head`` keep (all when None; negative counts
    from the end)."""
    if wanted is None:
        return list(range(count))
    if not -count <= wanted < count:
        raise TunelabError(
            f"{option} {wanted}: the model has {count} {option[2:]}s (0-{count - 1}, or -1 for "
            "the last)"
        )
    return [wanted % count]


def write_attention_page(
    results: list[AttentionResult],
    out: str | Path,
    layer: int | None = None,
    head: int | None = None,
) -> Path:
    """Write the page of ``results`` (one block each) to ``out``, atomically."""
    blocks = []
    for i, result in enumerate(results):
        layers, heads = result.maps[0].weights.shape[:2]
        chosen = (choose("--layer", layer, layers), choose("--head", head, heads))
        blocks.append(payload(result, f"attn{i}", *chosen))
    source = results[0].source if results else ""
    intro = (
        f"Attention weights of {source} (eager attention, read from the model's forward pass). "
        "Rows: the attending token; columns: the token attended to; «marked» tokens are special "
        "or virtual (prompt/prefix tuning). Rollout: Abnar &amp; Zuidema (2020)."
    )
    path = Path(out)
    atomic_write_text(path, page(blocks, f"Attention: {source}", intro))
    return path


def attention(
    source: str | Path,
    text: str,
    out: str | Path | None = None,
    layer: int | None = None,
    head: int | None = None,
    max_new_tokens: int = 16,
    base: bool = True,
) -> AttentionResult:
    """Read the attention over ``text`` and write the page (default ``attention.html`` in the
    run directory, or beside the config)."""
    result = read_attention_maps(source, text, max_new_tokens, base)
    write_attention_page([result], out or default_page(source), layer, head)
    return result


def default_page(source: str | Path) -> Path:
    """``attention.html`` in the run directory, or beside the config."""
    path = Path(source)
    return (path if path.is_dir() else path.parent) / "attention.html"
