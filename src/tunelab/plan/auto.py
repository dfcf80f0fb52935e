"""``method.name: auto`` and ``train.batch_size: auto``: choose from the plan, by a rule.

The rule (docs/planning.md):

1. Methods in order of preference. Classification with at least
   :data:`FULL_MIN_EXAMPLES` train examples on a model of at most :data:`FULL_MAX_PARAMS`
   parameters: full fine-tuning, then LoRA; anything else: LoRA (the best quality per trained
   parameter on small data and large models). QLoRA (LoRA over an NF4 base) comes last when
   bitsandbytes is installed and ``method.auto.allow_quantize``. ``method.auto.candidates``
   restricts the list.
2. LoRA rank from the data size (:func:`lora_rank`: 8 below 2,000 examples, 16 below
   20,000, else 32; alpha = 2 x rank), on every linear layer.
3. For each method in turn, the configurations in order: as configured; with gradient
   checkpointing; with the chunked loss (when it was off); with both. Within one, the largest
   micro-batch that divides the effective batch (``batch_size: auto``) or the configured
   micro-batch. The first that fits ``train.memory_budget`` (default: free memory) wins;
   gradient accumulation keeps the effective batch.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from tunelab.config import RunConfig, load_config
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_text
from tunelab.plan.rows import Plan, Row

FULL_MIN_EXAMPLES = 2000
FULL_MAX_PARAMS = 150_000_000


@dataclass
class AutoChoice:
    """What auto chose and why (written to config.yaml's header and train_summary.json)."""

    method: dict[str, Any]
    batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    loss_chunk_size: int | None
    estimated_peak_mb: float
    budget_mb: float
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def needs_auto(cfg: RunConfig) -> bool:
    """Whether ``cfg`` has anything for the planner to choose."""
    return cfg.method.name == "auto" or cfg.train.batch_size == "auto"


def lora_rank(examples: int) -> int:
    """LoRA rank for a train split of ``examples`` rows."""
    return 8 if examples < 2000 else 16 if examples < 20000 else 32


def preferred_methods(cfg: RunConfig, examples: int, params: int) -> list[str]:
    """Method labels in the order auto tries them (rule 1)."""
    if cfg.method.name != "auto":
        own = cfg.method.settings
        quantize = getattr(own, "quantize", None)
        return [f"lora+{quantize}" if quantize else cfg.method.name]
    settings = cfg.method.settings
    full = cfg.task == "classification" and examples >= FULL_MIN_EXAMPLES
    order = ["full", "lora"] if full and params <= FULL_MAX_PARAMS else ["lora"]
    if settings.allow_quantize and importlib.util.find_spec("bitsandbytes") is not None:
        order.append("lora+nf4")
    if settings.candidates:
        order = [m for m in order if m.split("+")[0] in settings.candidates]
        order += [m for m in settings.candidates if m not in order]
    return order


def resolve_auto(
    cfg: RunConfig, console: Console | None = None, memory_budget: str | None = None
) -> tuple[RunConfig, AutoChoice | None]:
    """The config with ``auto`` replaced by the planner's choice, and the choice (None when
    there was nothing to choose). Prints the choice and its reasons to ``console``."""
    if not needs_auto(cfg):
        return cfg, None
    from tunelab.plan.planner import build_plan
    from tunelab.plan.report import nothing_fits

    note = console.print if console is not None else None
    examples, params = data_and_model_size(cfg)
    order = preferred_methods(cfg, examples, params)
    planned = planning_config(cfg, examples)
    try:
        plan = build_plan(
            planned, memory_budget, note=note, methods=order, precisions=[cfg.train.precision]
        )
    except TunelabError as exc:
        raise TunelabError(
            f"method auto: {exc}; set method.name to a method that supports it"
        ) from None
    if not plan.candidates:
        why = "; ".join(f"{k}: {v}" for k, v in plan.skipped.items())
        raise TunelabError(f"method auto: no method in {', '.join(order)} applies ({why})")
    row = choose(cfg, plan, order)
    if row is None:
        raise nothing_fits(plan)
    choice = make_choice(cfg, plan, row, order, examples)
    resolved = apply_choice(cfg, choice)
    if console is not None:
        console.print(f"[bold]auto:[/] {summary_line(choice)}", soft_wrap=True)
        for reason in choice.reasons:
            console.print(f"  - {reason}", soft_wrap=True)
    return resolved, choice


def data_and_model_size(cfg: RunConfig) -> tuple[int, int]:
    """Train examples (after the data pipeline) and the model's parameter count (meta device)."""
    from tunelab.data import prepare_data

    prepared = prepare_data(cfg)
    examples = len(prepared.splits["train"])
    try:
        import torch
        from transformers import AutoConfig, AutoModel

        from tunelab.models import model_source

        config = AutoConfig.from_pretrained(model_source(cfg.model))
        with torch.device("meta"):
            params = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    except (OSError, ValueError) as exc:
        raise TunelabError(f"method auto: model.name_or_path cannot be read ({exc})") from None
    return examples, params


def planning_config(cfg: RunConfig, examples: int) -> RunConfig:
    """``cfg`` with method auto replaced by LoRA at the rule's rank (what the planner traces)."""
    if cfg.method.name != "auto":
        return cfg
    data = cfg.model_dump(mode="json")
    rank = lora_rank(examples)
    data["method"] = {"name": "lora", "lora": {"r": rank, "alpha": 2.0 * rank}}
    return load_config(data)


def choose(cfg: RunConfig, plan: Plan, order: list[str]) -> Row | None:
    """The first fitting row by rule 3, or None."""
    chunk = cfg.train.loss_chunk_size or 0
    steps = [(False, chunk), (True, chunk)]
    if not chunk and cfg.task == "causal_lm":
        steps += [(False, 1024), (True, 1024)]
    fixed = None if cfg.train.batch_size == "auto" else cfg.train.batch_size
    for label in order:
        for checkpointing, loss_chunk in steps:
            rows = [
                r for r in plan.rows
                if r.method == label and r.gradient_checkpointing == checkpointing
                and r.loss_chunk_size == loss_chunk and r.fits
                and (fixed is None or r.micro_batch == fixed)
            ]  # fmt: skip
            if rows:
                return max(rows, key=lambda r: r.micro_batch)
    return None


def make_choice(
    cfg: RunConfig, plan: Plan, row: Row, order: list[str], examples: int
) -> AutoChoice:
    """The choice of ``row`` with the reasons for it."""
    candidate = next(c for c in plan.candidates if c.label == row.method)
    reasons = []
    if cfg.method.name == "auto":
        reasons.append(
            f"method {row.method}: first of {', '.join(order)} (task {cfg.task}, {examples} "
            f"train examples) with a configuration that fits"
        )
        if row.method.startswith("lora"):
            settings = candidate.method["lora"]
            reasons.append(
                f"LoRA rank {settings['r']} for {examples} examples (8 below 2,000, 16 below "
                "20,000, else 32), alpha 2 x rank, on all linear layers"
            )
    reasons.append(
        f"micro-batch {row.micro_batch} x {row.gradient_accumulation_steps} accumulation = "
        f"effective batch {plan.effective_batch}"
    )
    if row.gradient_checkpointing and not cfg.model.gradient_checkpointing:
        reasons.append("gradient checkpointing turned on: without it nothing fits")
    if row.loss_chunk_size and not cfg.train.loss_chunk_size:
        reasons.append(f"chunked loss ({row.loss_chunk_size}) turned on: without it nothing fits")
    reasons.append(
        f"estimated peak {row.peak_memory_mb:,.0f} MB within the budget of "
        f"{plan.budget_mb:,.0f} MB ({plan.budget_source})"
    )
    return AutoChoice(
        method=candidate.method,
        batch_size=row.micro_batch,
        gradient_accumulation_steps=row.gradient_accumulation_steps,
        gradient_checkpointing=row.gradient_checkpointing or cfg.model.gradient_checkpointing,
        loss_chunk_size=row.loss_chunk_size or cfg.train.loss_chunk_size,
        estimated_peak_mb=row.peak_memory_mb,
        budget_mb=plan.budget_mb,
        reasons=reasons,
    )


def apply_choice(cfg: RunConfig, choice: AutoChoice) -> RunConfig:
    """``cfg`` with the choice written in: a config that trains the same without auto."""
    data = cfg.model_dump(mode="json")
    data["method"] = choice.method
    data["model"]["gradient_checkpointing"] = choice.gradient_checkpointing
    train = data["train"]
    train.update(
        batch_size=choice.batch_size,
        gradient_accumulation_steps=choice.gradient_accumulation_steps,
        effective_batch_size=None,
        loss_chunk_size=choice.loss_chunk_size,
    )
    return load_config(data)


def summary_line(choice: AutoChoice) -> str:
    """The choice in one line."""
    method = choice.method["name"]
    quantize = (choice.method.get("lora") or {}).get("quantize")
    return (
        f"method {method}{f' (quantize {quantize})' if quantize else ''}, micro-batch "
        f"{choice.batch_size} x {choice.gradient_accumulation_steps}, gradient checkpointing "
        f"{'on' if choice.gradient_checkpointing else 'off'}, estimated peak "
        f"{choice.estimated_peak_mb:,.0f} MB"
    )


def annotate_config(path: Any, choice: AutoChoice) -> None:
    """Put the choice and its reasons at the top of the run's config.yaml, as comments."""
    lines = [f"# chosen by auto: {summary_line(choice)}"]
    lines += [f"#   - {reason}" for reason in choice.reasons]
    atomic_write_text(path, "\n".join(lines) + "\n" + path.read_text(encoding="utf-8"))
