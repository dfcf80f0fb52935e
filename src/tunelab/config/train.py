"""The ``train`` section: optimisation, schedule, precision, checkpoints, early stopping."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PlainValidator, WithJsonSchema, field_validator, model_validator

from tunelab.config.adjust import InstabilityConfig, OnOom
from tunelab.config.section import Fraction, PositiveInt, Section, check_regexes, parse_memory_mb
from tunelab.metric_catalog import infer_mode


class EarlyStoppingConfig(Section):
    metric: str = Field(
        default="eval_loss", description="Validation metric that picks the best checkpoint."
    )
    mode: Literal["min", "max"] | None = Field(
        default=None,
        description="Whether lower or higher wins; None infers it from the metric (loss, "
        "perplexity: min; accuracy, f1, auc, bleu, rouge, meteor, exact match: max).",
    )
    patience: PositiveInt | None = Field(
        default=None, description="Stop after this many evaluations without improvement."
    )
    min_delta: float = Field(default=0.0, ge=0, description="Smallest change that counts.")

    @model_validator(mode="after")
    def _infer_mode(self) -> EarlyStoppingConfig:
        if self.mode is None:
            self.mode = infer_mode(self.metric)
        if self.mode is None:
            raise ValueError(
                f"cannot tell whether {self.metric!r} is better low or high; set mode: min or max"
            )
        return self


def _batch_size(value: object) -> int | str:
    """A positive micro-batch size, or ``auto``."""
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"got {value!r}; expected a positive integer or auto")
    if value <= 0:
        raise ValueError(f"got {value}; must be > 0")
    return value


BatchSize = Annotated[
    int | Literal["auto"],
    PlainValidator(_batch_size),
    WithJsonSchema({"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"const": "auto"}]}),
]


class TrainConfig(Section):
    epochs: float = Field(default=3.0, gt=0, description="Number of passes over the train split.")
    max_steps: PositiveInt | None = Field(
        default=None, description="Stop after this many optimizer steps (the smaller of the two)."
    )
    batch_size: BatchSize = Field(
        default=8,
        description="Micro-batch size per process; auto: the planner picks the largest that "
        "fits train.memory_budget and sets gradient_accumulation_steps to keep "
        "effective_batch_size (see docs/planning.md).",
    )
    effective_batch_size: PositiveInt | None = Field(
        default=None,
        description="With batch_size auto: examples per optimizer step to keep (default: 8 x "
        "gradient_accumulation_steps).",
    )
    memory_budget: str | None = Field(
        default=None,
        description="Memory that method/batch_size auto must fit in, e.g. 6GB or 800MB "
        "(default: what the device has free).",
    )
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
    on_oom: OnOom = Field(
        default="adapt",
        description="Out of memory at a step: adapt (halve the micro-batch, double "
        "accumulation, redo the step; one process only) or stop with the options.",
    )
    instability: InstabilityConfig = Field(
        default_factory=InstabilityConfig,
        description="Non-finite steps and loss/gradient-norm spikes: stop, or roll back and "
        "lower the LR.",
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
    fast_dropout: bool | Literal["adapters"] = Field(
        default="adapters",
        description="On CPU, draw dropout masks from cheap random bits (same drop probability "
        "to 2^-16): 'adapters' (default) for the dropout the method adds (LoRA's, adapters'); "
        "true for all dropout, the model's attention too (opt-in, see docs/performance.md); "
        "false: torch's sampler everywhere.",
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes.")

    _regexes = field_validator("lr_multipliers")(check_regexes)

    @field_validator("memory_budget")
    @classmethod
    def _budget(cls, value: str | None) -> str | None:
        if value is not None:
            parse_memory_mb(value)
        return value

    @model_validator(mode="after")
    def _warmup(self) -> TrainConfig:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("give warmup_steps or warmup_ratio, not both")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr:g}) must be <= lr ({self.lr:g})")
        if self.skip_nonfinite and self.instability.action == "rollback":
            raise ValueError(
                "skip_nonfinite and instability.action rollback both handle non-finite steps; "
                "choose one"
            )
        if self.effective_batch_size and self.batch_size != "auto":
            raise ValueError("effective_batch_size applies with batch_size: auto only")
        return self
