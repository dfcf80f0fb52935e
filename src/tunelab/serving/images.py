"""Chat requests with OpenAI image content parts, for a model trained on ``image_chat``.

An image part (``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}``)
becomes the ``<image>`` placeholder the model was trained with, in the same place among the
text parts; the prompt's image tokens are expanded to the tower's patch count and the images
go to the batching worker beside the token ids. The server reads base64 data URLs only (it
fetches nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tunelab.data.formats import InvalidRow
from tunelab.serving.schemas import ImagePart, Message, TextPart

if TYPE_CHECKING:
    from tunelab.inference import Loaded

IMAGE_FORMAT = "image_chat"


def reads_images(loaded: Loaded) -> bool:
    """Whether the model was trained with images (``data.format: image_chat``)."""
    return loaded.rendering.format == IMAGE_FORMAT


def placeholder_messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[str]]:
    """Role/content messages with ``<image>`` for each image part, and the image URLs."""
    from tunelab.modalities.image_chat_rows import DATA_URL, IMAGE_TOKEN

    out, urls = [], []
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
            continue
        texts = []
        for part in message.content:
            if isinstance(part, TextPart):
                texts.append(part.text)
                continue
            assert isinstance(part, ImagePart)
            if message.role != "user":
                raise InvalidRow(f"messages[{i}]: image parts go in user messages")
            if not part.image_url.url.startswith(DATA_URL):
                raise InvalidRow(
                    f"messages[{i}]: image_url must be a data:image/...;base64 URL "
                    "(this server fetches nothing)"
                )
            texts.append(IMAGE_TOKEN)
            urls.append(part.image_url.url)
        out.append({"role": message.role, "content": "\n".join(texts)})
    return out, urls


def image_prompt(loaded: Loaded, messages: list[Message]) -> tuple[list[int], list[str]]:
    """The prompt's token ids (image tokens expanded) and its image URLs (each checked to
    decode); raises ``InvalidRow`` for a bad message or image."""
    import io

    from tunelab.inference import encode_messages
    from tunelab.modalities.image_chat_rows import data_url_bytes, expand_images
    from tunelab.modalities.images import check_image

    turns, urls = placeholder_messages(messages)
    for n, url in enumerate(urls, start=1):
        check_image(io.BytesIO(data_url_bytes(url)), f"image_url {n} of the request")
    ids = encode_messages(loaded, turns)
    tokens = loaded.tokenizer.tokens
    if ids.count(tokens.token_id) != len(urls):
        raise InvalidRow("the text holds the image token; send images as image_url parts")
    return expand_images(ids, [0] * len(ids), tokens)[0], urls


def pixel_inputs(loaded: Loaded, urls: list[str]) -> dict[str, Any]:
    """``pixel_values`` of the batch's images, in row order (none: no extra inputs)."""
    from tunelab.modalities.image_chat_rows import pixel_values

    if not urls:
        return {}
    return {"pixel_values": pixel_values(loaded.tokenizer.image_processor, urls)}
