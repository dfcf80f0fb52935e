"""Checks on the loss curves: overfitting, underfitting, a learning rate too high or too low
for the method, missing warmup."""

from __future__ import annotations

import math
from collections.abc import Iterator

from tunelab.doctor.finding import Finding, list_steps
from tunelab.doctor.record import RunRecord, median

# typical peak learning rates per method (AdamW), for the advice; unknown methods: LoRA's
LR_RANGES = {
    "full": (1e-5, 1e-4),
    "freeze": (1e-5, 2e-4),
    "bitfit": (1e-4, 1e-2),
    "adapter": (1e-4, 1e-3),
    "lora": (1e-4, 1e-3),
    "prompt_tuning": (1e-3, 3e-1),
    "prefix_tuning": (1e-4, 1e-2),
}
OVERFIT_RISE = 0.05  # the validation metric this much worse than its best (relative)
FLAT_DROP = 0.05  # underfitting: the training loss fell by less than this (relative)
FLAT_FLOOR = 0.2  # ... and stayed above this
LOSS_RISE = 0.2  # LR too high: the loss (3-step median) rose this much above the first 3's
EARLY_RISE = 0.05  # missing warmup: the loss rose this much above the first step's, early on


def lr_range(method: str) -> tuple[float, float]:
    return LR_RANGES.get(method, LR_RANGES["lora"])


def effective_lr(run: RunRecord) -> float:
    """The configured peak LR times what rollbacks multiplied it by."""
    scale = (run.summary or {}).get("lr_scale", 1.0) or 1.0
    return float(run.train_setting("lr", 2e-4)) * scale


