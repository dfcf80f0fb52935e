"""The ``image_chat`` format: chat rows whose user turns hold images, for LLaVA-style models.

A row is an OpenAI-style conversation; a user turn's ``content`` is a string or a list of parts
``{"type": "image", "image": PATH}`` / ``{"type": "text", "text": ...}`` (PATH relative to the
data file, absolute, or a ``data:image/...;base64,`` URL). Every row needs at least one image
(text-only rows belong to ``data.format: chat``). An image becomes one ``<image>`` placeholder
in the rendered chat; tokenisation expands it to the vision tower's patch count, and those
tokens never carry loss. Images are read and turned into ``pixel_values`` at collate time.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.formats import ROLES, InvalidRow, as_text
from tunelab.errors import TunelabError

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_TOKEN = "<image>"
IGNORE = -100
DATA_URL = "data:image/"


# ----------------------------------------------------------------------------- rows


def image_ref(value: Any, base_dir: Path) -> str:
    """An image part's value as an absolute path or a data URL, checked to decode (BadFile
    when it does not: missing, unreadable, not an image)."""
    from tunelab.modalities.images import check_image, image_reference

    if not isinstance(value, str) or not value:
        raise InvalidRow("an image part needs 'image': a file path or a data URL")
    if value.startswith(DATA_URL):
        check_image(io.BytesIO(data_url_bytes(value)), "from the data URL")
        return value
    return str(image_reference(value, base_dir))


def convert_content(content: Any, role: str, base_dir: Path) -> tuple[str, list[str]]:
    """A message's content as text with ``<image>`` placeholders, and its image refs."""
    if not isinstance(content, list):
        text = as_text(content)
        if IMAGE_TOKEN in text:
            raise InvalidRow(f"the text holds {IMAGE_TOKEN!r}; give images as image parts")
        return text, []
    texts, images = [], []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            text = as_text(part.get("text"))
            if IMAGE_TOKEN in text:
                raise InvalidRow(f"the text holds {IMAGE_TOKEN!r}; give images as image parts")
            texts.append(text)
        elif kind in ("image", "image_url"):
            if role != "user":
                raise InvalidRow(f"an image part in a {role} turn; images go in user turns")
            value = part.get("image") if kind == "image" else (part.get("image_url") or {})
            value = value.get("url") if isinstance(value, dict) else value
            images.append(image_ref(value, base_dir))
            texts.append(IMAGE_TOKEN)
        else:
            raise InvalidRow("each content part needs type 'text' or 'image'")
    return "\n".join(texts), images


def convert_row(
    data: dict[str, Any], messages_key: str, base_dir: Path, needs_answer: bool = True
) -> dict[str, Any]:
    """The canonical example of one raw row: ``{"messages", "images", "context"}`` (image
    paths resolved against ``base_dir``, the data file's folder)."""
    value = data.get(messages_key)
    if not isinstance(value, list) or not value:
        raise InvalidRow("messages must be a non-empty list")
    messages, images = [], []
    for message in value:
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise InvalidRow("each message needs role and content")
        role = ROLES.get(message["role"])
        if role is None:
            raise InvalidRow(f"unknown role {message['role']!r} (allowed: {', '.join(ROLES)})")
        text, refs = convert_content(message["content"], role, base_dir)
        messages.append({"role": role, "content": text})
        images += refs
    if needs_answer and not any(m["role"] == "assistant" for m in messages):
        raise InvalidRow("the conversation has no assistant turn")
    if not images:
        raise InvalidRow(
            "no image part in any user turn; image_chat rows need an image "
            "(text-only conversations: data.format: chat)"
        )
    example: dict[str, Any] = {"messages": messages, "images": images, "context": None}
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    return {**example, "reference": answers[-1]} if answers else example


