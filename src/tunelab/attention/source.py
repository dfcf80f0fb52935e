"""What attention is read from: a trained run (fine-tuned and base model) or a config (its
base model), loaded with eager attention, and the token ids of a text as the model sees it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tunelab.data.rendering import Rendering, render_prompt
from tunelab.errors import TunelabError
from tunelab.predict_inputs import input_examples

EAGER = "eager"  # the kernel that returns attention weights (sdpa and flash attention do not)


@dataclass
class Source:
    """The models to compare (fine-tuned first, then the base), their tokenizer and rendering."""

    name: str
    task: str
    method: str | None  # None: a config's base model alone
    tokenizer: Any
    rendering: Rendering
    models: list[tuple[str, nn.Module]]


def open_source(path: str | Path, base: bool = True) -> Source:
    """A run directory (its fine-tuned model, and the base model unless ``base`` is False) or
    a config file (the base model it fine-tunes)."""
    path = Path(path)
    if path.is_file():
        return _config_source(path)
    if not path.exists():
        raise TunelabError(f"{path}: no such run directory or config file")
    return _run_source(path, base)


def _run_source(run_dir: Path, base: bool) -> Source:
    from tunelab.config import ModelConfig
    from tunelab.inference import load
    from tunelab.models import load_model

    loaded = load(run_dir, attn_implementation=EAGER)
    models = [(f"fine-tuned ({loaded.method})", loaded.model)]
    if base:
        from tunelab.export import artifact_dir
        from tunelab.methods.artifacts import read_method_info

        info = read_method_info(artifact_dir(run_dir))
        base_cfg = ModelConfig.model_validate(info["model"])
        base_cfg = base_cfg.model_copy(update={"attn_implementation": EAGER})
        base_model = load_model(base_cfg, loaded.task, loaded.label_names).eval()
        models.append((f"base ({base_cfg.name_or_path})", base_model))
    return Source(
        str(run_dir), loaded.task, loaded.method, loaded.tokenizer, loaded.rendering, models
    )


def _config_source(config: Path) -> Source:
    from tunelab.config import load_config
    from tunelab.models import load_model, load_tokenizer

    cfg = load_config(config)
    model_cfg = cfg.model.model_copy(update={"attn_implementation": EAGER})
    tokenizer = load_tokenizer(cfg.model)
    model = load_model(model_cfg, cfg.task).eval()
    rendering = Rendering.from_config(cfg.data, tokenizer)
    label = f"base ({cfg.model.name_or_path})"
    return Source(str(config), cfg.task, None, tokenizer, rendering, [(label, model)])


def prompt_ids(source: Source, text: str) -> list[int]:
    """The token ids of ``text`` rendered as in training (classification: the text to
    classify; generation: the prompt up to the answer), cut to the stored max_length."""
    (example,) = input_examples(source.rendering, [("--text", text)])
    return example_ids(source, example)


def example_ids(source: Source, example: dict[str, Any], limit: int | None = None) -> list[int]:
    """The token ids of a canonical example (see ``tunelab.data``): the text to classify, or
    the prompt up to the answer, cut to the stored max_length (and ``limit``)."""
    from tunelab.inference import fit

    tok, rendering = source.tokenizer, source.rendering
    room = min(rendering.max_length, limit or rendering.max_length)
    if source.task == "classification":  # cut as in training: the special tokens stay
        side, tok.truncation_side = tok.truncation_side, rendering.truncation_side
        try:
            enc = tok(example["text"], example.get("text_pair"), truncation=True, max_length=room)
        finally:
            tok.truncation_side = side
        return list(enc["input_ids"])
    if "messages" in example:
        prompt = render_prompt(rendering, tok, example["messages"])
        special = rendering.renderer(tok).add_special_tokens
        ids = tok(prompt, add_special_tokens=special)["input_ids"]
    else:
        ids = tok(example["text"])["input_ids"]
    return fit(list(ids), room, rendering.truncation_side)


def generated_ids(source: Source, prompt: list[int], max_new_tokens: int) -> list[int]:
    """The tokens the first (fine-tuned) model generates greedily after ``prompt`` (stop
    token included), by full forward passes so every method's model decodes the same way."""
    from tunelab.decoding import stepwise_greedy, stop_token_ids

    if source.task == "classification" or max_new_tokens <= 0:
        return []
    model = source.models[0][1]
    (row,) = stepwise_greedy(model, [prompt], max_new_tokens, stop_token_ids(source.tokenizer))
    return row
