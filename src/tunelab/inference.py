"""Use a trained run: ``tunelab.load``, ``predict``, and switching between named LoRA adapters.

Named adapters for ``load(..., adapters={name: path})`` and ``tunelab predict --adapter`` are
PEFT adapter folders (any LoRA run's ``model/`` folder qualifies). ``--adapter NAME`` looks in
``RUN_DIR/adapters/NAME/``; ``--adapter PATH`` takes a folder directly.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.data.formats import convert_messages
from tunelab.data.rendering import Rendering, legacy_rendering, read_rendering, render_prompt
from tunelab.decoding import generate
from tunelab.errors import TunelabError
from tunelab.export import artifact_dir
from tunelab.methods.artifacts import load_artifact, read_method_info
from tunelab.methods.registry import get_method
from tunelab.modalities.registry import modality_for
from tunelab.predict_inputs import (
    Input,
    input_examples,
    media_rows,
    open_turn,
    read_input_rows,
    read_inputs,
)
from tunelab.task_runs import task_dir

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase


@dataclass
class Loaded:
    """A loaded run: the model, its tokenizer, the task, the class names and the rendering."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    task: str
    label_names: list[str] | None
    method: str
    rendering: Rendering

    @property
    def adapters(self) -> list[str]:
        """Names of the PEFT adapters on the model (empty for non-PEFT models)."""
        return list(getattr(self.model, "peft_config", {}))

    def set_adapter(self, name: str) -> None:
        """Activate the named adapter."""
        if name not in self.adapters:
            raise TunelabError(f"no adapter {name!r}; loaded adapters: {self.adapters}")
        self.model.set_adapter(name)

    @contextmanager
    def disable_adapters(self) -> Iterator[None]:
        """Run the base model inside this block (adapters bypassed)."""
        if not self.adapters:
            raise TunelabError("this model has no PEFT adapters to disable")
        with self.model.disable_adapter():
            yield


def load(
    run_dir_or_artifact: str | Path,
    adapters: dict[str, str | Path] | None = None,
    task: str | None = None,
    attn_implementation: str | None = None,
) -> Loaded:
    """Load a run (or an artifact folder) for inference, plus optional named LoRA adapters;
    ``task``: which task of a multi-task run (``data.tasks``); ``attn_implementation``: see
    :func:`tunelab.methods.artifacts.load_artifact`."""
    source = artifact_dir(task_dir(run_dir_or_artifact, task) if task else run_dir_or_artifact)
    info = read_method_info(source)
    model, tokenizer = load_artifact(source, attn_implementation=attn_implementation)
    for name, path in (adapters or {}).items():
        model = add_adapter(model, name, Path(path))
    model.eval()
    rendering = read_rendering(source) or legacy_rendering(info)
    if rendering.chat_template:
        tokenizer.chat_template = rendering.chat_template
    return Loaded(model, tokenizer, info["task"], info["label_names"], info["method"], rendering)


def add_adapter(model: nn.Module, name: str, path: Path) -> nn.Module:
    """Load the PEFT adapter at ``path`` under ``name`` (wrapping a plain model first)."""
    if not (path / "adapter_config.json").is_file():
        raise TunelabError(f"adapter {name!r}: {path} is not a PEFT adapter folder")
    if hasattr(model, "load_adapter") and hasattr(model, "peft_config"):
        model.load_adapter(str(path), adapter_name=name)
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(path), adapter_name=name)


Warn = Callable[[str], None]


@torch.no_grad()
def predict(
    loaded: Loaded,
    inputs: list[Input],
    max_new_tokens: int = 64,
    batch_size: int = 16,
    warn: Warn | None = None,
) -> list[dict[str, Any]]:
    """Classify (label + probabilities) or generate (greedy, stops at EOS / end of turn).

    Each input is a text or a row of the training data's format, rendered as in training;
    an input longer than the model's limit is cut per the stored truncation side (``warn``
    gets one line per cut input; default: ``warnings.warn``).
    """
    warn = warn or (lambda message: warnings.warn(message, stacklevel=3))
    examples = _examples(loaded, inputs)
    results: list[dict[str, Any]] = []
    for start in range(0, len(inputs), batch_size):
        batch = list(range(start, min(start + batch_size, len(inputs))))
        if loaded.task == "speech_to_text":
            rows = _transcribe(loaded, [examples[i] for i in batch], max_new_tokens)
        elif loaded.task == "classification":
            rows = _classify(loaded, [examples[i] for i in batch], batch, warn)
        else:
            rows = _generate(loaded, [examples[i] for i in batch], batch, max_new_tokens, warn)
        for index, row in zip(batch, rows, strict=True):
            item = inputs[index]
            results.append(
                {"text": item, **row} if isinstance(item, str) else {"input": item, **row}
            )
    return results


