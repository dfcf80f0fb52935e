"""The modality seam: what a non-text data format gives the rest of tunelab.

A modality is one :class:`Modality` subclass in its own module (``MODALITY = Sub()``), named
in :mod:`tunelab.modalities.registry`. Each hook has exactly one call site:

=====================  =================================  ==================================
hook                   called from                        what it answers
=====================  =================================  ==================================
config_problems        config.run (RunConfig validation)  train features that do not apply
required_columns,      data.modal_pipeline (through       raw rows -> canonical examples;
folder_rows,           data.pipeline.build)               a bad file is ``BadFile``
to_example,
content_key
load_processor,        models.load_processor              the processor (not a tokenizer),
adjust_processor                                          with data settings applied
fingerprint            data.cache.cache_key               the processor's part of the key
encode                 data.modal_pipeline                examples -> dataset columns
collator               train.rows (train and validation), batches of model inputs
                       evaluate.runner, inference
check_model,           models.load_model                  model fits the format; its class
auto_class
method_config          train.run.build_model              method defaults per architecture
loss_fn                train.objective.loss_fn_for        None: the task's loss
predict_example        predict_inputs.input_example       ``predict --image FILE`` etc.
predict_batch          inference (classify)               model inputs of predict examples
generation_inputs      evaluate.scoring, inference        prompt ids + media of generation
                       (generate)
=====================  =================================  ==================================

Modules import torch/transformers only inside functions: the config imports them to
validate. The dataset keeps file paths (or bytes); media are decoded in the collator.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tunelab.data.formats import InvalidRow, as_label

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config import ColumnsConfig, DataConfig, MethodConfig, ModelConfig, RunConfig

Collate = Callable[[Sequence[dict[str, Any]]], dict[str, Any]]


class BadFile(InvalidRow):
    """A row whose media file is missing or unreadable (``data.on_bad_rows`` decides)."""


class Processor:
    """A modality's processor where text paths expect a tokenizer: what they read of it.

    ``inner`` is the Transformers processor (image processor, feature extractor, ...).
    """

    pad_token_id = 0
    chat_template: str | None = None
    eos_token: str | None = None

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def save_pretrained(self, folder: str | Path) -> None:
        """Save the inner processor beside the model (``preprocessor_config.json``)."""
        self.inner.save_pretrained(str(folder))


class Modality:
    """A non-text data format. Subclasses set the class attributes, override what differs."""

    format: ClassVar[str]
    task: ClassVar[str]
    input_key: ClassVar[str]  # the data.columns key and predict option (image, audio)
    folder_suffixes: ClassVar[tuple[str, ...]] = ()  # files a label folder holds
    packing: ClassVar[bool] = False  # train.packing applies
    chunked_loss: ClassVar[bool] = False  # train.loss_chunk_size applies
    virtual_tokens: ClassVar[bool] = False  # prompt/prefix tuning apply

    # ---------------------------------------------------------------- config
    def config_problems(self, cfg: RunConfig) -> list[str]:
        """One line per config setting this format cannot honour."""
        from tunelab.config.method import METHODS

        problems = []
        if cfg.train.packing and not self.packing:
            problems.append(f"train.packing does not apply to data.format {self.format}")
        default = type(cfg.train).model_fields["loss_chunk_size"].default
        if cfg.train.loss_chunk_size not in (None, 0, default) and not self.chunked_loss:
            problems.append(
                f"train.loss_chunk_size (the chunked LM loss) does not apply to data.format "
                f"{self.format}; remove it or set it to 0"
            )
        method = METHODS.get(cfg.method.name)
        if method is not None and method.virtual_tokens and not self.virtual_tokens:
            problems.append(
                f"method {cfg.method.name} (virtual tokens) does not apply to data.format "
                f"{self.format}; use lora, full, freeze or bitfit"
            )
        return problems

    # ---------------------------------------------------------------- data
    def required_columns(self, columns: ColumnsConfig) -> dict[str, str]:
        """Config key -> column name of every column a row needs."""
        keys = [self.input_key, "label"] if self.task == "classification" else [self.input_key]
        return {key: getattr(columns, key) for key in keys}

    def folder_rows(self, folder: Path, columns: ColumnsConfig) -> list[tuple[str, dict]]:
        """(where, row) of a folder with one sub-folder per label of media files."""
        labels = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        rows = []
        for label_dir in labels:
            for file in sorted(label_dir.iterdir()):
                if file.suffix.lower() in self.folder_suffixes:
                    rows.append((str(file), {self.input_key: str(file), "label": label_dir.name}))
        return rows

    def to_example(self, data: dict[str, Any], columns: ColumnsConfig, base: Path) -> dict:
        """The canonical example of a raw row (paths resolved against ``base``, the data
        file's folder); raises InvalidRow, or BadFile for a missing/unreadable file."""
        example = {self.input_key: self.media(data.get(getattr(columns, self.input_key)), base)}
        if self.task == "classification":
            example["label"] = as_label(data.get(columns.label))
        return example

    def media(self, value: Any, base: Path) -> Any:
        """The checked media reference of a row (an absolute path, or bytes)."""
        raise NotImplementedError

    def content_key(self, example: dict[str, Any]) -> str:
        """What makes two examples the same (dedup): the media file's bytes."""
        value = example[self.input_key]
        data = value if isinstance(value, bytes) else Path(value).read_bytes()
        return hashlib.sha256(data).hexdigest()

    def load_processor(self, source: str, model_cfg: ModelConfig) -> Processor:
        """The processor of the model (or artifact) directory ``source``."""
        raise NotImplementedError

    def adjust_processor(self, processor: Processor, data: DataConfig) -> Processor:
        """The processor with the data section's settings applied (e.g. ``data.image_size``);
        saved with the artifact, so predict and export see the same."""
        return processor

    def fingerprint(self, processor: Processor) -> str:
        """A hash of what decides the encoded columns (for the data cache key)."""
        state = json.dumps(processor.inner.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(state.encode()).hexdigest()

    def encode(
        self,
        examples: list[dict[str, Any]],
        processor: Processor,
        label_names: list[str] | None,
        data: DataConfig | None = None,
    ) -> dict[str, list[Any]]:
        """Dataset columns of a split: media references (not decoded) and ``labels``
        (``data``: the data settings, e.g. max_length and the template of a chat format)."""
        columns: dict[str, list[Any]] = {self.input_key: [ex[self.input_key] for ex in examples]}
        if self.task == "classification" and label_names is not None:
            columns["labels"] = [label_names.index(ex["label"]) for ex in examples]
        return columns

    def collator(self, processor: Processor, data: DataConfig | None, train: bool) -> Collate:
        """Encoded rows -> a batch of model inputs; ``train`` turns augmentation on."""
        raise NotImplementedError

    # ---------------------------------------------------------------- model
    def check_model(self, config: Any, name: str) -> None:
        """Raise a TunelabError when the model's architecture does not fit the format."""

    def auto_class(self) -> Any:
        """The Transformers Auto class that loads a model for this format."""
        raise NotImplementedError

    def method_config(self, method_cfg: MethodConfig, model: nn.Module) -> MethodConfig:
        """The method settings to apply to ``model`` (e.g. LoRA targets per architecture)."""
        return method_cfg

    def loss_fn(self, chunk_size: int | None) -> Any:
        """``(model, batch) -> (summed loss, items)``; None: the task's loss."""
        return None

    # ---------------------------------------------------------------- predict
    def predict_example(self, item: str | dict[str, Any], columns: ColumnsConfig) -> dict:
        """The canonical example of one predict input (``{input_key: PATH}`` or a row)."""
        if isinstance(item, str):
            item = {self.input_key: item}
        if self.input_key not in item and getattr(columns, self.input_key) not in item:
            raise InvalidRow(f"needs {self.input_key!r} (a file path), e.g. --{self.input_key}")
        value = item.get(self.input_key, item.get(getattr(columns, self.input_key)))
        return {self.input_key: self.media(value, Path.cwd())}

    def generation_inputs(
        self, processor: Processor, prompts: list[str], examples: list[dict[str, Any]]
    ) -> tuple[list[list[int]], dict[str, Any]]:
        """Token ids of rendered ``prompts`` and the other model inputs of their ``examples``
        (e.g. ``pixel_values``), for a format that generates text."""
        raise NotImplementedError

    def predict_batch(self, processor: Processor, examples: list[dict[str, Any]]) -> dict:
        """The model inputs of predict examples (encoded and collated as at evaluation)."""
        columns = self.encode(examples, processor, None)
        values = zip(*columns.values(), strict=True)
        rows = [dict(zip(columns, row, strict=True)) for row in values]
        return self.collator(processor, None, train=False)(rows)
