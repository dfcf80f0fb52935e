"""``tunelab train``: prepare data -> load model -> apply method -> loop -> save best -> evaluate."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from tunelab.config import RunConfig, dump_config
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_json
from tunelab.preflight import check_run, check_splits
from tunelab.train.checkpoint import (
    checkpoints_dir,
    config_hash,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    read_state,
    remove_partial,
)
from tunelab.train.collate import PadCollator
from tunelab.train.dropout import set_dropout
from tunelab.train.early_stopping import EarlyStopping
from tunelab.train.fast_dropout import use_fast_dropout
from tunelab.train.loop import Loop, LoopState, TrainData, fit, total_steps_for
from tunelab.train.monitor import (
    METRICS_FILE,
    Monitor,
    check_trackers,
    peak_memory_mb,
    print_summary,
    truncate_metrics,
)
from tunelab.train.objective import loss_fn_for
from tunelab.train.optim import build_optimizer
from tunelab.train.precision import compile_model, enable_cpu_fp16, precision_warning
from tunelab.train.sampler import LengthGroupedBatchSampler
from tunelab.train.schedule import build_scheduler
from tunelab.train.sharding import fsdp_requested, is_sharded, needs_gathering, shard_model
from tunelab.train.validate import make_validator, validation_loader
from tunelab.train.zero import (
    ZeroOptimizerState,
    check_deepspeed,
    check_zero_stage,
    configure_engine,
    deepspeed_requested,
    end_zero3_model_init,
    fix_process_count,
    zero_offload,
    zero_stage,
)

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_dir: Path | None
    stop_reason: str  # completed | early_stopped | interrupted
    steps: int
    best_metric: float | None
    best_step: int | None
    summary: dict[str, Any] = field(default_factory=dict)
    final_metrics: dict[str, Any] | None = None


def train(
    cfg: RunConfig, resume: bool | None = None, console: Console | None = None
) -> TrainResult:
    """Run the whole training of ``cfg``; ``resume``: True/False forces, None auto-resumes."""
    from accelerate.utils import set_seed

    from tunelab.data import prepare_data
    from tunelab.methods import print_trainable_summary, trainable_summary
    from tunelab.models import load_tokenizer

    console = console or Console()
    check_run(cfg, console)  # refuse a config that cannot finish before anything is written
    started = time.perf_counter()
    accelerator = make_accelerator(cfg, console)
    resume_from = prepare_run_dir(cfg, resume, accelerator)
    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model)
    with accelerator.main_process_first():
        prepared = prepare_data(cfg, tokenizer)
    check_splits(cfg, prepared.splits)
    model = build_model(cfg, prepared.label_names)
    params = trainable_summary(model)
    if accelerator.is_main_process:
        print_trainable_summary(params, console)
        dump_config(cfg, cfg.run_dir / "config.yaml")

    loop = build_loop(cfg, accelerator, model, tokenizer.pad_token_id, prepared.splits, console)
    state, stopper = LoopState(), EarlyStopping(cfg.train.early_stopping)
    if resume_from is not None:
        state, stopper = restore(loop, resume_from, stopper)
        if accelerator.is_main_process:
            console.print(f"resuming from {resume_from} (step {state.step} of {loop.total_steps})")
    with Monitor(cfg.run_dir, accelerator, console, loop.total_steps, state.step) as monitor:
        reason = fit(loop, state, stopper, monitor)
    if reason == "interrupted":
        accelerator.end_training()
        return TrainResult(cfg.run_dir, None, reason, state.step, stopper.best, stopper.best_step)

    # the final artifact is the best checkpoint by the early-stopping metric (else the last)
    model = final_model(cfg, accelerator, loop.model, prepared.label_names)
    if model is not None and stopper.best_step is not None:
        load_weights(checkpoints_dir(cfg.run_dir) / f"step-{stopper.best_step}", model)
    summary = run_summary(cfg, state, stopper, params, loop, started)
    final_metrics = None
    if accelerator.is_main_process:
        final_metrics = save_results(cfg, model, tokenizer, prepared, summary, stopper, console)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        cfg.run_dir, cfg.run_dir / "model", reason, state.step, stopper.best, stopper.best_step,
        summary, final_metrics,
    )  # fmt: skip


def build_model(cfg: RunConfig, label_names: list[str] | None) -> nn.Module:
    """Load the pretrained model, override its dropout and apply the fine-tuning method."""
    from tunelab.methods import apply_method
    from tunelab.models import load_model

    model = load_model(cfg.model, cfg.task, label_names)
    set_dropout(model, cfg.train.dropout, cfg.train.attention_dropout)
    model = apply_method(model, cfg.method, cfg.task)
    if cfg.model.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings: keep checkpointed blocks in the graph
    return model


def final_model(
    cfg: RunConfig, accelerator: Any, model: nn.Module, label_names: list[str] | None
) -> nn.Module | None:
    """The trained model, whole, on the main process (None on the others when sharded).

    A sharded (FSDP, DeepSpeed ZeRO) model's trained weights are gathered into a fresh
    unsharded copy, so saving and evaluating it need no other process.
    """
    from tunelab.methods import load_trainable_state_dict, trainable_state_dict

    model = accelerator.unwrap_model(model)
    if not needs_gathering(model):
        return model
    end_zero3_model_init()
    weights = trainable_state_dict(model)  # every process takes part in the gathering
    if not accelerator.is_main_process:
        return None
    whole = build_model(cfg, label_names)
    load_trainable_state_dict(whole, weights)
    return whole


def build_loop(
    cfg: RunConfig,
    accelerator: Any,
    model: nn.Module,
    pad_token_id: int,
    splits: dict[str, Any],
    console: Console,
) -> Loop:
    """Data, optimizer, schedule and validation around the (prepared) model."""
    data = train_data(cfg, splits["train"], model, pad_token_id, accelerator)
    total_steps = total_steps_for(cfg.train, data.batches_per_epoch)
    if cfg.train.fast_dropout and accelerator.device.type == "cpu":
        use_fast_dropout(model)
    shard_here = fsdp_requested() and accelerator.distributed_type.value == "MULTI_CPU"
    if shard_here:  # Accelerate does not apply FSDP on CPU: tunelab shards the model itself
        model = shard_model(model)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, total_steps)
    if cfg.train.compile:
        model, message = compile_model(model)
        if accelerator.is_main_process:
            console.print(message)
    if shard_here:
        optimizer = accelerator.prepare(optimizer)
    elif deepspeed_requested():  # the engine partitions the optimizer: see tunelab.train.zero
        configure_engine(accelerator, cfg.train)
        params = [list(group["params"]) for group in optimizer.param_groups]
        model, optimizer = accelerator.prepare(model, optimizer)
        optimizer = ZeroOptimizerState(model.optimizer, params)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    validator = None
    if "validation" in splits:
        batch_size = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
        loader = validation_loader(splits["validation"], PadCollator(pad_token_id), batch_size)
        validator = make_validator(loader, cfg.task, accelerator.device)
    return Loop(
        accelerator=accelerator,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        loss_fn=loss_fn_for(cfg.task, cfg.train.loss_chunk_size),
        task=cfg.task,
        cfg=cfg.train,
        run_dir=cfg.run_dir,
        total_steps=total_steps,
        checkpoint_info=checkpoint_info(cfg, accelerator.num_processes),
        validate=validator,
    )


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
        "input_tokens": state.input_tokens,
        "loss_tokens": state.loss_items,
        "skipped_steps": state.skipped_steps,
        "peak_memory_mb": peak_memory_mb(),
        "best_metric_name": cfg.train.early_stopping.metric,
        "best_metric": stopper.best,
        "best_step": stopper.best_step,
        "trainable_params": params.trainable,
        "total_params": params.total,
        "world_size": accelerator.num_processes,
        "distributed_type": accelerator.distributed_type.value,
        "fsdp_sharded": is_sharded(accelerator.unwrap_model(loop.model)),
        "zero_stage": zero_stage(loop.model),
        "zero_offload": zero_offload(loop.model),
        "precision": cfg.train.precision,
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
    and the prompting baseline when ``eval.prompting_baseline`` is set."""
    from tunelab.methods import save_artifact, write_model_card

    save_artifact(model, cfg, cfg.run_dir / "model", tokenizer, prepared.label_names)
    atomic_write_json(cfg.run_dir / "train_summary.json", summary)
    print_summary(console, summary, cfg.run_dir)
    final_metrics = None
    if cfg.eval.at_end:
        from tunelab.evaluate import evaluate_model

        final_metrics = evaluate_model(cfg, model, tokenizer, prepared, console=console)
    best = {cfg.train.early_stopping.metric: stopper.best} if stopper.best is not None else {}
    write_model_card(cfg.run_dir, cfg, {**best, **(final_metrics or {})})
    if cfg.eval.prompting_baseline:
        from tunelab.evaluate import compare_prompting

        compare_prompting(cfg, console=console)
    return final_metrics