def render_inputs(loaded: Loaded, inputs: list[Input]) -> list[str]:
    """The prompt text each input becomes (generation), rendered as in training."""
    examples = _examples(loaded, inputs)
    return [_prompt(loaded, ex)[0] for ex in examples]


def encode_messages(loaded: Loaded, messages: list[dict[str, Any]]) -> list[int]:
    """Token ids (uncut) of a conversation's generation prompt, rendered as in training.

    The same rendering as predict on a ``{"messages": ...}`` row: an assistant turn is opened
    when the conversation does not end with one. Raises ``InvalidRow`` for a bad message.
    """
    turns = convert_messages(open_turn(messages))
    text = render_prompt(loaded.rendering, loaded.tokenizer, turns)
    special = loaded.rendering.renderer(loaded.tokenizer).add_special_tokens
    return list(loaded.tokenizer(text, add_special_tokens=special)["input_ids"])


def encode_text(loaded: Loaded, text: str) -> list[int]:
    """Token ids (uncut) of a plain text to continue, as predict encodes a text-format input."""
    return list(loaded.tokenizer(text, add_special_tokens=True)["input_ids"])


def _examples(loaded: Loaded, inputs: list[Input]) -> list[dict[str, Any]]:
    """The canonical examples of ``inputs`` in the format the model was trained on."""
    return input_examples(loaded.rendering, [(f"input {i + 1}", x) for i, x in enumerate(inputs)])


def _prompt(loaded: Loaded, example: dict[str, Any]) -> tuple[str, bool]:
    """(prompt text, add_special_tokens) of a canonical example: plain text is continued as
    is; a conversation is rendered up to its last assistant turn."""
    if "messages" not in example:
        return example["text"], True
    text = render_prompt(loaded.rendering, loaded.tokenizer, example["messages"])
    return text, loaded.rendering.renderer(loaded.tokenizer).add_special_tokens


def position_limit(loaded: Loaded) -> int | None:
    """Tokens the model can attend to: its position limit less any virtual (soft) tokens."""
    config = getattr(loaded.model, "config", None)
    limits = [getattr(config, key, None) for key in ("max_position_embeddings", "n_positions")]
    limits.append(loaded.tokenizer.model_max_length)
    known = [int(x) for x in limits if isinstance(x, int) and 0 < x < 10**7]
    if not known:
        return None
    peft_cfg = getattr(loaded.model, "active_peft_config", None)
    return min(known) - (getattr(peft_cfg, "num_virtual_tokens", None) or 0)


def prompt_room(loaded: Loaded, max_new_tokens: int = 0) -> int:
    """The most prompt tokens: the stored max_length, within the limit less the new tokens."""
    limit = position_limit(loaded)
    room = loaded.rendering.max_length
    if limit is not None:
        room = min(room, limit - max_new_tokens)
    if room < 1:
        raise TunelabError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the model's "
            f"{limit}-token limit; ask for fewer new tokens"
        )
    return room


def fit(ids: list[int], room: int, side: str) -> list[int]:
    """``ids`` cut to ``room`` tokens on ``side`` (right: keep the start; left: keep the end)."""
    if len(ids) <= room:
        return ids
    return ids[:room] if side == "right" else ids[-room:]


def _cut_note(index: int, before: int, after: int, side: str) -> str:
    return (
        f"input {index + 1}: {before - after} of {before} tokens cut from the {side} to fit "
        f"{after} (data.truncation_side: {side})"
    )


def _classify(
    loaded: Loaded, examples: list[dict[str, Any]], indices: list[int], warn: Warn
) -> list[dict[str, Any]]:
    if (modality := modality_for(loaded.rendering.format)) is not None:
        enc = modality.predict_batch(loaded.tokenizer, examples)
    else:
        enc = _encode_texts(loaded, examples, indices, warn)
    probs = loaded.model(**enc).logits.float().softmax(-1)
    names = loaded.label_names or [str(i) for i in range(probs.shape[-1])]
    return [
        {
            "label": names[int(row.argmax())],
            "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
        }
        for row in probs
    ]


