"""Batched text generation, shared by eval, predict, the prompting baseline and serving.

Prompts are token ids (each caller tokenises and truncates as its rendering says); they are
left-padded into one batch, decoded greedily or by sampling with the ``eval.generation``
settings, and each row stops at EOS or an end-of-turn token. Only the new tokens are decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

if TYPE_CHECKING:
    from tunelab.config import GenerationConfig

END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>")


@dataclass
class Generated:
    """The decoded new text of each prompt and the new tokens generated (stop tokens included)."""

    texts: list[str]
    new_tokens: int


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS plus the end-of-turn tokens the vocabulary has."""
    vocab = tokenizer.get_vocab()
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    ids += [vocab[t] for t in END_OF_TURN if t in vocab and vocab[t] not in ids]
    return ids


def encode_prompts(
    tokenizer: Any, texts: Sequence[str], max_length: int, add_special_tokens: bool
) -> list[list[int]]:
    """Token ids of ``texts``; a prompt longer than ``max_length`` loses its start."""
    side, tokenizer.truncation_side = tokenizer.truncation_side, "left"
    try:
        enc = tokenizer(
            list(texts),
            truncation=True,
            max_length=max_length,
            add_special_tokens=add_special_tokens,
        )
    finally:
        tokenizer.truncation_side = side
    return [list(ids) for ids in enc["input_ids"]]


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    settings: GenerationConfig | None = None,
    stepwise: bool = False,
    control: RowControl | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> Generated:
    """Generate up to ``max_new_tokens`` after each prompt, in one batch.

    ``settings`` (``eval.generation``) chooses sampling, temperature, top_p and the repetition
    penalty; None decodes greedily. ``stepwise`` decodes greedily by full forward passes, one
    prompt at a time, for models whose ``generate`` ignores part of the model (see
    :func:`stepwise_greedy`). ``control`` (serving; replaces ``settings``) decodes each row by
    its own settings and watches it step by step (:class:`RowControl`). ``inputs``: more
    model inputs for ``generate`` (an image model's ``pixel_values``).
    """
    stops = stop_token_ids(tokenizer)
    if stepwise:
        rows = stepwise_greedy(model, prompts, max_new_tokens, stops, control)
    else:
        pad = tokenizer.pad_token_id
        rows = batched(model, pad, prompts, max_new_tokens, stops, settings, control, inputs)
    texts, count = [], 0
    for row in rows:
        cut = next((i for i, t in enumerate(row) if t in stops), len(row))
        count += min(cut + 1, len(row))
        texts.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return Generated(texts, count)


def left_pad(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and ``attention_mask`` of the prompts, padded on the left."""
    width = max(len(ids) for ids in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        mask[row, width - len(ids) :] = 1
    return input_ids, mask


def batched(
    model: nn.Module,
    pad_id: int,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    stops: list[int],
    settings: GenerationConfig | None,
    control: RowControl | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> list[list[int]]:
    """``model.generate`` on the left-padded batch; returns only the new tokens of each row.

    ``control`` (serving) samples each row with its own settings and stops rows early; its
    ``adapter_names`` pick each row's LoRA adapter (PEFT's mixed-adapter batches)."""
    device = next(model.parameters()).device
    input_ids, mask = left_pad(prompts, pad_id)
    decoding: dict[str, Any] = {"do_sample": False}
    if settings is not None:
        decoding = {
            "do_sample": settings.do_sample,
            "repetition_penalty": settings.repetition_penalty,
        }
        if settings.do_sample:
            decoding |= {"temperature": settings.temperature, "top_p": settings.top_p}
    if control is not None:
        decoding |= control.generate_kwargs(input_ids.shape[1])
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=pad_id,
        **{k: v.to(device) for k, v in (inputs or {}).items()},
        **decoding,
    )
    return out[:, input_ids.shape[1] :].tolist()


def stepwise_greedy(
    model: nn.Module,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    stops: list[int],
    control: RowControl | None = None,
) -> list[list[int]]:
    """Greedy decoding by full forward passes, one prompt at a time.

    With PEFT 0.21 and Transformers 5.24, ``generate`` passes an empty ``cache`` next to the
    prefix PEFT injects as ``past_key_values``, and the model ignores the prefix: the output
    is the base model's. A plain forward pass does use the prefix, so decode with those.
    ``control`` (serving) samples a row by its settings instead and may stop it early.
    """
    device = next(model.parameters()).device
    rows = []
    for index, prompt in enumerate(prompts):
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        start = ids.shape[1]
        for _ in range(max_new_tokens):
            last = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            pick = control.pick(index, last) if control else int(last.argmax())
            ids = torch.cat([ids, torch.tensor([[pick]], device=device)], dim=1)
            done = control.watch(index, ids[0, start:].tolist()) if control else False
            if pick in stops or done:
                break
        rows.append(ids[0, start:].tolist())
    return rows


@dataclass(frozen=True)
class Sampling:
    """One row's decoding: greedy when ``temperature`` is 0, else sampled (seeded if given)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