def make_accelerator(cfg: RunConfig, console: Console) -> Any:
    """An Accelerator for ``train.precision`` with the trackers of ``train.report_to``."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradScalerKwargs

    check_trackers(cfg.train.report_to)
    deepspeed = deepspeed_requested()
    if deepspeed:
        check_deepspeed(cfg.train)

    # a new run in the same process may change precision or launcher (a DeepSpeed run leaves
    # its type in Accelerate's process state): start clean unless processes are connected
    AcceleratorState._reset_state(reset_partial_state=not torch.distributed.is_initialized())
    fp16 = cfg.train.precision == "fp16"
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available() and not deepspeed,  # DeepSpeed also runs on CPU
        mixed_precision=PRECISION[cfg.train.precision],
        log_with=list(cfg.train.report_to) or None,
        project_dir=str(cfg.run_dir / "tensorboard"),
        kwargs_handlers=[GradScalerKwargs(init_scale=cfg.train.fp16_initial_scale)]
        if fp16
        else None,
    )
    if deepspeed:
        fix_process_count(accelerator)
        check_zero_stage(accelerator)
    elif fp16 and accelerator.scaler is None:  # CPU: Accelerate would silently run fp32
        enable_cpu_fp16(accelerator, cfg.train.fp16_initial_scale)
    if cfg.train.report_to:
        start_trackers(accelerator, cfg)
    notes = [precision_warning(cfg.train.precision, accelerator.device.type)]
    for note in filter(None, notes):
        if accelerator.is_main_process:
            console.print(f"[yellow]warning:[/] {note}")
    return accelerator


def start_trackers(accelerator: Any, cfg: RunConfig) -> None:
    """Start the trackers of ``train.report_to``; a tracker that cannot start is a clear error."""
    try:
        accelerator.init_trackers("tunelab", config=flat_hparams(cfg))
    except Exception as exc:  # each tracker library raises its own errors
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TunelabError(
            f"train.report_to {cfg.train.report_to}: a tracker failed to start "
            f"({type(exc).__name__}: {first_line}); check its settings (e.g. WANDB_MODE, "
            "MLFLOW_TRACKING_URI) or remove it from train.report_to"
        ) from exc


def flat_hparams(cfg: RunConfig) -> dict[str, Any]:
    """Scalar train.* settings plus model and method names, for the trackers."""
    values = {"model": cfg.model.name_or_path, "method": cfg.method.name, "task": cfg.task}
    for key, value in cfg.train.model_dump(mode="json").items():
        values[f"train.{key}"] = (
            value if isinstance(value, int | float | str | bool) else str(value)
        )
    return values


def checkpoint_info(cfg: RunConfig, world_size: int) -> dict[str, Any]:
    """What every checkpoint records about the run that wrote it."""
    return {
        "config_hash": config_hash(cfg),
        "seed": cfg.train.seed,
        "world_size": world_size,
        "batch_size": cfg.train.batch_size,
        "gradient_accumulation_steps": cfg.train.gradient_accumulation_steps,
    }


def resume_checkpoint(cfg: RunConfig, resume: bool | None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start.

    ``resume=None`` resumes when the run directory holds a checkpoint of the same config;
    ``True`` requires one; ``False`` starts over. A checkpoint of a different config is refused
    unless ``resume`` is False.
    """
    if resume is False:
        return None
    latest = latest_checkpoint(cfg.run_dir)
    if latest is None:
        if resume:
            raise TunelabError(f"--resume: no checkpoint in {checkpoints_dir(cfg.run_dir)}")
        return None
    stored = read_state(latest).get("config_hash")
    if stored != config_hash(cfg):
        raise TunelabError(
            f"{latest} was written with a different training config; restore that config to "
            f"resume, pass --no-resume to start over (deletes the checkpoints), or change output.dir"
        )
    return latest