def _encode_texts(
    loaded: Loaded, examples: list[dict[str, Any]], indices: list[int], warn: Warn
) -> Any:
    """The padded, cut token tensors of text classification inputs (``warn`` per cut one)."""
    tok, side = loaded.tokenizer, loaded.rendering.truncation_side
    texts = [ex["text"] for ex in examples]
    pairs = [ex["text_pair"] for ex in examples] if loaded.rendering.columns["text_pair"] else None
    room = prompt_room(loaded)
    full = tok(texts, pairs)["input_ids"]
    tok.padding_side, tok.truncation_side = "right", side
    enc = tok(texts, pairs, padding=True, truncation=True, max_length=room, return_tensors="pt")
    for index, ids, mask in zip(indices, full, enc["attention_mask"], strict=True):
        if len(ids) > int(mask.sum()):
            warn(_cut_note(index, len(ids), int(mask.sum()), side))
    return enc


def _generate(
    loaded: Loaded,
    examples: list[dict[str, Any]],
    indices: list[int],
    max_new_tokens: int,
    warn: Warn,
) -> list[dict[str, Any]]:
    tok, side = loaded.tokenizer, loaded.rendering.truncation_side
    if (modality := modality_for(loaded.rendering.format)) is not None:
        texts = [_prompt(loaded, example)[0] for example in examples]
        ids, inputs = modality.generation_inputs(tok, texts, examples)
        out = generate(loaded.model, tok, ids, max_new_tokens, inputs=inputs)
        return [{"generated": text} for text in out.texts]
    room = prompt_room(loaded, max_new_tokens)
    prompts = []
    for index, example in zip(indices, examples, strict=True):
        text, special = _prompt(loaded, example)
        ids = tok(text, add_special_tokens=special)["input_ids"]
        prompts.append(fit(ids, room, side))
        if len(ids) > room:
            warn(_cut_note(index, len(ids), room, side))
    # prefix tuning: generate() would ignore the prefix (see decoding.stepwise_greedy)
    stepwise = get_method(loaded.method).decode_by_forward
    out = generate(loaded.model, tok, prompts, max_new_tokens, stepwise=stepwise)
    return [{"generated": text} for text in out.texts]


def _transcribe(
    loaded: Loaded, examples: list[dict[str, Any]], max_new_tokens: int
) -> list[dict[str, Any]]:
    """Greedy transcripts of speech inputs (``{"audio": PATH}``)."""
    from tunelab.modalities.speech import transcribe

    features = loaded.tokenizer.features([ex["audio"] for ex in examples])
    texts = transcribe(loaded.model, loaded.tokenizer, features, max_new_tokens)
    return [{"transcript": text} for text in texts]


def resolve_adapter(run_dir: Path, adapter: str) -> tuple[str, Path]:
    """``--adapter`` as (name, folder): ``RUN_DIR/adapters/NAME/`` or a folder path."""
    named = run_dir / "adapters" / adapter
    if named.is_dir():
        return adapter, named
    path = Path(adapter)
    if path.is_dir():
        return path.name, path
    known = sorted(p.name for p in (run_dir / "adapters").glob("*") if p.is_dir())
    raise TunelabError(
        f"--adapter {adapter!r}: not found in {run_dir / 'adapters'} (have: {known or 'none'}) "
        "and not a folder"
    )


def predict_cli(
    run_dir: str | Path,
    input: str | None,
    adapter: str | None = None,
    console: Console | None = None,
    task: str | None = None,
    media: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """``tunelab predict``: load the run (``task`` of a multi-task run), optionally activate an
    adapter, print one JSON line each; ``media`` (``{"image": FILE}``) is one non-text input."""
    run_dir = task_dir(run_dir, task)
    if media:
        rows = media_rows(input, media)
    elif input is None:
        raise TunelabError(
            "predict needs --input (or --image FILE for an image model, --audio FILE for speech)"
        )
    else:
        rows = read_input_rows(input)  # an unreadable file fails before the model loads
    adapters = dict([resolve_adapter(run_dir, adapter)]) if adapter else None
    loaded = load(run_dir, adapters=adapters)
    if adapters:
        loaded.set_adapter(next(iter(adapters)))
    input_examples(loaded.rendering, rows)  # a bad row names its file and line before any work
    results = predict(loaded, [item for _, item in rows], warn=_warn_stderr)
    for result in results:
        line = json.dumps(result, ensure_ascii=False)
        if console is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line)
    return results


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


__all__ = [
    "Loaded",
    "load",
    "predict",
    "predict_cli",
    "read_inputs",
    "read_method_info",
    "render_inputs",
]
