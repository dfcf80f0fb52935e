"""The attention maps the report shows: a few validation examples of a finished run, read
once at the end of training into ``RUN_DIR/attention.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.attention.api import maps_over
from tunelab.attention.page import ATTENTION_FILE, payload
from tunelab.attention.source import example_ids, open_source
from tunelab.io import atomic_write_json
from tunelab.modalities.registry import modality_for

MAX_TOKENS = 48  # per example, generated tokens included: the page stays a few MB
NEW_TOKENS = 8  # generated after each prompt (causal LM)


def example_text(example: dict[str, Any]) -> str:
    """What the page shows as the example's text."""
    return str(example.get("prompt") or example.get("text") or "")


def write_attention_examples(
    run_dir: str | Path, examples: list[dict[str, Any]], count: int
) -> Path:
    """Read the fine-tuned and base models' attention over the first ``count`` of
    ``examples`` (canonical rows of a split, see ``tunelab.data``), each cut to
    :data:`MAX_TOKENS`; write them as the report's ``attention.json``."""
    run_dir = Path(run_dir)
    source = open_source(run_dir)
    new = 0 if source.task == "classification" else NEW_TOKENS
    blocks = []
    for i, example in enumerate(examples[:count]):
        prompt = example_ids(source, example, limit=MAX_TOKENS - new)
        text = example_text(example)
        if len(prompt) < len(example_ids(source, example)):  # show what the maps cover
            text = source.tokenizer.decode(prompt, skip_special_tokens=True) + " …"
        result = maps_over(source, prompt, text, new)
        layers, heads = result.maps[0].weights.shape[:2]
        blocks.append(payload(result, f"attn-{i}", list(range(layers)), list(range(heads))))
    path = run_dir / ATTENTION_FILE
    atomic_write_json(path, {"examples": blocks})
    return path


def report_attention(cfg: Any, prepared: Any, console: Any) -> Path | None:
    """End of training: the maps of ``output.attention_examples`` examples of the validation
    split (else the evaluation split). A side output: a model whose attention cannot be read
    is a warning, never the end of the run."""
    from tunelab.errors import first_line

    examples = prepared.examples.get("validation") or prepared.examples.get(cfg.eval.split) or []
    if not examples or modality_for(getattr(cfg.data, "format", None)) is not None:
        return None
    try:
        return write_attention_examples(cfg.run_dir, examples, cfg.output.attention_examples)
    except Exception as exc:  # a side output: the trained run stands whatever it hits
        console.print(
            f"[yellow]warning:[/] no attention maps for the report "
            f"({type(exc).__name__}: {first_line(exc)})",
            soft_wrap=True,
        )
        return None