def window(n: int) -> int:
    return max(3, n // 10)


def earlylist_steps(n: int) -> int:
    return max(5, n // 10)


def has_warmup(run: RunRecord) -> bool:
    return bool(run.train_setting("warmup_steps", 0) or run.train_setting("warmup_ratio", 0.0))


def overfitting(run: RunRecord) -> Iterator[Finding]:
    """Validation metric turns worse while the training loss keeps falling."""
    stopping = run.train_setting("early_stopping", {}) or {}
    name, mode = stopping.get("metric", "eval_loss"), stopping.get("mode") or "min"
    evals = [(int(e["step"]), float(e[name])) for e in run.evals if name in e]
    evals = [(s, v) for s, v in evals if math.isfinite(v)]
    if len(evals) < 3:
        return
    pick = min if mode == "min" else max
    best_i = evals.index(pick(evals, key=lambda sv: sv[1]))
    (best_step, best), (last_step, last) = evals[best_i], evals[-1]
    worse = (last - best) if mode == "min" else (best - last)
    rel = worse / max(abs(best), 1e-9)
    if len(evals) - 1 - best_i < 2 or rel < OVERFIT_RISE:
        return
    losses = run.finite_losses()
    k = window(len(losses))
    at_best = median([v for s, v in losses if best_step - k < s <= best_step])
    at_end = median([v for _, v in losses[-k:]])
    if not at_end < at_best:
        return
    gap = ""
    if name == "eval_loss":
        gap = f"; the validation - train gap grew from {best - at_best:.3g} to {last - at_end:.3g}"
    steps = (run.summary or {}).get("steps") or last_step
    epochs = float(run.train_setting("epochs", 3.0))
    shorter = f"train.epochs: {max(round(epochs * best_step / steps, 1), 0.1):g}"
    if run.train_setting("max_steps"):
        shorter = f"train.max_steps: {best_step}"
    extra = ", or a parameter-efficient method (method.name: lora)" if run.method == "full" else ""
    yield Finding(
        "overfitting",
        "overfitting: validation gets worse while training loss falls",
        f"{name} {best:.4g} at step {best_step} (best) -> {last:.4g} at step {last_step} "
        f"({rel:+.0%}) while train loss fell {at_best:.3g} -> {at_end:.3g}{gap}",
        f"{shorter} (the best step was {best_step} of {steps}; model/ holds that checkpoint), "
        "or train.early_stopping.patience: 3; more data, train.weight_decay: 0.01, "
        f"train.dropout: 0.1{extra}",
        steps=(best_step, last_step),
    )


def underfitting(run: RunRecord) -> Iterator[Finding]:
    """The training loss stays flat and high (LR too low for the method, or too little capacity)."""
    losses = run.finite_losses()
    if len(losses) < 10:
        return
    k = window(len(losses))
    first, last = median([v for _, v in losses[:k]]), median([v for _, v in losses[-k:]])
    if first <= 0 or (first - last) / first >= FLAT_DROP or last < FLAT_FLOOR:
        return
    lr, (low, high) = effective_lr(run), lr_range(run.method)
    evidence = (
        f"train loss {first:.4g} over steps {losses[0][0]}-{losses[k - 1][0]} -> {last:.4g} over "
        f"steps {losses[-k][0]}-{losses[-1][0]} ({(last - first) / first:+.1%})"
    )
    if lr < low:
        yield Finding(
            "lr_too_low",
            f"learning rate too low for {run.method}",
            f"{evidence} at train.lr {lr:.3g}",
            f"train.lr: {low:g} (typical for {run.method}: {low:g}-{high:g})",
            steps=(losses[0][0], losses[-1][0]),
        )
        return
    capacity = "a larger method.lora.r, or method.name: full" if run.method == "lora" else ""
    yield Finding(
        "underfitting",
        "underfitting: the training loss is flat and high",
        evidence,
        f"train.lr: {min(lr * 3, high) if lr < high else lr * 3:.3g} (now {lr:.3g}), more "
        f"train.epochs or train.max_steps{', ' + capacity if capacity else ''}",
        steps=(losses[0][0], losses[-1][0]),
    )


def lr_too_high(run: RunRecord) -> Iterator[Finding]:
    """The loss rose well above where it started, went non-finite, or needed rollbacks."""
    losses = run.losses()
    finite = [(s, v) for s, v in losses if math.isfinite(v)]
    if len(finite) < 3:
        return
    # medians of 3 neighbouring steps: one noisy batch is not a rise, two in a row are
    first = median([v for _, v in finite[:3]])
    smoothed = [
        (finite[i][0], median([v for _, v in finite[i - 1 : i + 2]]))
        for i in range(1, len(finite) - 1)
    ]
    peak_step, peak = max(smoothed, key=lambda sv: sv[1])
    bad = [s for s, v in losses if not math.isfinite(v)]
    rollbacks = (run.summary or {}).get("rollbacks") or [
        e for e in run.events if e.get("type") == "rollback"
    ]
    evidence = []
    if peak > (1 + LOSS_RISE) * first:
        evidence.append(f"train loss (median of 3 steps) rose from {first:.4g} (steps "
                        f"{finite[0][0]}-{finite[2][0]}) to {peak:.4g} (around step {peak_step})")  # fmt: skip
    if bad:
        evidence.append(f"non-finite loss at steps {list_steps(bad)}")
    if rollbacks:
        evidence.append(f"{len(rollbacks)} instability rollbacks")
    if not evidence:
        return
    lr, (low, high) = effective_lr(run), lr_range(run.method)
    yield Finding(
        "lr_too_high",
        f"learning rate too high for {run.method}",
        f"{'; '.join(evidence)} at train.lr {lr:.3g}",
        f"train.lr: {min(lr / 10, high):.3g} (typical for {run.method}: {low:g}-{high:g}), with "
        "train.warmup_ratio: 0.05 and train.max_grad_norm: 1.0",
        steps=tuple(sorted({peak_step, *bad[:5]})),
    )


def warmup_missing(run: RunRecord) -> Iterator[Finding]:
    """No warmup, and the first steps made the loss worse than where it started."""
    if has_warmup(run):
        return
    losses = run.finite_losses()
    if len(losses) < 5:
        return
    early = losses[: earlylist_steps(len(losses))]
    first = early[0][1]
    step, peak = max(early[1:], key=lambda sv: sv[1])
    if peak <= (1 + EARLY_RISE) * first:
        return
    total = (run.summary or {}).get("steps") or losses[-1][0]
    yield Finding(
        "warmup_missing",
        "no learning-rate warmup, and the first updates made the loss worse",
        f"train loss {first:.4g} at step {early[0][0]} -> {peak:.4g} at step {step} "
        f"({peak / first - 1:+.0%}) with train.warmup_steps 0 and train.warmup_ratio 0",
        f"train.warmup_ratio: 0.05 (or train.warmup_steps: {max(10, round(0.05 * total))})",
        steps=(early[0][0], step),
    )


CHECKS = (overfitting, underfitting, lr_too_high, warmup_missing)
