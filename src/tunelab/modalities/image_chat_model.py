"""What an ``image_chat`` run needs from its model: the architecture check, the processor and
generation from prompts that hold images (the loss is the causal-LM loss with
``pixel_values``: ``tunelab.train.loss``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from tunelab.errors import TunelabError, first_line
from tunelab.modalities.image_chat_rows import pixel_values, prompt_ids

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


def generation_inputs(
    processor: Any, prompts: Sequence[str], images: Sequence[Sequence[str]], special: bool
) -> tuple[list[list[int]], dict[str, Any]]:
    """``processor``: an ``ImageChatProcessor``. Token ids of rendered ``prompts`` (each ``<image>`` placeholder expanded, matched in
    order by an entry of ``images``) and their ``pixel_values``, for ``decoding.generate``."""
    tok, tokens = processor.tokenizer, processor.tokens
    ids = [prompt_ids(tok, text, tokens, special) for text in prompts]
    for index, (row, refs) in enumerate(zip(ids, images, strict=True)):
        if row.count(tokens.token_id) != tokens.per_image * len(refs):
            raise TunelabError(
                f"input {index + 1}: {len(refs)} image(s) for "
                f"{row.count(tokens.token_id) // tokens.per_image} image placeholder(s)"
            )
    flat = [ref for refs in images for ref in refs]
    return ids, {"pixel_values": pixel_values(processor.image_processor, flat)} if flat else {}
