"""What ``tunelab train`` says before its first step: the template in use and, on resume,
what changed since the checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tunelab.config import RunConfig
from tunelab.config.tasks import task_kind
from tunelab.data.formats import CONVERSATION_FORMATS
from tunelab.data.templates import ChatRenderer
from tunelab.train.checkpoint import read_state, settings_diff


def template_note(cfg: RunConfig, tokenizer: Any) -> str | None:
    """Which template renders the examples (None for classification, which has none)."""
    fmt, choice = cfg.data.format, cfg.data.template
    if task_kind(fmt) == "classification":
        return None
    if fmt not in CONVERSATION_FORMATS:
        return f"template: none (data.format {fmt}: each row's text as it is, then EOS)"
    if ChatRenderer(tokenizer, choice).uses_chat_template:
        return "template: the tokenizer's chat template (data.template: auto)"
    why = "data.template: default" if choice == "default" else "the tokenizer has none"
    return f"template: tunelab's default template (### User: / ### Assistant: blocks; {why})"


def resume_notes(cfg: RunConfig, path: Path, step: int, total_steps: int) -> list[str]:
    """Where the run resumes, the settings changed since ``path`` and a changed schedule."""
    notes = [f"resuming from {path} (step {step} of {total_steps})"]
    stored = read_state(path).get("settings")  # checked already (settings_changes)
    changes = settings_diff(stored, cfg) if stored is not None else {}
    if changes:
        listed = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())
        notes.append(f"changed since the checkpoint: {listed}")
    before = read_state(path).get("total_steps", total_steps)
    if before != total_steps:
        warmup = ", warmup_ratio included" if cfg.train.warmup_ratio else ""
        notes.append(
            f"note: the LR schedule ({cfg.train.scheduler}{warmup}) is recomputed for "
            f"{total_steps} steps instead of {before}: the steps taken keep their learning "
            "rates, the remaining ones follow the new schedule"
        )
    return notes