def sample(rule: Sampling, logits: torch.Tensor, generator: torch.Generator | None) -> int:
    """The next token by ``rule`` from one row's last logits (argmax when greedy)."""
    if rule.temperature <= 0:
        return int(logits.argmax())
    probs = (logits.float() / rule.temperature).softmax(-1).cpu()
    if rule.top_p < 1:
        ordered, order = probs.sort(descending=True)
        drop = ordered.cumsum(-1) - ordered >= rule.top_p  # keeps at least the top token
        probs[order[drop]] = 0
    return int(torch.multinomial(probs, 1, generator=generator))


@dataclass
class RowControl:
    """Per-row decoding for a batch of unrelated requests (serving).

    ``watch(row, new_tokens) -> done`` runs after every step; ``adapter_names`` (one per row,
    ``"__base__"`` for the base model) goes to a PEFT model's ``generate``.
    """

    sampling: Sequence[Sampling]
    watch: Callable[[int, list[int]], bool]
    adapter_names: list[str] | None = None
    generators: list[torch.Generator | None] = field(init=False)

    def __post_init__(self) -> None:
        self.generators = [
            None if s.seed is None else torch.Generator().manual_seed(s.seed) for s in self.sampling
        ]

    def pick(self, row: int, logits: torch.Tensor) -> int:
        """The next token of ``row`` from its last logits (argmax when greedy)."""
        return sample(self.sampling[row], logits, self.generators[row])

    def generate_kwargs(self, prompt_width: int) -> dict[str, object]:
        """What ``model.generate`` takes to decode greedily over this control's choices."""
        kwargs: dict[str, object] = {
            "logits_processor": LogitsProcessorList([_Picker(self)]),
            "stopping_criteria": StoppingCriteriaList([_Watcher(self, prompt_width)]),
        }
        if self.adapter_names is not None:
            kwargs["adapter_names"] = self.adapter_names
        return kwargs


class _Picker(LogitsProcessor):
    """Makes each sampled row's pick the only finite score, so greedy decoding takes it."""

    def __init__(self, control: RowControl) -> None:
        self.control = control

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        for row, rule in enumerate(self.control.sampling):
            if rule.temperature > 0:
                pick = self.control.pick(row, scores[row])
                scores[row] = float("-inf")
                scores[row, pick] = 0.0
        return scores


class _Watcher(StoppingCriteria):
    """Reports each row's new tokens to ``control.watch``; True stops that row."""

    def __init__(self, control: RowControl, prompt_width: int) -> None:
        self.control, self.start = control, prompt_width

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, **_: object
    ) -> torch.Tensor:
        new = input_ids[:, self.start :].tolist()
        done = [self.control.watch(row, tokens) for row, tokens in enumerate(new)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
