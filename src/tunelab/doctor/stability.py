"""Checks on stability: non-finite steps, loss spikes, gradient-norm explosions, skipped fp16
updates, and the rollbacks of ``train.instability``."""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import pairwise

from tunelab.doctor.finding import Finding, list_steps
from tunelab.doctor.record import RunRecord, median

HISTORY = 20  # steps a spike is measured against
MIN_HISTORY = 5
LOSS_SPIKE = 3.0  # x the recent median ...
LOSS_SPIKE_NATS = 1.0  # ... and this much above it
LASTING = 5  # steps a spike below the starting loss must last (as their median) to count
GRAD_EXPLOSION = 100.0  # x the recent median gradient norm
FP16_SETTLE = 20  # the loss scaler's first halvings (finding its scale) are normal
FP16_SKIPS = 3

ADVICE = (
    "train.lr lower (x0.3), train.warmup_ratio: 0.05, train.max_grad_norm: 1.0, "
    "train.precision bf16 or fp32 instead of fp16; or let the run recover itself with "
    "train.instability.action: rollback"
)


def spikes(values: list[tuple[int, float]], factor: float, above: float) -> list[tuple]:
    """``(step, value, median)`` where ``value`` > ``factor`` x the median of the previous
    steps (and ``above`` more than it)."""
    found, history = [], []
    for step, value in values:
        if not math.isfinite(value):
            continue
        if len(history) >= MIN_HISTORY:
            recent = median(history[-HISTORY:])
            if value > factor * recent and value > recent + above:
                found.append((step, value, recent))
                continue
        history.append(value)
    return found


def nonfinite(run: RunRecord) -> Iterator[Finding]:
    fp16 = run.train_setting("precision") == "fp16"
    bad = [int(r["step"]) for r in run.train
           if not math.isfinite(float(r.get("loss", 0.0)))
           or (not fp16 and not math.isfinite(float(r.get("grad_norm", 0.0))))]  # fmt: skip
    skipped = (run.summary or {}).get("skipped_steps", 0)
    stopped = [e for e in run.errors() if "non-finite" in str(e.get("message", ""))]
    if not bad and not stopped:
        return
    evidence = f"non-finite loss or gradient at steps {list_steps(bad)}" if bad else ""
    if skipped and not fp16:
        evidence += f"; {skipped} updates skipped (train.skip_nonfinite)"
    yield Finding("nonfinite", "non-finite training steps", evidence.strip("; "), ADVICE,
                  "error", tuple(bad[:10]))  # fmt: skip


def lasting(values: list[tuple[int, float]], found: list[tuple]) -> list[tuple]:
    """The loss spikes that are not one hard batch: above the run's starting loss (median of
    its first 3 steps), or still above the spike threshold as the median of the spike step and
    the next ``LASTING - 1`` (a damaged model stays worse; a noisy small batch does not)."""
    finite = [(s, v) for s, v in values if math.isfinite(v)]
    start = median([v for _, v in finite[:3]])
    index = {s: i for i, (s, _) in enumerate(finite)}
    kept = []
    for step, value, recent in found:
        near = [v for _, v in finite[index[step] : index[step] + LASTING]]
        threshold = max(LOSS_SPIKE * recent, recent + LOSS_SPIKE_NATS)
        if value > start or (len(near) == LASTING and median(near) > threshold):
            kept.append((step, value, recent))
    return kept


def loss_spikes(run: RunRecord) -> Iterator[Finding]:
    losses = run.losses()
    found = lasting(losses, spikes(losses, LOSS_SPIKE, LOSS_SPIKE_NATS))
    if not found:
        return
    shown = "; ".join(f"step {s}: {v:.4g} vs median {m:.4g}" for s, v, m in found[:4])
    yield Finding("loss_spikes", f"{len(found)} loss spikes", shown, ADVICE,
                  steps=tuple(s for s, _, _ in found[:10]))  # fmt: skip


def grad_explosions(run: RunRecord) -> Iterator[Finding]:
    found = spikes(run.grad_norms(), GRAD_EXPLOSION, 0.0)
    if not found:
        return
    shown = "; ".join(f"step {s}: {v:.4g} vs median {m:.4g}" for s, v, m in found[:4])
    clip = run.train_setting("max_grad_norm")
    fix = ADVICE if clip is None else f"{ADVICE} (clipping at {clip:g} bounded these updates)"
    yield Finding("grad_explosions", f"{len(found)} gradient-norm explosions", shown, fix,
                  steps=tuple(s for s, _, _ in found[:10]))  # fmt: skip


def fp16_skips(run: RunRecord) -> Iterator[Finding]:
    """The fp16 loss scaler halves its scale at each overflow, whose update it skips."""
    rows = [r for r in run.train if "loss_scale" in r]
    skipped = [int(b["step"]) - 1 for a, b in pairwise(rows)
               if float(b["loss_scale"]) < float(a["loss_scale"])]  # fmt: skip
    late = [s for s in skipped if s > FP16_SETTLE]
    if len(late) < FP16_SKIPS:
        return
    bf16 = (run.summary or {}).get("bf16_available")
    switch = "train.precision: bf16 (this device has it)" if bf16 else "train.precision: fp32"
    yield Finding(
        "fp16_skipped_steps",
        f"{len(late)} fp16 updates skipped after overflow",
        f"the loss scale fell after steps {list_steps(late)} (from {rows[0]['loss_scale']:g} to "
        f"{rows[-1]['loss_scale']:g}); each of those updates was skipped",
        f"{switch}, or a lower train.lr / train.max_grad_norm: 1.0",
        steps=tuple(late[:10]),
    )


def rollbacks(run: RunRecord) -> Iterator[Finding]:
    done = (run.summary or {}).get("rollbacks") or [
        e for e in run.events if e.get("type") == "rollback"
    ]
    gave_up = run.errors("unstable")
    if not done and not gave_up:
        return
    shown = "; ".join(f"step {r['step']}: {r.get('reason', '?')}" for r in done[:4])
    title = "training stopped: unstable after rollbacks" if gave_up else f"{len(done)} rollbacks"
    yield Finding("rollbacks", title, shown or gave_up[0].get("message", ""), ADVICE,
                  "error" if gave_up else "warning", tuple(r["step"] for r in done[:10]))  # fmt: skip


CHECKS = (nonfinite, loss_spikes, grad_explosions, fp16_skips, rollbacks)
