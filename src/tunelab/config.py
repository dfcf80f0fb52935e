"""The run config: one YAML file describes a whole fine-tuning run.

Sections: ``model``, ``data``, ``method``, ``train``, ``eval``, ``output``. Everything is
validated up front by pydantic v2 models (no heavy imports here), and every problem is
reported at once with the full key path, the value given and what is allowed.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tunelab.errors import ConfigError

Task = Literal["classification", "causal_lm"]
DataFormat = Literal["classification", "instruction", "chat", "qa", "text"]
MethodName = Literal[
    "full", "freeze", "bitfit", "adapter", "lora", "prompt_tuning", "prefix_tuning"
]
PositiveInt = Annotated[int, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, use_attribute_docstrings=True)


# ----------------------------------------------------------------------------- model


class ModelConfig(Section):
    name_or_path: str = Field(description="Local directory or hub id of the pretrained model.")
    tokenizer: str | None = Field(
        default=None, description="Tokenizer path or id; defaults to model.name_or_path."
    )
    task: Task | None = Field(
        default=None,
        description="classification or causal_lm; inferred from data.format when omitted "
        "(classification format -> classification, every other format -> causal_lm).",
    )
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = Field(
        default="float32", description="dtype the weights are loaded in."
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] | None = Field(
        default=None, description="Attention kernel; None lets Transformers choose (sdpa)."
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in backward to save memory."
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow custom modelling code shipped with the model."
    )
    gguf_file: str | None = Field(
        default=None,
        description="GGUF file name inside model.name_or_path; it is dequantised once and the "
        "result cached under model.cache_dir.",
    )
    cache_dir: str | None = Field(
        default=None,
        description="Where dequantised GGUF models are cached (default ~/.cache/tunelab/models).",
    )


# ----------------------------------------------------------------------------- data


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
        description="classification, instruction (alpaca), chat, qa or text (plain LM)."
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
    split: SplitConfig = Field(default_factory=SplitConfig, description="Split fractions.")
    cache_dir: str | None = Field(
        default=None, description="Tokenised-data cache (default ~/.cache/tunelab/data)."
    )

    @model_validator(mode="after")
    def _check_format_columns(self) -> DataConfig:
        if self.format != "classification":
            for key in ("label", "text_pair"):
                default = ColumnsConfig.model_fields[key].default
                if getattr(self.columns, key) not in (None, default):
                    raise ValueError(
                        f"columns.{key} is set but format is {self.format!r}; a {key} column "
                        "only applies to format: classification"
                    )
        if self.format == "classification" and not self.columns.label:
            raise ValueError("format classification needs columns.label")
        if self.file_type == "folder" and self.format != "classification":
            raise ValueError("file_type folder (one folder per label) needs format classification")
        if (self.clean.keep_labels or self.clean.drop_labels) and self.format != "classification":
            raise ValueError("clean.keep_labels/drop_labels need format classification")
        return self


# ----------------------------------------------------------------------------- method


class FreezeSettings(Section):
    """Layer freezing: train the top N blocks, or parameters matching patterns."""

    top_n_layers: PositiveInt | None = Field(
        default=None, description="Train only the top N transformer blocks (+ head, final norm)."
    )
    patterns: list[str] | None = Field(
        default=None, description="Regexes of parameter names to train (instead of top_n_layers)."
    )
    train_head: bool = Field(default=True, description="Also train the task head.")

    @model_validator(mode="after")
    def _one_of(self) -> FreezeSettings:
        if (self.top_n_layers is None) == (self.patterns is None):
            raise ValueError("give exactly one of top_n_layers or patterns")
        return self


class BitFitSettings(Section):
    """Bias-only training."""

    train_head: bool = Field(default=True, description="Also train the task head.")


class AdapterSettings(Section):
    """Bottleneck adapters (Houlsby or Pfeiffer)."""

    kind: Literal["houlsby", "pfeiffer"] = Field(
        default="pfeiffer",
        description="houlsby: after attention and after the feed-forward sublayer; "
        "pfeiffer: after the feed-forward sublayer only.",
    )
    bottleneck_size: PositiveInt | None = Field(
        default=None, description="Bottleneck width; or give reduction_factor."
    )
    reduction_factor: PositiveInt | None = Field(
        default=None, description="hidden_size / bottleneck (default 16 when neither is given)."
    )
    activation: Literal["relu", "gelu", "silu", "tanh"] = Field(
        default="relu", description="Activation inside the bottleneck."
    )
    dropout: Fraction = Field(default=0.0, description="Dropout inside the adapter.")
    train_head: bool = Field(default=True, description="Also train the task head.")

    @model_validator(mode="after")
    def _size(self) -> AdapterSettings:
        if self.bottleneck_size is not None and self.reduction_factor is not None:
            raise ValueError("give bottleneck_size or reduction_factor, not both")
        return self


class LoraSettings(Section):
    """LoRA through PEFT."""

    r: PositiveInt = Field(default=8, description="Rank of the update matrices.")
    alpha: float = Field(default=16.0, gt=0, description="Scaling numerator (alpha / r).")
    dropout: Fraction = Field(default=0.05, description="Dropout on the LoRA input.")
    target_modules: Literal["all-linear"] | list[str] = Field(
        default="all-linear",
        description="Module names to adapt; all-linear = every linear layer except the head.",
    )
    use_rslora: bool = Field(default=False, description="Rank-stabilised scaling alpha/sqrt(r).")
    use_dora: bool = Field(default=False, description="Weight-decomposed LoRA (DoRA).")


class PromptTuningSettings(Section):
    """Soft prompt tuning through PEFT."""

    num_virtual_tokens: PositiveInt = Field(default=20, description="Soft prompt length.")
    init: Literal["random", "text"] = Field(default="random", description="Initialisation.")
    init_text: str | None = Field(default=None, description="Text to initialise from (init: text).")

    @model_validator(mode="after")
    def _init_text(self) -> PromptTuningSettings:
        if self.init == "text" and not self.init_text:
            raise ValueError("init: text needs init_text")
        if self.init == "random" and self.init_text:
            raise ValueError("init_text is set but init is random; set init: text")
        return self


class PrefixTuningSettings(Section):
    """Prefix tuning through PEFT."""

    num_virtual_tokens: PositiveInt = Field(default=20, description="Prefix length.")
    reparameterize: bool = Field(
        default=False, description="Train the prefix through an MLP (PEFT prefix_projection)."
    )
    encoder_hidden_size: PositiveInt | None = Field(
        default=None, description="Hidden size of the reparameterisation MLP."
    )


METHOD_SETTINGS: dict[str, str] = {
    "freeze": "freeze",
    "bitfit": "bitfit",
    "adapter": "adapter",
    "lora": "lora",
    "prompt_tuning": "prompt_tuning",
    "prefix_tuning": "prefix_tuning",
}


class MethodConfig(Section):
    name: MethodName = Field(default="lora", description="Which fine-tuning method to use.")
    freeze: FreezeSettings | None = Field(default=None, description="Settings for name: freeze.")
    bitfit: BitFitSettings = Field(
        default_factory=BitFitSettings, description="Settings for name: bitfit."
    )
    adapter: AdapterSettings = Field(
        default_factory=AdapterSettings, description="Settings for name: adapter."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="Settings for name: lora.")
    prompt_tuning: PromptTuningSettings = Field(
        default_factory=PromptTuningSettings, description="Settings for name: prompt_tuning."
    )
    prefix_tuning: PrefixTuningSettings = Field(
        default_factory=PrefixTuningSettings, description="Settings for name: prefix_tuning."
    )

    @model_validator(mode="after")
    def _settings_match_name(self) -> MethodConfig:
        stray = [k for k in METHOD_SETTINGS if k != self.name and not self._is_default(k)]
        if stray:
            raise ValueError(
                f"settings block(s) {', '.join(stray)} given but method.name is {self.name!r}; "
                f"remove them or set method.name: {stray[0]}"
            )
        if self.name == "freeze" and self.freeze is None:
            raise ValueError("method.name freeze needs a method.freeze block with top_n_layers")
        return self

    def _is_default(self, name: str) -> bool:
        """True when settings block ``name`` was left out or equals its defaults."""
        field = type(self).model_fields[name]
        return getattr(self, name) == field.get_default(call_default_factory=True)

    @property
    def settings(self) -> Section | None:
        """The settings block of the chosen method (None for full fine-tuning)."""
        return getattr(self, self.name, None) if self.name != "full" else None


# ----------------------------------------------------------------------------- train


class EarlyStoppingConfig(Section):
    metric: str = Field(
        default="eval_loss", description="Validation metric that picks the best checkpoint."
    )
    mode: Literal["min", "max"] = Field(default="min", description="Whether lower or higher wins.")
    patience: PositiveInt | None = Field(
        default=None, description="Stop after this many evaluations without improvement."
    )
    min_delta: float = Field(default=0.0, ge=0, description="Smallest change that counts.")


class TrainConfig(Section):
    epochs: float = Field(default=3.0, gt=0, description="Number of passes over the train split.")
    max_steps: PositiveInt | None = Field(
        default=None, description="Stop after this many optimizer steps (the smaller of the two)."
    )
    batch_size: PositiveInt = Field(default=8, description="Micro-batch size per process.")
    eval_batch_size: PositiveInt | None = Field(
        default=None, description="Evaluation batch size (default: 2 x batch_size)."
    )
    gradient_accumulation_steps: PositiveInt = Field(
        default=1, description="Micro-batches per optimizer step."
    )
    lr: float = Field(default=2e-4, gt=0, description="Peak learning rate.")
    optimizer: Literal["adamw", "sgd"] = Field(default="adamw", description="Optimizer.")
    betas: tuple[float, float] = Field(default=(0.9, 0.999), description="AdamW betas.")
    eps: float = Field(default=1e-8, gt=0, description="AdamW epsilon.")
    momentum: float = Field(default=0.9, ge=0, description="SGD momentum.")
    weight_decay: float = Field(
        default=0.0,
        ge=0,
        description="Decoupled weight decay (never on biases, norms, embeddings).",
    )
    llrd: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Layer-wise LR decay: each lower block's LR is multiplied by this (full, freeze).",
    )
    lr_multipliers: dict[str, float] = Field(
        default_factory=dict,
        description="Per-group learning rate: {regex over parameter names: multiplier of lr}.",
    )
    scheduler: Literal["constant", "linear", "cosine"] = Field(
        default="cosine", description="Learning-rate schedule after warmup."
    )
    warmup_steps: int = Field(default=0, ge=0, description="Linear warmup steps.")
    warmup_ratio: Fraction = Field(default=0.0, description="Warmup as a fraction of all steps.")
    min_lr: float = Field(default=0.0, ge=0, description="Floor of the schedule.")
    dropout: Fraction | None = Field(
        default=None, description="Override the model's hidden dropout."
    )
    attention_dropout: Fraction | None = Field(
        default=None, description="Override the model's attention dropout."
    )
    max_grad_norm: float | None = Field(
        default=1.0, gt=0, description="Clip gradients to this norm (None: no clipping)."
    )
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        default="fp32", description="Mixed precision through Accelerate (bf16 works on CPU)."
    )
    fp16_initial_scale: float = Field(
        default=65536.0,
        gt=0,
        description="fp16 only: initial loss scale (halved at each overflow, whose update is "
        "skipped; doubled after 2000 steps without one).",
    )
    eval_every: PositiveInt | None = Field(
        default=None, description="Validate every N optimizer steps (and at each epoch end)."
    )
    save_every: PositiveInt | None = Field(
        default=None, description="Write a checkpoint every N optimizer steps."
    )
    keep_last: PositiveInt = Field(default=2, description="Checkpoints kept besides the best.")
    early_stopping: EarlyStoppingConfig = Field(
        default_factory=EarlyStoppingConfig, description="Best checkpoint and early stopping."
    )
    seed: int = Field(default=42, description="Seed for initialisation, data order and dropout.")
    skip_nonfinite: bool = Field(
        default=False, description="Skip updates with a non-finite loss instead of stopping."
    )
    log_every: PositiveInt = Field(default=1, description="Log metrics every N optimizer steps.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=lambda: ["tensorboard"], description="Experiment trackers."
    )
    packing: bool = Field(
        default=False,
        description="Pack several causal-LM examples per row with no cross-example attention.",
    )
    group_by_length: bool = Field(
        default=True, description="Batch examples of similar length to reduce padding."
    )
    loss_chunk_size: int | None = Field(
        default=1024,
        ge=0,
        description="Causal LM: the loss over this many positions at a time, never the full "
        "fp32 logits (same values; 0 or null: off, the full-logits loss).",
    )
    compile: bool = Field(default=False, description="torch.compile the model (falls back).")
    fast_dropout: bool = Field(
        default=False,
        description="On CPU, draw dropout masks from cheap random bits and keep SDPA attention "
        "fused when no dropout applies (same drop probability to 2^-16; opt-in, see "
        "docs/performance.md).",
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes.")

    @model_validator(mode="after")
    def _warmup(self) -> TrainConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give warmup_steps or warmup_ratio, not both")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr:g}) must be <= lr ({self.lr:g})")
        return self


# ----------------------------------------------------------------------------- eval


class GenerationConfig(Section):
    max_new_tokens: PositiveInt = Field(default=64, description="Tokens to generate at most.")
    do_sample: bool = Field(default=False, description="Sample instead of greedy decoding.")
    temperature: float = Field(default=1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling threshold.")
    repetition_penalty: float = Field(default=1.0, gt=0, description="Repetition penalty.")


METRIC_NAMES = (
    "accuracy",
    "f1",
    "auc",
    "confusion_matrix",
    "bleu",
    "rouge",
    "meteor",
    "exact_match",
    "qa_f1",
    "perplexity",
    "diversity",
    "consistency",
    "efficiency",
)


class EvalConfig(Section):
    split: Literal["train", "validation", "test"] = Field(
        default="test", description="Split to evaluate."
    )
    metrics: list[Literal[METRIC_NAMES]] | None = Field(  # type: ignore[valid-type]
        default=None, description="Metrics to compute; default chosen by task and format."
    )
    batch_size: PositiveInt = Field(default=16, description="Evaluation batch size.")
    max_samples: PositiveInt | None = Field(default=None, description="Evaluate at most N rows.")
    generation: GenerationConfig = Field(
        default_factory=GenerationConfig, description="Decoding settings for generation tasks."
    )
    at_end: bool = Field(default=True, description="Evaluate automatically when training ends.")
    prompting_baseline: bool = Field(
        default=False, description="Also evaluate the base model zero-shot and k-shot."
    )
    shots: int = Field(default=3, ge=0, description="k for the k-shot prompting baseline.")
    language: Literal["auto", "en", "zh"] = Field(
        default="auto", description="Tokenisation for BLEU/ROUGE/EM; auto detects Chinese."
    )
    nli_model: str | None = Field(
        default=None, description="Local NLI model path for the optional consistency scorer."
    )


# ----------------------------------------------------------------------------- output


class OutputConfig(Section):
    dir: str = Field(description="Run directory: everything the run writes goes here.")


class RunConfig(Section):
    """A whole fine-tuning run."""

    model: ModelConfig = Field(description="Which pretrained model to start from.")
    data: DataConfig = Field(description="Where the data is and how to prepare it.")
    method: MethodConfig = Field(
        default_factory=MethodConfig, description="Fine-tuning method and its settings."
    )
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")
    output: OutputConfig = Field(description="Where results go.")

    @model_validator(mode="after")
    def _cross_sections(self) -> RunConfig:
        task = self.task
        if self.data.format == "classification" and task == "causal_lm":
            raise ValueError("model.task causal_lm does not fit data.format classification")
        if self.data.format != "classification" and task == "classification":
            raise ValueError(
                f"model.task classification needs data.format classification, not {self.data.format!r}"
            )
        if self.train.llrd is not None and self.method.name not in ("full", "freeze"):
            raise ValueError(
                f"train.llrd applies to method full or freeze, not {self.method.name!r}"
            )
        if self.train.packing and task != "causal_lm":
            raise ValueError("train.packing applies to causal_lm tasks only")
        if self.train.packing and self.method.name in ("prompt_tuning", "prefix_tuning"):
            raise ValueError("train.packing does not work with prompt or prefix tuning")
        return self

    @property
    def task(self) -> Task:
        """The model task, given or inferred from the data format."""
        if self.model.task:
            return self.model.task
        return "classification" if self.data.format == "classification" else "causal_lm"

    @property
    def run_dir(self) -> Path:
        return Path(self.output.dir)


# ----------------------------------------------------------------------------- loading


def load_config(
    source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Read, override and validate a run config; raise ConfigError listing every problem.

    ``overrides`` are ``dotted.key=value`` strings (values parsed as YAML), applied before
    validation so they are type-checked like the file.
    """
    name = None
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise ConfigError([f"config file not found: {path}"], None)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(
                [f"not valid YAML{line}: {getattr(exc, 'problem', exc)}"], name
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(["the top level must be a mapping of sections"], name)
    raw = apply_overrides(raw, overrides, name)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_problems(exc, raw), name) from None


