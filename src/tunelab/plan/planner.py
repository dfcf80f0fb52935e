"""Build a plan: trace every applicable method on the real model and data, then expand the
traces over precision, gradient checkpointing, loss chunking and micro-batch size."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tunelab.config import RunConfig
from tunelab.config.section import parse_memory_mb
from tunelab.errors import TunelabError, first_line
from tunelab.plan.estimate import (
    Shape,
    process_peak_mb,
    step_time_s,
    tensor_parts,
)
from tunelab.plan.hardware import Hardware, detect_hardware, runtime_base_mb
from tunelab.plan.rows import Candidate, DataShape, Plan, Row
from tunelab.plan.trace import StepTrace, trace_step

if TYPE_CHECKING:
    from torch import nn

MB = 2**20
QUANTIZED = ("nf4", "int8")
Note = Callable[[str], None]


def build_plan(
    cfg: RunConfig,
    memory_budget: str | None = None,
    probe: bool = False,
    note: Note | None = None,
    methods: list[str] | None = None,
    grid: bool = True,
    precisions: list[str] | None = None,
) -> Plan:
    """The plan of ``cfg`` on this machine (see docs/planning.md).

    ``methods``: only these table names (e.g. ``lora``, ``lora+nf4``); ``grid=False``: only
    the config's precision, checkpointing and loss chunking (every micro-batch still);
    ``precisions``: only these.
    """
    from tunelab.data import prepare_data
    from tunelab.models import load_tokenizer

    note = note or (lambda _text: None)
    hardware = detect_hardware()
    budget, source = budget_mb(cfg, memory_budget, hardware)
    tokenizer = load_tokenizer(cfg.model)
    prepared = prepare_data(cfg, tokenizer)
    data = data_shape(prepared.splits["train"])
    base = runtime_base_mb(cfg.model.model_dump_json())
    base_mb = base["rss_mb"] if hardware.device == "cpu" else base.get("cuda_context_mb", 0.0)
    longest = longest_batch(prepared.splits["train"], tokenizer.pad_token_id)
    options = [(k, v) for k, v in method_options(cfg) if not methods or k in methods]
    if methods and not options:
        known = ", ".join(label for label, _ in method_options(cfg))
        raise TunelabError(
            f"--method {', '.join(methods)}: not a method to plan; choose from {known}"
        )
    variants = [
        v for v in variant_options(cfg, hardware, grid) if not precisions or v[0] in precisions
    ]
    candidates, skipped = trace_candidates(
        cfg, options, prepared.label_names, longest, variants, hardware, note
    )
    if not candidates:
        reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise TunelabError(f"no fine-tuning method supports this model and task ({reasons})")
    plan = Plan(
        hardware, budget, source, effective_batch(cfg), data, base_mb, [], candidates, skipped
    )
    if probe:
        from tunelab.plan.probe import probe_candidates

        probe_candidates(cfg, plan, note, longest, prepared.label_names)
    plan.rows = expand(cfg, plan)
    return plan


def budget_mb(cfg: RunConfig, given: str | None, hardware: Hardware) -> tuple[float, str]:
    """The memory budget in MB and where it came from."""
    for value, source in (
        (given, "--memory-budget"),
        (cfg.train.memory_budget, "train.memory_budget"),
    ):
        if value is not None:
            try:
                return parse_memory_mb(value), source
            except ValueError as exc:
                raise TunelabError(f"{source}: {exc}") from None
    return hardware.free_mb, f"free {hardware.device} memory"


def effective_batch(cfg: RunConfig) -> int:
    """Examples per optimizer step the plan keeps."""
    train = cfg.train
    if train.batch_size == "auto":
        return train.effective_batch_size or 8 * train.gradient_accumulation_steps
    return train.batch_size * train.gradient_accumulation_steps


def data_shape(dataset: Any) -> DataShape:
    """Lengths of the train split's tokenised rows."""
    lengths = [len(ids) for ids in dataset["input_ids"]]
    if not lengths:
        raise TunelabError("the train split is empty; nothing to plan")
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    labels = dataset[longest]["labels"]
    loss = sum(1 for x in labels[1:] if x != -100) if isinstance(labels, list) else 0
    return DataShape(len(lengths), lengths[longest], sum(lengths) / len(lengths), loss)


def longest_batch(dataset: Any, pad_token_id: int) -> dict[str, Any]:
    """A micro-batch of one example: the train split's longest."""
    from tunelab.train.collate import PadCollator

    lengths = [len(ids) for ids in dataset["input_ids"]]
    longest = max(range(len(lengths)), key=lengths.__getitem__)
    return PadCollator(pad_token_id)([dataset[longest]])


