"""The ``image_chat`` modality: image + text -> text with a LLaVA-style model.

Rows, tokens and images: :mod:`tunelab.modalities.image_chat_rows`; the model side (check,
processor, generation): :mod:`tunelab.modalities.image_chat_model`. The task is ``causal_lm``:
the loss is the causal-LM loss with ``pixel_values`` (image tokens carry -100), evaluation and
``predict`` generate from the rendered prompt with its images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.formats import InvalidRow, as_text
from tunelab.errors import TunelabError
from tunelab.modalities.base import Modality, Processor
from tunelab.modalities.image_chat_rows import (
    IMAGE_TOKEN,
    ImageChatCollator,
    ImageTokens,
    convert_row,
    cut,
    features,
    image_ref,
)

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config import ColumnsConfig, DataConfig, MethodConfig, ModelConfig


class ImageChatProcessor(Processor):
    """A ``LlavaProcessor`` standing where text code expects a tokenizer: tokenizer attributes
    and calls go to its tokenizer (which holds the image token)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.tokens = ImageTokens.of(inner)

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    @property
    def image_processor(self) -> Any:
        return self.inner.image_processor

    @property
    def pad_token_id(self) -> int:  # type: ignore[override]
        return self.tokenizer.pad_token_id

    @property
    def eos_token(self) -> str | None:  # type: ignore[override]
        return self.tokenizer.eos_token

    @property
    def chat_template(self) -> str | None:  # type: ignore[override]
        return self.tokenizer.chat_template

    @chat_template.setter
    def chat_template(self, value: str | None) -> None:
        self.tokenizer.chat_template = value

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.inner.tokenizer, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.tokenizer(*args, **kwargs)

    def __len__(self) -> int:
        return len(self.tokenizer)


class ImageChat(Modality):
    """Chat rows whose user turns hold images; a LLaVA-style model answers in text."""

    format = "image_chat"
    task = "causal_lm"
    input_key = "image"  # predict --image FILE
    chunked_loss = False  # LLaVA's image features enter before the decoder: full logits

    def required_columns(self, columns: ColumnsConfig) -> dict[str, str]:
        return {"messages": columns.messages}

    def to_example(self, data: dict[str, Any], columns: ColumnsConfig, base: Path) -> dict:
        return convert_row(data, columns.messages, base)

    def content_key(self, example: dict[str, Any]) -> str:
        """The messages and the bytes of every image: a question about two different images
        is two examples."""
        digest = hashlib.sha256(json.dumps(example["messages"], sort_keys=True).encode())
        for ref in example["images"]:
            digest.update(ref.encode() if ref.startswith("data:") else Path(ref).read_bytes())
        return digest.hexdigest()

    def load_processor(self, source: str, model_cfg: ModelConfig) -> ImageChatProcessor:
        from tunelab.modalities.image_chat_model import load_processor
        from tunelab.models import ensure_pad_token

        processor = ImageChatProcessor(load_processor(source))
        ensure_pad_token(processor.tokenizer)
        return processor

    def fingerprint(self, processor: Processor) -> str:
        from tunelab.data.cache import tokenizer_fingerprint

        assert isinstance(processor, ImageChatProcessor)
        state = json.dumps(processor.image_processor.to_dict(), sort_keys=True, default=str)
        state += tokenizer_fingerprint(processor.tokenizer) + str(processor.tokens)
        return hashlib.sha256(state.encode()).hexdigest()

    def encode(
        self,
        examples: list[dict[str, Any]],
        processor: Processor,
        label_names: list[str] | None,
        data: DataConfig | None = None,
    ) -> dict[str, list[Any]]:
        """Token ids with each image expanded, labels on the assistant turns only, and the
        image refs; a row that does not fit ``data.max_length`` with all its image tokens is
        an error (its images cannot be cut)."""
        from tunelab.data.templates import ChatRenderer

        assert isinstance(processor, ImageChatProcessor) and data is not None
        tok, tokens = processor.tokenizer, processor.tokens
        renderer = ChatRenderer(tok, data.template)
        columns: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "labels": []}
        columns["images"] = []
        for index, example in enumerate(examples):
            row = features(tok, renderer, example, tokens, data.loss_on)
            if len(row["input_ids"]) > data.max_length:
                short = cut(row, data.max_length, data.truncation_side, tokens)
                if short is None:
                    raise TunelabError(
                        f"example {index + 1} ({example['messages'][0]['content'][:40]!r}...): "
                        f"{len(row['input_ids'])} tokens with its images do not fit "
                        f"data.max_length {data.max_length}; raise data.max_length"
                    )
                row = short
            for key, values in row.items():
                columns[key].append(values)
        return columns

    def collator(self, processor: Processor, data: DataConfig | None, train: bool) -> Any:
        assert isinstance(processor, ImageChatProcessor)
        return ImageChatCollator(processor.pad_token_id, processor.image_processor)

    def check_model(self, config: Any, name: str) -> None:
        from tunelab.modalities.image_chat_model import check_vision_language

        check_vision_language(config, name)

    def auto_class(self) -> Any:
        from transformers import AutoModelForImageTextToText

        return AutoModelForImageTextToText

    def method_config(self, method_cfg: MethodConfig, model: nn.Module) -> MethodConfig:
        """LoRA's ``all-linear`` becomes the language model's linear layers (not the vision
        tower's or the projector's)."""
        settings = method_cfg.settings
        if method_cfg.name != "lora" or settings.target_modules != "all-linear":
            return method_cfg
        from tunelab.modalities.image_chat_model import language_linear_names

        targets = language_linear_names(model)
        return method_cfg.model_copy(
            update={method_cfg.name: settings.model_copy(update={"target_modules": targets})}
        )

    def generation_inputs(
        self, processor: Processor, prompts: list[str], examples: list[dict[str, Any]]
    ) -> tuple[list[list[int]], dict[str, Any]]:
        from tunelab.modalities.image_chat_model import generation_inputs

        images = [example.get("images", []) for example in examples]
        return generation_inputs(processor, prompts, images, False)

    def predict_example(self, item: str | dict[str, Any], columns: ColumnsConfig) -> dict:
        """``--image FILE --input TEXT``, or a row of the training format (``messages``; an
        assistant turn is opened when it does not end with one)."""
        if isinstance(item, dict) and isinstance(item.get(columns.messages), list):
            turns = item[columns.messages]
            if not turns or not isinstance(turns[-1], dict) or turns[-1].get("role") != "assistant":
                turns = [*turns, {"role": "assistant", "content": ""}]
            return convert_row({columns.messages: turns}, columns.messages, Path.cwd())
        if not isinstance(item, dict) or self.input_key not in item:
            raise InvalidRow("needs an image: predict --image FILE [--input QUESTION]")
        text = as_text(item.get("text"))
        user = f"{IMAGE_TOKEN}\n{text}" if text else IMAGE_TOKEN
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": ""}]
        image = image_ref(item[self.input_key], Path.cwd())
        return {"messages": messages, "images": [image], "context": None}


MODALITY = ImageChat()