def prepare_run_dir(cfg: RunConfig, resume: bool | None, accelerator: Any) -> Path | None:
    """Decide where to start; clear an earlier run's state or leftovers of a crashed write."""
    resume_from = resume_checkpoint(cfg, resume)
    if accelerator.is_main_process:
        if resume_from is None:
            start_fresh(cfg.run_dir)
        else:
            remove_partial(cfg.run_dir)
    accelerator.wait_for_everyone()
    return resume_from


def start_fresh(run_dir: Path) -> None:
    """Remove checkpoints and metrics of an earlier run in ``run_dir``."""
    shutil.rmtree(checkpoints_dir(run_dir), ignore_errors=True)
    (Path(run_dir) / METRICS_FILE).unlink(missing_ok=True)


def restore(loop: Loop, path: Path, stopper: EarlyStopping) -> tuple[LoopState, EarlyStopping]:
    """Load a checkpoint into the loop's model, optimizer, scheduler and RNG."""
    accelerator = loop.accelerator
    stored_world = read_state(path)["world_size"]
    if stored_world != accelerator.num_processes:
        raise TunelabError(
            f"{path} was written by {stored_world} process(es); resume with the same number "
            f"(now {accelerator.num_processes}) so the data order matches"
        )
    state = load_checkpoint(path, accelerator.unwrap_model(loop.model), loop.optimizer)
    loop.scheduler.load_state_dict(state["scheduler"])
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    if accelerator.is_main_process:
        truncate_metrics(loop.run_dir, state["step"])
    return LoopState(**state["loop"]), stopper


def train_data(
    cfg: RunConfig, dataset: Any, model: nn.Module, pad_token_id: int, accelerator: Any
) -> TrainData:
    """Rows (packed for ``train.packing``), collate function and this process's sampler."""
    if cfg.train.packing:
        from tunelab.train.packing import PackedCollator, pack_examples

        rows: Any = pack_examples(dataset["input_ids"], dataset["labels"], cfg.data.max_length)
        attn = getattr(getattr(model, "config", None), "_attn_implementation", None)
        collate: Any = PackedCollator(attn, pad_token_id)
        lengths = [len(row["input_ids"]) for row in rows]
    else:
        rows, collate = dataset, PadCollator(pad_token_id)
        lengths = [len(ids) for ids in dataset["input_ids"]]
    sampler = LengthGroupedBatchSampler(
        lengths,
        cfg.train.batch_size,
        seed=cfg.train.seed,
        group_by_length=cfg.train.group_by_length,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    return TrainData(rows, collate, sampler, cfg.train.num_workers)