def method_options(cfg: RunConfig) -> list[tuple[str, dict[str, Any]]]:
    """(label, method section) for every method the plan considers (the config's own settings
    for its method, defaults for the others; QLoRA variants when bitsandbytes is installed)."""
    import importlib.util

    from tunelab.methods.registry import METHODS

    own: dict[str, Any] = {"name": cfg.method.name}
    if cfg.method.settings is not None:
        own[cfg.method.name] = cfg.method.settings.model_dump(mode="json")
    allowed = (
        getattr(cfg.method.settings, "candidates", None) if cfg.method.name == "auto" else None
    )
    sections = [
        own if name == own["name"] else {"name": name}
        for name, method in METHODS.items()
        if not method.placeholder and (not allowed or name in allowed)
    ]
    if importlib.util.find_spec("bitsandbytes") is not None and (not allowed or "lora" in allowed):
        lora = own.get("lora", {}) if own["name"] == "lora" else {}
        sections += [
            {"name": "lora", "lora": {**lora, "quantize": quantize}}
            for quantize in QUANTIZED
            if lora.get("quantize") != quantize
        ]
    return [(label_of(section), section) for section in sections]


def label_of(section: dict[str, Any]) -> str:
    """The table's name of a method section: the method, ``+nf4``/``+int8`` for QLoRA."""
    quantize = (section.get("lora") or {}).get("quantize") if section["name"] == "lora" else None
    return f"lora+{quantize}" if quantize else section["name"]


def variant_options(cfg: RunConfig, hardware: Hardware, grid: bool) -> list[tuple[str, bool, int]]:
    """(precision, checkpointing, loss chunk) to trace: the grid, or the config's alone."""
    chunk = (cfg.train.loss_chunk_size or 0) if cfg.task == "causal_lm" else 0
    if not grid:
        return [(cfg.train.precision, cfg.model.gradient_checkpointing, chunk)]
    order = ("fp32", "bf16", "fp16")
    precisions = sorted(set(hardware.precisions) | {cfg.train.precision}, key=order.index)
    chunks = [chunk] if chunk or cfg.task != "causal_lm" else [0, 1024]
    return [(p, c, k) for p in precisions for c in (False, True) for k in chunks]


def trace_candidates(
    cfg: RunConfig,
    options: list[tuple[str, dict[str, Any]]],
    label_names: list[str] | None,
    batch: dict[str, Any],
    variants: list[tuple[str, bool, int]],
    hardware: Hardware,
    note: Note,
) -> tuple[list[Candidate], dict[str, str]]:
    """Apply each method to the real model and trace one step per precision x checkpointing."""
    from tunelab.config.method import method_adapter
    from tunelab.methods.registry import get_method
    from tunelab.models import load_model
    from tunelab.train.fast_dropout import apply_fast_dropout
    from tunelab.train.objective import loss_fn_for

    base: nn.Module | None = None
    candidates, skipped = [], {}
    for label, section in options:
        method_cfg = method_adapter().validate_python(section)
        quantize = getattr(method_cfg.settings, "quantize", None)
        note(f"tracing {label}")
        try:
            if quantize:
                model = load_model(cfg.model, cfg.task, label_names, quantize)
            else:
                base = base if base is not None else load_model(cfg.model, cfg.task, label_names)
                model = copy.deepcopy(base)
        except TunelabError as exc:
            skipped[label] = str(exc)
            continue
        reason = get_method(method_cfg.name).supports(cfg.task, model)
        if reason:
            skipped[label] = reason
            continue
        if hardware.device != "cpu" and not quantize:  # bitsandbytes places quantised models
            model.to(hardware.device)
        base_params = sum(p.numel() for p in model.parameters())
        model = get_method(method_cfg.name).apply(model, method_cfg.settings, cfg.task)
        apply_fast_dropout(model, cfg.train.fast_dropout, hardware.device)  # as training does
        candidate = describe(label, section, model, base_params, cfg.task)
        supported = checkpoint_options(model)
        for precision, checkpointing, chunk in variants:
            if checkpointing not in supported:
                continue
            set_checkpointing(model, checkpointing)
            try:
                trace = trace_step(
                    model,
                    batch,
                    loss_fn_for(cfg.task, chunk),
                    cfg.train,
                    precision,
                    hardware.device,
                )
            except RuntimeError as exc:  # e.g. checkpointing with virtual tokens
                name = f"{label} {precision}{' checkpointing' if checkpointing else ''}"
                skipped[name] = first_line(exc)
                continue
            candidate.traces[(precision, checkpointing, chunk)] = trace
        if candidate.traces:
            candidates.append(candidate)
        del model
    return candidates, skipped


