"""Checks on memory and crashes: peak close to the limit, out of memory (a crash or the
micro-batch the loop fell back to), a run that did not finish."""

from __future__ import annotations

from collections.abc import Iterator

from tunelab.doctor.finding import Finding
from tunelab.doctor.record import RunRecord

NEAR_LIMIT = 0.90  # of the device's memory (GPU) or the machine's RAM (CPU)
PLAN = "see what fits with `tunelab plan CONFIG`"


def options(run: RunRecord, micro: int | None = None) -> str:
    """The ways to need less memory, for this run's settings."""
    batch = micro or run.train_setting("batch_size", 8)
    accumulation = run.train_setting("gradient_accumulation_steps", 1)
    found = []
    if batch > 1:
        found.append(f"train.batch_size: {max(batch // 2, 1)} with "
                     f"train.gradient_accumulation_steps: {accumulation * 2} (same effective batch)")  # fmt: skip
    if not run.section("model").get("gradient_checkpointing"):
        found.append("model.gradient_checkpointing: true")
    if run.train_setting("precision", "fp32") == "fp32":
        found.append("train.precision: bf16")
    if run.method == "full":
        found.append("method.name: lora")
    found.append(f"a smaller data.max_length (now {run.section('data').get('max_length')})")
    return "; ".join(found) + f"; {PLAN}"


def near_limit(run: RunRecord) -> Iterator[Finding]:
    summary = run.summary or {}
    peak, limit = summary.get("peak_memory_mb"), summary.get("memory_limit_mb")
    if not peak or not limit or peak / limit < NEAR_LIMIT:
        return
    yield Finding(
        "memory_near_limit",
        "peak memory close to the limit",
        f"peak {peak:,.0f} MB of {limit:,.0f} MB ({peak / limit:.0%}); a longer batch may run "
        "out of memory",
        options(run),
    )


def out_of_memory(run: RunRecord) -> Iterator[Finding]:
    crashed = run.errors("out_of_memory")
    if crashed:
        step, micro = crashed[-1]["step"], crashed[-1].get("micro_batch_size")
        yield Finding(
            "out_of_memory",
            "crashed: out of memory",
            f"out of memory at step {step} with a micro-batch of {micro}"
            + (
                f" ({crashed[-1]['message']})"
                if "train.on_oom is stop" in crashed[-1].get("message", "")
                else ""
            ),
            options(run, micro),
            "error",
            (step,),
        )
        return
    adjusted = (run.summary or {}).get("oom_adjustments") or [
        e for e in run.events if e.get("type") == "adjust"
    ]
    if adjusted:
        last = adjusted[-1]
        yield Finding(
            "oom_adjusted",
            "ran out of memory and continued with a smaller micro-batch",
            f"out of memory at step {adjusted[0]['step']}; from then on micro-batch "
            f"{last['micro_batch_size']} x accumulation {last['gradient_accumulation_steps']}",
            f"start there: train.batch_size: {last['micro_batch_size']} and "
            f"train.gradient_accumulation_steps: {last['gradient_accumulation_steps']}",
            "info",
            tuple(a["step"] for a in adjusted),
        )


def unfinished(run: RunRecord) -> Iterator[Finding]:
    if run.summary is not None or run.errors() or not run.train:
        return
    last = run.train[-1]["step"]
    yield Finding(
        "unfinished",
        "the run did not finish",
        f"metrics.jsonl ends at step {last} and there is no train_summary.json (crashed, "
        "killed or still running)",
        "run `tunelab train CONFIG` again: it resumes from the latest checkpoint "
        "(train.save_every sets how often one is written)",
        "error",
        (last,),
    )


CHECKS = (near_limit, out_of_memory, unfinished)
