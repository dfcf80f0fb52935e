"""Batched text generation, shared by eval, predict, the prompting baseline and serving.

Prompts are token ids (each caller tokenises and truncates as its rendering says); they are
left-padded into one batch, decoded greedily or by sampling with the ``eval.generation``
settings, and each row stops at EOS or an end-of-turn token. Only the new tokens are decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

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
) -> Generated:
    """Generate up to ``max_new_tokens`` after each prompt, in one batch.

    ``settings`` (``eval.generation``) chooses sampling, temperature, top_p and the repetition
    penalty; None decodes greedily. ``stepwise`` decodes greedily by full forward passes, one
    prompt at a time, for models whose ``generate`` ignores part of the model (see
    :func:`stepwise_greedy`).
    """
    stops = stop_token_ids(tokenizer)
    if stepwise:
        rows = stepwise_greedy(model, prompts, max_new_tokens, stops)
    else:
        rows = batched(model, tokenizer.pad_token_id, prompts, max_new_tokens, stops, settings)
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
) -> list[list[int]]:
    """``model.generate`` on the left-padded batch; returns only the new tokens of each row."""
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
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        eos_token_id=stops,
        pad_token_id=pad_id,
        **decoding,
    )
    return out[:, input_ids.shape[1] :].tolist()


def stepwise_greedy(
    model: nn.Module, prompts: Sequence[list[int]], max_new_tokens: int, stops: list[int]
) -> list[list[int]]:
    """Greedy decoding by full forward passes, one prompt at a time.

    With PEFT 0.21 and Transformers 5.24, ``generate`` passes an empty ``cache`` next to the
    prefix PEFT injects as ``past_key_values``, and the model ignores the prefix: the output
    is the base model's. A plain forward pass does use the prefix, so decode with those.
    """
    device = next(model.parameters()).device
    rows = []
    for prompt in prompts:
        ids = torch.tensor([prompt], dtype=torch.long, device=device)
        start = ids.shape[1]
        for _ in range(max_new_tokens):
            last = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
            ids = torch.cat([ids, last.argmax().view(1, 1)], dim=1)
            if int(ids[0, -1]) in stops:
                break
        rows.append(ids[0, start:].tolist())
    return rows
