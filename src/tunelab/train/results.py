"""What a finished training run leaves: ``train_summary.json``, the artifact, the final
evaluation and the model card (written by the main process)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from torch import nn

from tunelab.allocator import active_allocator
from tunelab.config import RunConfig
from tunelab.io import atomic_write_json
from tunelab.modalities.registry import throughput_unit
from tunelab.train.checkpoint import config_hash
from tunelab.train.early_stopping import EarlyStopping
from tunelab.train.loop import Loop, LoopState
from tunelab.train.monitor import memory_limit_mb, peak_memory_mb, print_summary
from tunelab.train.multitask import save_task_results
from tunelab.train.precision import recommend
from tunelab.train.sampler import padding_fraction


def run_summary(
    cfg: RunConfig,
    state: LoopState,
    stopper: EarlyStopping,
    params: Any,
    loop: Loop,
    started: float,
) -> dict[str, Any]:
    """The numbers of ``train_summary.json``."""
    accelerator = loop.accelerator
    return {
        "wall_time_s": time.perf_counter() - started,
        "steps": state.step,
        "stop_reason": "early_stopped" if stopper.should_stop else "completed",
        "tokens_per_s": state.input_tokens / max(state.train_time_s, 1e-9),
        "throughput_unit": run_unit(cfg),  # what tokens_per_s counts: tokens or examples
        "input_tokens": state.input_tokens,
        "loss_tokens": state.loss_items,
        "skipped_steps": state.skipped_steps,
        **adjustments(cfg, state),
        "peak_memory_mb": peak_memory_mb(),
        "memory_limit_mb": memory_limit_mb(),
        "bf16_available": recommend().precision == "bf16",
        "allocator": active_allocator(),
        "best_metric_name": cfg.train.early_stopping.metric,
        "best_metric": stopper.best,
        "best_step": stopper.best_step,
        "trainable_params": params.trainable,
        "total_params": params.total,
        "world_size": accelerator.num_processes,
        "distributed_type": accelerator.distributed_type.value,
        **loop.backend.summary(loop.model),  # fsdp_sharded, zero_stage, zero_offload
        "precision": cfg.train.precision,
        "config_hash": config_hash(cfg),  # with batches_per_epoch: see run.finished_run
        "batches_per_epoch": loop.data.batches_per_epoch,
        "padding_fraction": padding_share(loop),
    }


def run_unit(cfg: RunConfig) -> str:
    """What the run's training throughput counts (``examples`` for audio and images)."""
    return throughput_unit(None if cfg.task_names else cfg.data.format)


def padding_share(loop: Loop) -> float:
    """Padding share of the token slots of an epoch's batches, as the sampler makes them
    (with ``data.tasks``: the mean over the tasks' samplers)."""
    samplers = getattr(loop.data.sampler, "samplers", [loop.data.sampler])
    shares = [padding_fraction(s.lengths, s.global_batches()) for s in samplers]
    return sum(shares) / len(shares)


def adjustments(cfg: RunConfig, state: LoopState) -> dict[str, Any]:
    """What the loop changed while training: the micro-batch after out-of-memory steps and
    the instability rollbacks (``tunelab.train.oom``, ``tunelab.train.instability``)."""
    split = state.micro_split
    return {
        "micro_batch_size": -(-cfg.train.batch_size // split),
        "gradient_accumulation_steps": cfg.train.gradient_accumulation_steps * split,
        "oom_adjustments": state.oom_adjustments,
        "rollbacks": state.rollbacks,
        "lr_scale": state.lr_scale,
    }


def save_results(
    cfg: RunConfig,
    model: nn.Module,
    tokenizer: Any,
    prepared: Any,
    summary: dict[str, Any],
    stopper: EarlyStopping,
    console: Console,
) -> dict[str, Any] | None:
    """Main process: artifact, train_summary.json, summary table, final eval, model card,
    the prompting baseline when ``eval.prompting_baseline`` is set, and ``report.html``."""
    from tunelab.methods import save_artifact, write_model_card

    if cfg.task_names:  # data.tasks: one run folder per task (tunelab.train.multitask)
        final_metrics = save_task_results(cfg, model, tokenizer, prepared, console)
        atomic_write_json(cfg.run_dir / "train_summary.json", summary)
        print_summary(console, summary, cfg.run_dir)
        return final_metrics
    save_artifact(model, cfg, cfg.run_dir / "model", tokenizer, prepared.label_names)
    atomic_write_json(cfg.run_dir / "train_summary.json", summary)
    print_summary(console, summary, cfg.run_dir)
    final_metrics = None
    if cfg.eval.at_end:
        from tunelab.evaluate import evaluate_model

        final_metrics = evaluate_model(cfg, model, tokenizer, prepared, console=console)
    best = {cfg.train.early_stopping.metric: stopper.best} if stopper.best is not None else {}
    card = write_model_card(cfg.run_dir, cfg, {**best, **(final_metrics or {})})
    if card.name != "README.md":
        console.print(f"model card: {card} ({card.with_name('README.md')} is not tunelab's: kept)")
    if cfg.eval.prompting_baseline:
        from tunelab.evaluate import compare_prompting

        compare_prompting(cfg, console=console)
    if cfg.output.attention_examples:
        from tunelab.attention.examples import report_attention

        report_attention(cfg, prepared, console)
    if cfg.output.report:
        from tunelab.report.live import update_run_report

        update_run_report(cfg.run_dir, live=False, console=console)
    return final_metrics