# ----------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class ImageTokens:
    """How images appear in the token stream: the image token's id and tokens per image."""

    token_id: int
    per_image: int

    @classmethod
    def of(cls, processor: Any) -> ImageTokens:
        """From a ``LlavaProcessor``: patches of the cropped image (+ CLS unless dropped)."""
        crop = processor.image_processor.crop_size or processor.image_processor.size
        patch = processor.patch_size
        count = (crop["height"] // patch) * (crop["width"] // patch)
        count += processor.num_additional_image_tokens
        if processor.vision_feature_select_strategy == "default":
            count -= 1
        return cls(int(processor.image_token_id), count)


def expand_images(
    ids: list[int], labels: list[int], tokens: ImageTokens
) -> tuple[list[int], list[int]]:
    """Each image token repeated ``per_image`` times; image tokens never carry loss."""
    out_ids: list[int] = []
    out_labels: list[int] = []
    for token, label in zip(ids, labels, strict=True):
        if token == tokens.token_id:
            out_ids += [token] * tokens.per_image
            out_labels += [IGNORE] * tokens.per_image
        else:
            out_ids.append(token)
            out_labels.append(label)
    return out_ids, out_labels


def features(
    tokenizer: Any, renderer: Any, example: dict[str, Any], tokens: ImageTokens, loss_on: str
) -> dict[str, Any]:
    """Token ids, attention mask, labels (assistant tokens only unless ``loss_on: all``; never
    image tokens) and image refs of one example."""
    text, spans = renderer.render_with_spans(example["messages"])
    enc = tokenizer(
        text, add_special_tokens=renderer.add_special_tokens, return_offsets_mapping=True
    )
    ids = list(enc["input_ids"])
    if ids.count(tokens.token_id) != len(example["images"]):
        raise TunelabError(
            f"the tokenizer does not keep {IMAGE_TOKEN!r} as one token; use the processor "
            "saved with the model (python -m tunelab.convert llava)"
        )
    if loss_on == "all":
        labels = list(ids)
    else:
        in_response = [any(s <= a < e for s, e in spans) for a, _ in enc["offset_mapping"]]
        labels = [i if keep else IGNORE for i, keep in zip(ids, in_response, strict=True)]
    ids, labels = expand_images(ids, labels, tokens)
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": labels,
        "images": list(example["images"]),
    }


def cut(row: dict[str, Any], max_length: int, side: str, tokens: ImageTokens) -> dict | None:
    """``row`` cut to ``max_length`` tokens; None when the cut would split or drop an image."""
    keep = slice(None, max_length) if side == "right" else slice(-max_length, None)
    out = {k: (v[keep] if k != "images" else v) for k, v in row.items()}
    if out["input_ids"].count(tokens.token_id) != tokens.per_image * len(row["images"]):
        return None
    return out


def prompt_ids(tokenizer: Any, prompt: str, tokens: ImageTokens, special: bool) -> list[int]:
    """A rendered prompt's ids with each image token expanded."""
    ids = list(tokenizer(prompt, add_special_tokens=special)["input_ids"])
    return expand_images(ids, [IGNORE] * len(ids), tokens)[0]


# ----------------------------------------------------------------------------- images


def data_url_bytes(url: str) -> bytes:
    """The bytes of a ``data:image/...;base64,`` URL (BadFile when it is not one)."""
    from tunelab.modalities.base import BadFile

    header, _, payload = url.partition(",")
    try:
        if ";base64" not in header:
            raise ValueError("not base64")
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadFile("an image data URL must be data:image/...;base64,<base64 bytes>") from None


def open_image(ref: str) -> Image:
    """An RGB image from a file path or a ``data:image/...;base64,`` URL."""
    from tunelab.modalities.images import load_image

    return load_image(data_url_bytes(ref) if ref.startswith(DATA_URL) else ref)


def pixel_values(image_processor: Any, refs: list[str]) -> Any:
    """The ``pixel_values`` tensor of the images, in order."""
    images = [open_image(ref) for ref in refs]
    return image_processor(images=images, return_tensors="pt")["pixel_values"]


@dataclass
class ImageChatCollator:
    """Pads like :class:`~tunelab.train.collate.PadCollator` and adds ``pixel_values``."""

    pad_token_id: int
    image_processor: Any

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        from tunelab.train.collate import PadCollator

        batch = PadCollator(self.pad_token_id)(examples)
        refs = [ref for example in examples for ref in example["images"]]
        batch["pixel_values"] = pixel_values(self.image_processor, refs)
        return batch
