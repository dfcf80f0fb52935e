"""What an export carries so that tunelab loads and serves it exactly as the run was trained.

``tunelab export`` writes into the export, beside the model, the run's
``tunelab_rendering.json`` (template, chat template, max_length, truncation, label names) and
a ``tunelab_method.json`` describing the export itself, so ``tunelab serve EXPORT_DIR`` and
``tunelab.load(EXPORT_DIR)`` take the same path as for a run:
- a merged (whole) model: method ``full`` (the task, label names and model settings of the run;
  ``exported_from`` names the run's method);
- a PEFT adapter (prompt/prefix tuning on a decoder, ``--for vllm``): the run's own record
  (the base model plus this adapter folder);
- generated modelling code (``adapter``, prefix tuning on an encoder): no record; tunelab serves
  the run instead (:func:`not_servable` says so).

EOS and end-of-turn tokens come from the exported tokenizer. An export without the record
(older tunelab, or a hand-made model folder) is refused with the fix, not guessed at: the
tokenizer's own chat template need not be the one the run was trained with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.data.rendering import RENDERING_FILE, legacy_rendering, read_rendering, save_rendering
from tunelab.export_target import MARKER
from tunelab.methods.artifacts import METHOD_FILE


def write_serving_files(folder: Path, source: Path, info: dict[str, Any]) -> None:
    """Write the rendering and (when tunelab can load the export) its method record."""
    save_rendering(folder, read_rendering(source) or legacy_rendering(info))
    record = export_record(folder, info)
    if record is not None:
        text = json.dumps(record, indent=2) + "\n"
        (folder / METHOD_FILE).write_text(text, encoding="utf-8")


def export_record(folder: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """The ``tunelab_method.json`` of the export in ``folder``; None for generated code."""
    if (folder / "adapter_config.json").is_file():
        return info
    if has_generated_code(folder):
        return None
    origin = info.get("exported_from") or {"method": info["method"], "settings": info["settings"]}
    return {**info, "method": "full", "settings": None, "exported_from": origin}


def has_generated_code(folder: Path) -> bool:
    """The export's model is generated code (``auto_map`` in ``config.json``)."""
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return "auto_map" in json.loads(config.read_text(encoding="utf-8"))
    except ValueError:
        return False


def not_servable(folder: Path) -> str | None:
    """Why the model folder ``folder`` (no ``tunelab_method.json``) cannot be served, with
    the fix; None when it is not a model folder at all."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            record = {}
        run, method = record.get("artifact", "RUN_DIR"), record.get("method", "?")
        if has_generated_code(folder):
            return (
                f"{folder}: an export of a {method} run as generated modelling code "
                f"(trust_remote_code), which tunelab does not serve; serve the run itself: {run}"
            )
        return (
            f"{folder}: exported by an older tunelab (no {METHOD_FILE} / {RENDERING_FILE}, so "
            f"not how the run rendered prompts); re-export it: tunelab export {run} {folder} "
            "--overwrite"
        )
    if (folder / "config.json").is_file():
        return (
            f"{folder}: a plain Transformers model, not a tunelab run or export (how it was "
            "trained to render prompts is unknown); serve the run directory, or write an "
            "export with tunelab export RUN_DIR OUT"
        )
    return None
