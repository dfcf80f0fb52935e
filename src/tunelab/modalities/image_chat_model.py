"""What an ``image_chat`` run needs from its model: the architecture check, the processor and
generation from prompts that hold images (the loss is the causal-LM loss with
``pixel_values``: ``tunelab.train.loss``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tunelab.errors import TunelabError, first_line
from tunelab.modalities.image_chat_rows import ImageTokens, pixel_values, prompt_ids

VISION_LANGUAGE_TYPES = ("llava",)


def check_vision_language(config: Any, name: str) -> None:
    """Error unless ``config`` is a LLaVA-style (vision tower + language model) config."""
    if getattr(config, "model_type", None) not in VISION_LANGUAGE_TYPES:
        raise TunelabError(
            f"model {name!r} ({getattr(config, 'model_type', '?')}) is a text-only model; "
            "data.format: image_chat needs a vision-language model (build one with "
            "python -m tunelab.convert llava)"
        )


def language_linear_names(model: nn.Module) -> list[str]:
    """The linear layers of a LLaVA model's language model, as PEFT target names that match
    nothing in the vision tower or projector (e.g. ``self_attn.q_proj``, ``mlp.down_proj``)."""
    names = {
        ".".join(name.split(".")[-2:])
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and ".language_model." in f".{name}."
    }
    others = {
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and ".language_model." not in f".{name}."
    }
    clash = sorted(n for n in names if any(o == n or o.endswith("." + n) for o in others))
    if clash:
        raise TunelabError(f"LoRA targets {clash} would also match the vision tower; name them")
    return sorted(names)


def load_processor(source: str) -> Any:
    """The model directory's ``LlavaProcessor`` (tokenizer with the image token + image
    processor)."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise TunelabError(f"processor {source!r}: cannot be loaded ({first_line(exc)})") from None
    if not hasattr(processor, "image_processor") or not hasattr(processor, "image_token_id"):
        raise TunelabError(
            f"model {source!r} has no image processor; data.format: image_chat needs a "
            "vision-language model dir with its processor (python -m tunelab.convert llava)"
        )
    return processor


@torch.no_grad()
def generate_with_images(
    model: nn.Module,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence[Sequence[str]],
    max_new_tokens: int,
    add_special_tokens: bool = False,
) -> list[str]:
    """Greedy answers to rendered ``prompts`` (each ``<image>`` placeholder matched, in order,
    by an entry of ``images``), in one left-padded batch; stops at EOS / end of turn."""
    from tunelab.decoding import left_pad, stop_token_ids

    tok = processor.tokenizer
    tokens = ImageTokens.of(processor)
    ids = [prompt_ids(tok, text, tokens, add_special_tokens) for text in prompts]
    for index, (row, refs) in enumerate(zip(ids, images, strict=True)):
        if row.count(tokens.token_id) != tokens.per_image * len(refs):
            raise TunelabError(
                f"input {index + 1}: the prompt's image placeholders and images differ"
            )
    input_ids, mask = left_pad(ids, tok.pad_token_id)
    device = next(model.parameters()).device
    flat = [ref for refs in images for ref in refs]
    stops = stop_token_ids(tok)
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        pixel_values=pixel_values(processor.image_processor, flat).to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=stops,
        pad_token_id=tok.pad_token_id,
    )
    texts = []
    for row in out[:, input_ids.shape[1] :].tolist():
        end = next((i for i, t in enumerate(row) if t in stops), len(row))
        texts.append(tok.decode(row[:end], skip_special_tokens=True).strip())
    return texts
