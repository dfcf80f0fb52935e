"""Save and load the final artifact of a run, and write the run's model card.

Each method writes and reads its own trained state (``Method.save`` / ``Method.load``, see
:mod:`tunelab.methods.base`) in ``RUN_DIR/model/``:
- lora, prompt_tuning, prefix_tuning: PEFT's own layout (``adapter_config.json`` +
  ``adapter_model.safetensors``), loadable by ``peft.PeftModel.from_pretrained`` alone.
- bitfit, freeze, adapter, and prefix_tuning on an encoder (tunelab's own prefixes, see
  ``methods/encoder_prefix.py``): ``tunelab_weights.safetensors`` with only the trained tensors.
- full (``whole_model``): ``save_pretrained`` (``config.json`` + ``model.safetensors``).
Every artifact also holds ``tunelab_method.json`` (method, settings, the base model as the user
named it and as it was loaded, task, label names), ``tunelab_rendering.json`` (how prompts were
rendered, see ``tunelab.data.rendering``) and the tokenizer with its chat template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from tunelab.config import ModelConfig, RunConfig
from tunelab.data.rendering import Rendering, read_rendering, save_rendering
from tunelab.errors import TunelabError
from tunelab.io import atomic_dir, atomic_write_text
from tunelab.methods.registry import get_method
from tunelab.models import gguf_cache_dir, load_model, load_processor, model_source
from tunelab.paths import PKG_PREFIX, resolve_path
from tunelab.train.previous_run import card_path

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

METHOD_FILE = "tunelab_method.json"


def save_artifact(
    model: nn.Module,
    cfg: RunConfig,
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase | None = None,
    label_names: list[str] | None = None,
) -> Path:
    """Write the trained artifact of ``cfg.method.name`` to ``out_dir`` atomically."""
    method = get_method(cfg.method.name)
    base = _base_path(cfg.model)
    labels = label_names
    if labels is None and cfg.task == "classification":
        labels = _label_names(model)
    with atomic_dir(out_dir) as tmp:
        info = {
            "method": method.name,
            "settings": cfg.method.settings.model_dump() if cfg.method.settings else None,
            "base_model": cfg.model.name_or_path,
            "base_model_gguf_file": cfg.model.gguf_file,
            "base_model_resolved": base,
            "model": _portable_model_cfg(cfg.model),
            "task": cfg.task,
            "label_names": labels,
        }
        method.save(model, tmp, info)
        (tmp / METHOD_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        save_rendering(tmp, Rendering.from_config(cfg.data, tokenizer, labels))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def read_method_info(artifact_dir: str | Path) -> dict[str, Any]:
    """The ``tunelab_method.json`` of an artifact."""
    path = Path(artifact_dir) / METHOD_FILE
    if not path.is_file():
        raise TunelabError(f"{artifact_dir}: not a tunelab artifact (no {METHOD_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def load_artifact(
    artifact_dir: str | Path,
    base_model: PreTrainedModel | None = None,
    attn_implementation: str | None = None,
) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Load an artifact: its base model (unless given) with the trained method applied;
    ``attn_implementation`` replaces the stored attention kernel (``eager`` to read weights)."""
    artifact_dir = Path(artifact_dir)
    info = read_method_info(artifact_dir)
    model_cfg = _artifact_model_cfg(artifact_dir, info)
    if attn_implementation:
        model_cfg = model_cfg.model_copy(update={"attn_implementation": attn_implementation})
    rendering = read_rendering(artifact_dir)
    fmt = rendering.format if rendering else None
    if get_method(info["method"]).whole_model:
        model = load_model(model_cfg, info["task"], fmt=fmt)
    else:
        base = base_model or load_model(model_cfg, info["task"], info["label_names"], fmt=fmt)
        model = apply_artifact(base, artifact_dir)
    saved = ("tokenizer_config.json", "preprocessor_config.json")
    tok_dir = artifact_dir if any((artifact_dir / f).is_file() for f in saved) else None
    tok_cfg = model_cfg.model_copy(update={"tokenizer": str(tok_dir) if tok_dir else None})
    model.eval()
    return model, load_processor(tok_cfg, fmt)


def apply_artifact(base_model: PreTrainedModel, artifact_dir: str | Path) -> nn.Module:
    """Apply a saved overlay artifact (PEFT adapter or trained tensors) to ``base_model``."""
    artifact_dir = Path(artifact_dir)
    info = read_method_info(artifact_dir)
    method = get_method(info["method"])
    if method.whole_model:
        raise TunelabError(
            f"{artifact_dir}: a {method.name} fine-tune is a whole model, not an overlay"
        )
    return method.load(base_model, artifact_dir, info)


