"""Use a trained run: ``tunelab.load``, ``predict``, and switching between named LoRA adapters.

Named adapters for ``load(..., adapters={name: path})`` and ``tunelab predict --adapter`` are
PEFT adapter folders (any LoRA run's ``model/`` folder qualifies). ``--adapter NAME`` looks in
``RUN_DIR/adapters/NAME/``; ``--adapter PATH`` takes a folder directly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from tunelab.errors import TunelabError
from tunelab.export import artifact_dir
from tunelab.methods.artifacts import load_artifact, read_method_info

if TYPE_CHECKING:
    from rich.console import Console
    from transformers import PreTrainedTokenizerBase

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


@dataclass
class Loaded:
    """A loaded run: the model, its tokenizer, the task and the class names."""

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    task: str
    label_names: list[str] | None
    method: str

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


def load(run_dir_or_artifact: str | Path, adapters: dict[str, str | Path] | None = None) -> Loaded:
    """Load a run (or an artifact folder) for inference, plus optional named LoRA adapters."""
    source = artifact_dir(run_dir_or_artifact)
    info = read_method_info(source)
    model, tokenizer = load_artifact(source)
    for name, path in (adapters or {}).items():
        model = add_adapter(model, name, Path(path))
    model.eval()
    return Loaded(model, tokenizer, info["task"], info["label_names"], info["method"])


def add_adapter(model: nn.Module, name: str, path: Path) -> nn.Module:
    """Load the PEFT adapter at ``path`` under ``name`` (wrapping a plain model first)."""
    if not (path / "adapter_config.json").is_file():
        raise TunelabError(f"adapter {name!r}: {path} is not a PEFT adapter folder")
    if hasattr(model, "load_adapter") and hasattr(model, "peft_config"):
        model.load_adapter(str(path), adapter_name=name)
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, str(path), adapter_name=name)


@torch.no_grad()
def predict(
    loaded: Loaded, texts: list[str], max_new_tokens: int = 64, batch_size: int = 16
) -> list[dict[str, Any]]:
    """Classify (label + probabilities) or generate (greedy, stops at EOS / end of turn)."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        if loaded.task == "classification":
            results += _classify(loaded, batch)
        else:
            results += _generate(loaded, batch, max_new_tokens)
    return results


def _classify(loaded: Loaded, texts: list[str]) -> list[dict[str, Any]]:
    tok = loaded.tokenizer
    tok.padding_side = "right"
    enc = tok(texts, padding=True, truncation=True, return_tensors="pt")
    probs = loaded.model(**enc).logits.float().softmax(-1)
    names = loaded.label_names or [str(i) for i in range(probs.shape[-1])]
    return [
        {
            "text": text,
            "label": names[int(row.argmax())],
            "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
        }
        for text, row in zip(texts, probs, strict=True)
    ]


def _generate(loaded: Loaded, texts: list[str], max_new_tokens: int) -> list[dict[str, Any]]:
    tok = loaded.tokenizer
    tok.padding_side = "left"
    chat = bool(tok.chat_template)
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
        )
        if chat
        else t
        for t in texts
    ]
    if loaded.method == "prefix_tuning":
        rows = _prefix_greedy(loaded, prompts, max_new_tokens)
    else:
        rows = _batched_greedy(loaded, prompts, max_new_tokens, add_special_tokens=not chat)
    return [
        {"text": text, "generated": tok.decode(row, skip_special_tokens=True).strip()}
        for text, row in zip(texts, rows, strict=True)
    ]


def _batched_greedy(
    loaded: Loaded, prompts: list[str], max_new_tokens: int, add_special_tokens: bool
) -> torch.Tensor:
    """``generate`` on the left-padded batch; returns only the new tokens."""
    tok = loaded.tokenizer
    enc = tok(prompts, padding=True, return_tensors="pt", add_special_tokens=add_special_tokens)
    out = loaded.model.generate(
        **enc,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stop_token_ids(tok),
        pad_token_id=tok.pad_token_id,
    )
    return out[:, enc["input_ids"].shape[1] :]


def _prefix_greedy(loaded: Loaded, prompts: list[str], max_new_tokens: int) -> list[torch.Tensor]:
    """Greedy decoding by full forward passes, one prompt at a time.

    With PEFT 0.21 and Transformers 5.24, ``generate`` passes an empty ``cache`` next to the
    prefix PEFT injects as ``past_key_values``, and the model ignores the prefix: the output
    is the base model's. A plain forward pass does use the prefix, so decode with those.
    """
    tok = loaded.tokenizer
    stops = set(stop_token_ids(tok))
    rows = []
    for prompt in prompts:
        ids = tok(prompt, return_tensors="pt", add_special_tokens=not tok.chat_template)[
            "input_ids"
        ]
        start = ids.shape[1]
        for _ in range(max_new_tokens):
            last = loaded.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            ids = torch.cat([ids, last.argmax().view(1, 1)], dim=1)
            if int(ids[0, -1]) in stops:
                break
        rows.append(ids[0, start:])
    return rows


def stop_token_ids(tok: PreTrainedTokenizerBase) -> list[int]:
    """EOS plus the end-of-turn tokens the vocabulary has."""
    vocab = tok.get_vocab()
    ids = [tok.eos_token_id] if tok.eos_token_id is not None else []
    ids += [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]
    return ids


def read_inputs(value: str) -> list[str]:
    """A literal text, a .txt file (one input per line) or a .jsonl file (text or prompt)."""
    path = Path(value)
    is_file = _is_file(path)
    if path.suffix in (".txt", ".jsonl") and not is_file:
        raise TunelabError(f"--input {value}: no such file")
    if not is_file:
        return [value]
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            text = row.get("text", row.get("prompt")) if isinstance(row, dict) else None
            if not isinstance(text, str):
                raise TunelabError(f"{path}:{number}: needs a string field 'text' or 'prompt'")
            texts.append(text)
        return texts
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _is_file(path: Path) -> bool:
    """``path.is_file()``, false for texts that cannot be file names (too long, NUL bytes)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


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
    run_dir: str | Path, input: str, adapter: str | None = None, console: Console | None = None
) -> list[dict[str, Any]]:
    """``tunelab predict``: load the run, optionally activate an adapter, print one JSON line each."""
    run_dir = Path(run_dir)
    adapters = dict([resolve_adapter(run_dir, adapter)]) if adapter else None
    loaded = load(run_dir, adapters=adapters)
    if adapters:
        loaded.set_adapter(next(iter(adapters)))
    results = predict(loaded, read_inputs(input))
    for result in results:
        line = json.dumps(result, ensure_ascii=False)
        if console is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line)
    return results


__all__ = ["Loaded", "load", "predict", "predict_cli", "read_method_info"]