def apply_overrides(
    raw: dict[str, Any], overrides: list[str] | tuple[str, ...], name: str | None
) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b.c=value`` overrides applied."""
    import copy

    out = copy.deepcopy(raw)
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"override {item!r} is not of the form key.path=value")
            continue
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(f"override {item!r}: {part!r} is not a section")
                break
            node = child
        else:
            try:
                node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
            except yaml.YAMLError:
                node[parts[-1]] = value
    if problems:
        raise ConfigError(problems, name)
    return out


def format_problems(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """Turn pydantic errors into lines naming the key path, the value and what is allowed."""
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            hint = _did_you_mean(loc)
            problems.append(f"{key}: unknown key{hint}")
        elif kind == "missing":
            problems.append(f"{key}: required key is missing")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            problems.append(f"{key}: {msg}" if loc else msg)
        else:
            given = _lookup(raw, err["loc"])
            allowed = _allowed(err)
            problems.append(f"{key}: got {given!r}; {allowed}")
    return problems


def _is_union_tag(part: Any) -> bool:
    """Pydantic puts union-member tags (e.g. 'literal[...]', 'list[str]') in error locations."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"expected one of {ctx['expected']}"
    for bound, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if bound in ctx:
            value = ctx[bound]
            return (
                f"must be {word} {value:g}"
                if isinstance(value, float)
                else f"must be {word} {value}"
            )
    return str(err["msg"]).replace("Input should be", "expected").rstrip(".")


def _lookup(raw: Any, loc: tuple[Any, ...]) -> Any:
    node = raw
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list | tuple) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return node if node is not raw else None
    return node


def _did_you_mean(loc: list[str]) -> str:
    fields = _fields_at(loc[:-1])
    if not fields:
        return ""
    close = difflib.get_close_matches(loc[-1], fields, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?"
    return f"; valid keys here: {', '.join(sorted(fields))}"


def _fields_at(path: list[str]) -> list[str]:
    """Names of the valid keys of the section at ``path`` (empty when not a section)."""
    model: Any = RunConfig
    for part in path:
        field = model.model_fields.get(part) if _is_section(model) else None
        if field is None:
            return []
        model = _section_type(field.annotation)
    return list(model.model_fields) if _is_section(model) else []


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _section_type(annotation: Any) -> Any:
    if _is_section(annotation):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if _is_section(arg):
                return arg
    return None


def json_schema() -> dict[str, Any]:
    """JSON Schema of the run config, with a description on every field."""
    return RunConfig.model_json_schema()


def dump_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from tunelab.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