def _artifact_model_cfg(artifact_dir: Path, info: dict[str, Any]) -> ModelConfig:
    """The base model's config; a full fine-tune loads from the artifact itself."""
    stored = ModelConfig.model_validate(info["model"])
    if get_method(info["method"]).whole_model:
        return stored.model_copy(
            update={"name_or_path": str(artifact_dir), "gguf_file": None, "tokenizer": None}
        )
    return stored


def _base_path(model_cfg: ModelConfig) -> str:
    """The resolved base model location: an absolute local directory, or the hub id."""
    source = model_source(model_cfg)
    path = Path(source)
    return str(path.resolve()) if path.is_dir() else source


def _portable_model_cfg(model_cfg: ModelConfig) -> dict[str, Any]:
    """The model config with relative local paths made absolute (pkg:// and hub ids kept)."""
    data = model_cfg.model_dump()
    for key in ("name_or_path", "tokenizer", "cache_dir"):
        value = data[key]
        if value and not value.startswith(PKG_PREFIX) and resolve_path(value).exists():
            data[key] = str(resolve_path(value).resolve())
    return data


def _label_names(model: nn.Module) -> list[str] | None:
    config = getattr(model, "config", None)
    id2label = getattr(config, "id2label", None)
    if not id2label:
        return None
    return [id2label[i] for i in sorted(id2label)]


def write_model_card(run_dir: str | Path, cfg: RunConfig, metrics: dict[str, Any] | None) -> Path:
    """Write the model card (base model, method, data, metrics) to ``RUN_DIR/README.md``, or
    to ``README.tunelab.md`` when a README.md tunelab did not write is there (it is kept)."""
    settings = cfg.method.settings.model_dump() if cfg.method.settings else {}
    data_path = cfg.data.path if isinstance(cfg.data.path, str) else ", ".join(cfg.data.path)
    lines = [
        f"# {Path(cfg.output.dir).name}",
        "",
        "Fine-tuned with tunelab.",
        "",
        "## Base model",
        "",
        *base_model_lines(cfg.model),
        f"- task: {cfg.task}",
        "",
        "## Method",
        "",
        f"- {cfg.method.name}",
        *(f"- {key}: `{value}`" for key, value in settings.items()),
        "",
        "## Data",
        "",
        f"- path: `{data_path}`",
        f"- format: {cfg.data.format}, max_length: {cfg.data.max_length}",
        "",
        "## Training",
        "",
        f"- lr {cfg.train.lr:g}, batch size {cfg.train.batch_size}, "
        f"epochs {cfg.train.epochs:g}, max_steps {cfg.train.max_steps}, seed {cfg.train.seed}",
        "",
        "## Metrics",
        "",
    ]
    if metrics:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in metrics.items()]
    else:
        lines.append("No metrics recorded yet.")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "import tunelab",
        f"loaded = tunelab.load({str(cfg.run_dir)!r})",
        'print(tunelab.predict(loaded, ["your text"]))',
        "```",
        "",
    ]
    path = card_path(Path(run_dir))
    atomic_write_text(path, "\n".join(lines))
    return path


def base_model_lines(model_cfg: ModelConfig) -> list[str]:
    """The model card's base-model lines: the user's reference and where it was loaded from."""
    lines = [f"- `{model_cfg.name_or_path}` (`model.name_or_path` as given)"]
    if model_cfg.gguf_file:
        lines += [
            f"- GGUF file `{model_cfg.gguf_file}`, dequantised into tunelab's cache at "
            f"`{gguf_cache_dir(model_cfg)}` (tunelab re-creates it from the GGUF file when "
            "it is missing)",
        ]
    else:
        path = resolve_path(model_cfg.name_or_path)
        lines.append(
            f"- loaded from `{path.resolve() if path.is_dir() else model_cfg.name_or_path}`"
        )
    lines.append(
        "- another copy of the base: pass it to `PeftModel.from_pretrained(base, 'model')` or "
        "edit `base_model_name_or_path` in `model/adapter_config.json` (PEFT methods); for "
        "tunelab, edit `model.name_or_path` in `model/tunelab_method.json`"
    )
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else f"`{json.dumps(value)}`"
