"""The ``data`` section: where the data is, its columns, cleaning and split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunelab.config.section import DataFormat, Fraction, PositiveInt, Section
from tunelab.modalities.registry import format_task


class ColumnsConfig(Section):
    """Names of the columns in the user's files, per format."""

    text: str = Field(default="text", description="Input text (classification, text).")
    text_pair: str | None = Field(
        default=None, description="Optional second text for pair classification."
    )
    label: str | None = Field(default="label", description="Class label (classification).")
    instruction: str = Field(default="instruction", description="Alpaca instruction column.")
    input: str = Field(default="input", description="Alpaca optional input column.")
    output: str = Field(default="output", description="Alpaca response column.")
    system: str | None = Field(default=None, description="Optional system-prompt column.")
    messages: str = Field(
        default="messages",
        description="Chat column: list of {role, content} (or sharegpt {from, value}).",
    )
    context: str = Field(default="context", description="QA context column.")
    question: str = Field(default="question", description="QA question column.")
    answer: str = Field(default="answer", description="QA answer column.")
    image: str = Field(
        default="image",
        description="Image column (image formats): a path relative to the data file, or bytes.",
    )


class CleanConfig(Section):
    """Cleaning steps; each is switchable and counted in the data report."""

    normalize: bool = Field(default=True, description="Unicode NFKC and whitespace trimming.")
    drop_invalid: bool = Field(default=True, description="Drop empty or invalid rows.")
    dedup: bool = Field(default=True, description="Drop exact duplicates (after normalisation).")
    near_dedup: bool = Field(default=False, description="Drop near-duplicates with MinHash LSH.")
    near_dedup_threshold: Fraction = Field(
        default=0.85,
        description="Estimated Jaccard similarity (word 5-gram shingles) above "
        "which two rows count as near-duplicates.",
    )
    min_chars: PositiveInt | None = Field(default=None, description="Drop rows shorter than this.")
    max_chars: PositiveInt | None = Field(default=None, description="Drop rows longer than this.")
    min_tokens: PositiveInt | None = Field(default=None, description="Drop rows with fewer tokens.")
    max_tokens: PositiveInt | None = Field(
        default=None, description="Drop rows with more tokens (instead of truncating them)."
    )
    keep_labels: list[str] | None = Field(default=None, description="Keep only these labels.")
    drop_labels: list[str] | None = Field(default=None, description="Drop rows with these labels.")

    @model_validator(mode="after")
    def _check_ranges(self) -> CleanConfig:
        if self.min_chars and self.max_chars and self.min_chars > self.max_chars:
            raise ValueError("min_chars must be <= max_chars")
        if self.min_tokens and self.max_tokens and self.min_tokens > self.max_tokens:
            raise ValueError("min_tokens must be <= max_tokens")
        if self.keep_labels and self.drop_labels:
            raise ValueError("give keep_labels or drop_labels, not both")
        return self


class AugmentConfig(Section):
    """Train-time image augmentation (image_classification); evaluation never augments."""

    crop_scale: Fraction | None = Field(
        default=None,
        description="Random resized crop keeping at least this share of the image area "
        "(e.g. 0.8), before the model's resize; None: no crop.",
    )
    flip: bool = Field(default=False, description="Random horizontal flip (p=0.5).")

    @model_validator(mode="after")
    def _check_crop(self) -> AugmentConfig:
        if self.crop_scale is not None and self.crop_scale <= 0:
            raise ValueError("crop_scale must be > 0")
        return self


class SplitConfig(Section):
    """Seeded train/validation/test split (ignored for splits given as files)."""

    train: Fraction = Field(default=0.8, description="Fraction of rows for training.")
    validation: Fraction = Field(default=0.1, description="Fraction of rows for validation.")
    test: Fraction = Field(default=0.1, description="Fraction of rows for testing.")
    seed: int = Field(default=42, description="Seed; the same seed gives identical splits.")
    stratify: bool = Field(default=True, description="Stratify by label for classification.")

    @model_validator(mode="after")
    def _check_sum(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"split fractions train+validation+test sum to {total:g}; they must sum to <= 1"
            )
        if self.train <= 0:
            raise ValueError("split.train must be > 0")
        return self


class DataConfig(Section):
    path: str | list[str] = Field(
        description="Training data: a file (jsonl/json/csv/tsv/parquet), a list of files, "
        "or a folder with one sub-folder of .txt files per label."
    )
    format: DataFormat = Field(
        description="classification, instruction (alpaca), chat, qa, text (plain LM) or "
        "image_classification (docs/multimodal.md)."
    )
    file_type: Literal["auto", "jsonl", "json", "csv", "tsv", "parquet", "folder"] = Field(
        default="auto", description="File type; auto detects it from the extension."
    )
    validation_path: str | None = Field(
        default=None, description="Validation split file; disables the fractional split for it."
    )
    test_path: str | None = Field(
        default=None, description="Test split file; disables the fractional split for it."
    )
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig, description="Column mapping.")
    encoding: str = Field(default="utf-8", description="Text encoding of the data files.")
    max_samples: PositiveInt | None = Field(
        default=None, description="Use at most this many rows (after a seeded shuffle)."
    )
    on_bad_rows: Literal["error", "skip"] = Field(
        default="error", description="error: stop at a malformed row; skip: count and report it."
    )
    max_length: PositiveInt = Field(default=512, description="Maximum tokens per example.")
    truncation_side: Literal["right", "left"] = Field(
        default="right", description="Which end is cut when an example is too long."
    )
    template: Literal["auto", "default"] = Field(
        default="auto",
        description="auto: the tokenizer's chat template if it has one, else tunelab's default "
        "template; default: always tunelab's default template.",
    )
    loss_on: Literal["response", "all"] = Field(
        default="response",
        description="Which tokens carry the loss for instruction/chat/qa data.",
    )
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning steps.")
    image_size: PositiveInt | None = Field(
        default=None,
        description="Image formats: resize images to this square size instead of the model "
        "processor's (e.g. 112 for small images on a CPU); saved with the artifact.",
    )
    augment: AugmentConfig = Field(
        default_factory=AugmentConfig, description="Train-time image augmentation (off)."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Split fractions.")
    cache_dir: str | None = Field(
        default=None, description="Tokenised-data cache (default ~/.cache/tunelab/data)."
    )

    @model_validator(mode="after")
    def _check_format_columns(self) -> DataConfig:
        labelled = format_task(self.format) == "classification"
        if not labelled:
            for key in ("label", "text_pair"):
                default = ColumnsConfig.model_fields[key].default
                if getattr(self.columns, key) not in (None, default):
                    raise ValueError(
                        f"columns.{key} is set but format is {self.format!r}; a {key} column "
                        "only applies to format: classification"
                    )
        if labelled and not self.columns.label:
            raise ValueError(f"format {self.format} needs columns.label")
        if self.file_type == "folder" and not labelled:
            raise ValueError("file_type folder (one folder per label) needs format classification")
        if (self.clean.keep_labels or self.clean.drop_labels) and not labelled:
            raise ValueError("clean.keep_labels/drop_labels need format classification")
        return self