def checkpoint_options(model: nn.Module) -> list[bool]:
    """Checkpointing off, and on where the model supports it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return [False, True] if getattr(base, "supports_gradient_checkpointing", False) else [False]


def set_checkpointing(model: nn.Module, on: bool) -> None:
    """Gradient checkpointing as ``model.gradient_checkpointing`` sets it in training."""
    from tunelab.checkpointing import disable_checkpointing, enable_checkpointing

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if on:
        enable_checkpointing(base)
        if hasattr(model, "enable_input_require_grads"):
            model.enable_input_require_grads()
    else:
        disable_checkpointing(base)


def describe(
    label: str, section: dict[str, Any], model: nn.Module, base_params: int, task: str
) -> Candidate:
    """Parameter counts, artifact size and the FLOP shape of a method applied to ``model``."""
    from torch import nn

    from tunelab.methods.common import find_blocks
    from tunelab.methods.registry import get_method

    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    linear = trainable_linear = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            weight_numel = module.in_features * module.out_features
            linear += weight_numel
            trainable_linear += weight_numel if module.weight.requires_grad else 0
    hidden = int(getattr(model.config, "hidden_size", 0) or getattr(model.config, "n_embd", 0))
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    vocab = int(head.weight.shape[0]) if task == "causal_lm" and head is not None else 0
    _, blocks = find_blocks(model)
    total = sum(p.numel() for p in params)
    whole = get_method(section["name"]).whole_model
    artifact = sum(p.numel() * p.element_size() for p in (params if whole else trainable))
    return Candidate(
        label, section, Shape(linear, trainable_linear, len(blocks), hidden, vocab),
        sum(p.numel() for p in trainable), total, total - base_params, artifact / MB,
    )  # fmt: skip


def expand(cfg: RunConfig, plan: Plan) -> list[Row]:
    """Every traced configuration at every micro-batch that divides the effective batch."""
    rows = []
    micros = [m for m in (1, 2, 4, 8, 16, 32, 64) if plan.effective_batch % m == 0]
    for candidate in plan.candidates:
        for (precision, checkpointing, chunk), trace in candidate.traces.items():
            for micro in micros:
                rows.append(
                    make_row(cfg, plan, candidate, trace, precision, checkpointing, chunk, micro)
                )
    return rows


def make_row(
    cfg: RunConfig,
    plan: Plan,
    candidate: Candidate,
    trace: StepTrace,
    precision: str,
    checkpointing: bool,
    chunk: int,
    micro: int,
) -> Row:
    """One configuration's estimates."""
    data, shape = plan.data, candidate.shape
    held, transient = tensor_parts(trace, micro, data.loss_tokens, chunk, shape.vocab)
    hw = plan.hardware
    peak = process_peak_mb(held, transient, plan.base_mb, hw.device, hw.allocator)
    accumulation = plan.effective_batch // micro
    seq = max(1, round(data.mean_length))
    per_micro, timed_by = micro_time(plan, candidate, precision, checkpointing, micro, seq)
    step = per_micro * accumulation
    steps_per_epoch = math.ceil(data.examples / plan.effective_batch)
    weights = trace.weight_bytes / MB
    breakdown = {
        "base": round(plan.base_mb, 1),
        "weights": round(weights, 1),
        "gradients": round(trace.grad_bytes / MB, 1),
        "optimizer": round(trace.optimizer_bytes / MB, 1),
        "activations": round(
            max(
                0.0, peak - plan.base_mb - weights - (trace.grad_bytes + trace.optimizer_bytes) / MB
            ),
            1,
        ),
        "method_params": round(candidate.extra_params * 4 / MB, 1),
    }
    return Row(
        candidate.label, precision, checkpointing, chunk, micro, accumulation, round(peak, 1),
        round(step, 4), round(step * steps_per_epoch, 1), candidate.trainable_params,
        round(candidate.artifact_mb, 2), peak <= plan.budget_mb, timed_by, breakdown,
    )  # fmt: skip


def micro_time(
    plan: Plan, candidate: Candidate, precision: str, checkpointing: bool, micro: int, seq: int
) -> tuple[float, str]:
    """Seconds per micro-batch: from the probe's fit where there is one, else from FLOPs."""
    from tunelab.plan.estimate import step_flops

    shape, gflops = candidate.shape, plan.hardware.gflops
    speed = gflops.get(precision, gflops.get("fp32", 1.0))
    flops_time = step_time_s(shape, micro * seq, seq, checkpointing, speed)
    fit = candidate.probe
    if not fit:
        return flops_time, "flops"
    reference = step_flops(shape, fit["tokens"], fit["seq"], False)
    scale = step_flops(shape, micro * seq, seq, checkpointing) / reference
    speedup = gflops.get(fit["precision"], speed) / speed
    return fit["a"] + fit["per_reference"] * scale * speedup, "probe"
