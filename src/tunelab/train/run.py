"""``tunelab train``: prepare data -> load model -> apply method -> loop -> save best -> evaluate."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from torch import nn

from tunelab.config import RunConfig, dump_config
from tunelab.errors import TunelabError
from tunelab.io import recover_dir
from tunelab.modalities.registry import modality_for
from tunelab.plan.auto import annotate_config, resolve_auto
from tunelab.preflight import check_run, check_splits
from tunelab.train.backends.base import Backend
from tunelab.train.backends.registry import start_backend
from tunelab.train.checkpoint import (
    checkpoints_dir,
    config_hash,
    hash_matches,
    latest_checkpoint,
    load_checkpoint,
    load_weights,
    read_state,
    remove_partial,
    run_settings,
    settings_changes,
)
from tunelab.train.dropout import set_dropout
from tunelab.train.early_stopping import EarlyStopping
from tunelab.train.fast_dropout import apply_fast_dropout
from tunelab.train.loop import Loop, LoopState, TrainData, fit, total_steps_for
from tunelab.train.monitor import Monitor, check_trackers, truncate_metrics
from tunelab.train.multitask import (
    load_multihead,
    multitask_data,
    prepare_tasks,
    task_labels,
    task_loss,
    task_runs,
    task_validator,
)
from tunelab.train.objective import loss_fn_for
from tunelab.train.oom import InjectedOom
from tunelab.train.optim import build_optimizer
from tunelab.train.precision import compile_model, precision_warning
from tunelab.train.previous_run import check_no_earlier_results, clear_outputs, report_finished
from tunelab.train.results import run_summary, run_unit, save_results
from tunelab.train.rows import training_rows, validation_collate
from tunelab.train.sampler import LengthGroupedBatchSampler
from tunelab.train.schedule import build_scheduler, reschedule
from tunelab.train.startup import resume_notes, template_note
from tunelab.train.validate import make_validator, validation_loader

PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    model_dir: Path | None
    stop_reason: str  # completed | early_stopped | interrupted | already_finished
    steps: int
    best_metric: float | None
    best_step: int | None
    summary: dict[str, Any] = field(default_factory=dict)
    final_metrics: dict[str, Any] | None = None


def train(
    cfg: RunConfig,
    resume: bool | None = None,
    console: Console | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
    stage: str | None = None,
) -> TrainResult:
    """Run the whole training of ``cfg``; ``resume``: True/False forces, None auto-resumes.

    ``on_eval(step, metrics)`` is called after each validation (a search prunes from it).
    A config with ``stages:`` runs through ``tunelab.train.stages.train``, which calls this
    once per stage (``stage``: its name, on every metrics record and tracker tag).
    """
    from accelerate.utils import set_seed

    from tunelab.data import prepare_data, print_warnings
    from tunelab.methods import print_trainable_summary, trainable_summary
    from tunelab.models import load_processor

    console = console or Console()
    multi = bool(cfg.task_names)
    if cfg.stages is not None:
        raise TunelabError("a config with stages: trains through tunelab.train.train")
    cfg, auto_choice = resolve_auto(cfg, console)  # method/batch_size auto -> concrete config
    check_run(cfg, console)  # refuse a config that cannot finish before anything is written
    if resume is not False and (done := finished_run(cfg)) is not None:
        metrics = report_finished(cfg.run_dir, done, console)
        return TrainResult(
            cfg.run_dir, cfg.run_dir / "model", "already_finished", done["steps"],
            done.get("best_metric"), done.get("best_step"), done, metrics,
        )  # fmt: skip
    started = time.perf_counter()
    backend = make_backend(cfg, console)
    accelerator = backend.accelerator
    resume_from = prepare_run_dir(cfg, resume, accelerator, console)
    set_seed(cfg.train.seed)
    data_cfg = None if multi else cfg.data
    tokenizer = load_processor(cfg.model, data_cfg.format if data_cfg else None, data_cfg)
    for name in cfg.task_names or [None]:
        template = template_note(cfg.for_task(name) if name else cfg, tokenizer)
        if template and accelerator.is_main_process:
            console.print(f"{name}: {template}" if name else template)
    with accelerator.main_process_first():
        prepared = prepare_tasks(cfg, tokenizer) if multi else prepare_data(cfg, tokenizer)
    for task_cfg, data in task_runs(cfg, prepared):
        check_splits(task_cfg, data.splits)
    labels = task_labels(prepared) if multi else prepared.label_names
    model = build_model(cfg, labels)
    params = trainable_summary(model)
    if accelerator.is_main_process:
        for _, data in task_runs(cfg, prepared):
            print_warnings(data.report, console)
        print_trainable_summary(params, console)
        dump_config(cfg, cfg.run_dir / "config.yaml")
        if auto_choice is not None:
            annotate_config(cfg.run_dir / "config.yaml", auto_choice)

    loop = build_loop(cfg, backend, model, tokenizer.pad_token_id, prepared, console)
    loop.on_eval = on_eval
    state, stopper = LoopState(), EarlyStopping(cfg.train.early_stopping)
    if resume_from is not None:
        state, stopper = restore(loop, resume_from, stopper)
        if accelerator.is_main_process:
            for note in resume_notes(cfg, resume_from, state.step, loop.total_steps):
                console.print(note, soft_wrap=True)
    with Monitor(
        cfg.run_dir,
        accelerator,
        console,
        loop.total_steps,
        state.step,
        cfg.train.log_every,
        stage,
        report=run_report(cfg, console),
        unit=run_unit(cfg),
    ) as monitor:
        reason = fit(loop, state, stopper, monitor)
    if reason == "interrupted":
        accelerator.end_training()
        return TrainResult(cfg.run_dir, None, reason, state.step, stopper.best, stopper.best_step)

    # the final artifact is the best checkpoint by the early-stopping metric (else the last)
    model = backend.whole_model(loop.model, lambda: build_model(cfg, labels))
    if model is not None and stopper.best_step is not None:
        load_weights(checkpoints_dir(cfg.run_dir) / f"step-{stopper.best_step}", model)
    summary = run_summary(cfg, state, stopper, params, loop, started)
    if auto_choice is not None:
        summary["auto"] = auto_choice.as_dict()
    final_metrics = None
    if accelerator.is_main_process:
        final_metrics = save_results(cfg, model, tokenizer, prepared, summary, stopper, console)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return TrainResult(
        cfg.run_dir, cfg.run_dir / "model", reason, state.step, stopper.best, stopper.best_step,
        summary, final_metrics,
    )  # fmt: skip


def run_report(cfg: RunConfig, console: Console) -> Callable[[bool], bool] | None:
    """``report(live)``: rewrite ``RUN_DIR/report.html`` (None when ``output.report`` is off)."""
    if not cfg.output.report:
        return None
    from tunelab.report.live import update_run_report

    return lambda live: update_run_report(cfg.run_dir, live, console)


def build_model(cfg: RunConfig, label_names: list[str] | dict[str, list[str]] | None) -> nn.Module:
    """Load the pretrained model, override its dropout and apply the fine-tuning method.

    ``label_names`` as ``{task: labels}``: the shared encoder with one head per task.
    """
    from tunelab.methods import apply_method
    from tunelab.models import load_model

    if isinstance(label_names, dict):
        model = load_multihead(cfg, label_names)
    else:
        quantize = getattr(cfg.method.settings, "quantize", None)
        model = load_model(cfg.model, cfg.task, label_names, quantize, cfg.data.format)
    set_dropout(model, cfg.train.dropout, cfg.train.attention_dropout)
    modality = None if isinstance(label_names, dict) else modality_for(cfg.data.format)
    method_cfg = modality.method_config(cfg.method, model) if modality else cfg.method
    model = apply_method(model, method_cfg, cfg.task)
    if cfg.model.gradient_checkpointing and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()  # frozen embeddings: keep checkpointed blocks in the graph
    return model


def build_loop(
    cfg: RunConfig,
    backend: Backend,
    model: nn.Module,
    pad_token_id: int,
    prepared: Any,
    console: Console,
) -> Loop:
    """Data, optimizer, schedule and validation around the model, prepared by ``backend``
    (``prepared``: the PreparedData or its ``{split: Dataset}``, or ``{task: PreparedData}``
    for ``data.tasks``)."""
    accelerator = backend.accelerator
    multi = bool(cfg.task_names)
    splits = {} if multi else getattr(prepared, "splits", prepared)
    if multi:
        if cfg.task == "classification" and accelerator.num_processes > 1:
            raise TunelabError(
                "data.tasks with classification heads trains in one process (each batch "
                "leaves the other heads unused, which DDP refuses); launch it without torchrun"
            )
        data = multitask_data(cfg, prepared, model, pad_token_id, accelerator)
    else:
        data = train_data(cfg, splits["train"], model, pad_token_id, accelerator)
    total_steps = total_steps_for(cfg.train, data.batches_per_epoch)
    apply_fast_dropout(model, cfg.train.fast_dropout, accelerator.device.type)
    model = backend.shard(model)  # before the optimizer is built over its parameters
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train, total_steps)
    if cfg.train.compile:
        model, message = compile_model(model)
        if accelerator.is_main_process:
            console.print(message)
    model, optimizer = backend.prepare(model, optimizer)
    validator = None
    if multi:
        validator = task_validator(cfg, prepared, pad_token_id, accelerator.device)
    elif "validation" in splits:
        batch_size = cfg.train.eval_batch_size or 2 * cfg.train.batch_size
        collate = validation_collate(cfg, pad_token_id)
        loader = validation_loader(splits["validation"], collate, batch_size)
        validator = make_validator(loader, cfg.task, accelerator.device)
    loss_fn = loss_fn_for(cfg.task, cfg.train.loss_chunk_size, None if multi else cfg.data.format)
    injected_oom = InjectedOom.from_env()  # the out-of-memory test hook
    if injected_oom is not None:
        loss_fn = injected_oom.wrap(loss_fn)
    return Loop(
        backend=backend,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        data=data,
        loss_fn=task_loss(cfg, loss_fn) if multi else loss_fn,
        task=cfg.task,
        cfg=cfg.train,
        run_dir=cfg.run_dir,
        total_steps=total_steps,
        checkpoint_info=checkpoint_info(cfg, accelerator.num_processes),
        validate=validator,
        injected_oom=injected_oom,
    )


def make_backend(cfg: RunConfig, console: Console) -> Backend:
    """The run's backend (chosen from the launch environment, see
    ``tunelab.train.backends.registry``) with its Accelerator for ``train.precision`` and the
    trackers of ``train.report_to``."""
    from accelerate.utils import GradScalerKwargs

    check_trackers(cfg.train.report_to)
    fp16 = cfg.train.precision == "fp16"
    options = {
        "mixed_precision": PRECISION[cfg.train.precision],
        "log_with": list(cfg.train.report_to) or None,
        "project_dir": str(cfg.run_dir / "tensorboard"),
        "kwargs_handlers": [GradScalerKwargs(init_scale=cfg.train.fp16_initial_scale)]
        if fp16
        else None,
    }
    backend = start_backend(cfg.train, options)
    accelerator = backend.accelerator
    if cfg.train.report_to:
        start_trackers(accelerator, cfg)
    notes = [precision_warning(cfg.train.precision, accelerator.device.type)]
    for note in filter(None, notes):
        if accelerator.is_main_process:
            console.print(f"[yellow]warning:[/] {note}")
    return backend


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
        "settings": run_settings(cfg),
        "seed": cfg.train.seed,
        "world_size": world_size,
        "batch_size": cfg.train.batch_size,
        "gradient_accumulation_steps": cfg.train.gradient_accumulation_steps,
    }


def resume_checkpoint(cfg: RunConfig, resume: bool | None) -> Path | None:
    """The checkpoint to resume from, or None for a fresh start.

    ``resume=None`` resumes when the run directory holds a checkpoint of the same config;
    ``True`` requires one; ``False`` starts over. A checkpoint of a config that changes the
    steps already taken is refused, naming the changed keys, unless ``resume`` is False;
    other changes (more steps or epochs, eval/save/log cadence) resume.
    """
    if resume is False:
        return None
    latest = latest_checkpoint(cfg.run_dir)
    if latest is None:
        if resume:
            raise TunelabError(f"--resume: no checkpoint in {checkpoints_dir(cfg.run_dir)}")
        return None
    settings_changes(latest, cfg)  # raises for a change to the steps already taken
    steps = cfg.train.max_steps
    if steps is not None and steps < read_state(latest)["step"]:
        raise too_short(latest, read_state(latest)["step"], steps)
    return latest


def too_short(path: Path, step: int, total_steps: int) -> TunelabError:
    """The error for resuming a checkpoint with fewer steps than it has taken."""
    return TunelabError(
        f"{path} is at step {step}, but train.max_steps/train.epochs now give {total_steps} "
        "steps; raise them to resume, or pass --no-resume to start over"
    )


def prepare_run_dir(
    cfg: RunConfig, resume: bool | None, accelerator: Any, console: Console | None = None
) -> Path | None:
    """Decide where to start; clear an earlier run's outputs or leftovers of a crashed write.

    A fresh start that was not asked for (``resume=None``) is refused while ``output.dir``
    holds an earlier run's results; ``--no-resume`` replaces them (only what tunelab wrote).
    """
    if accelerator.is_main_process:
        recover_dir(cfg.run_dir / "model")  # a crash while the model was being replaced
    accelerator.wait_for_everyone()
    resume_from = resume_checkpoint(cfg, resume)
    if resume_from is None and resume is None:
        check_no_earlier_results(cfg.run_dir)
    if accelerator.is_main_process:
        if resume_from is None:
            removed = start_fresh(cfg.run_dir)
            if removed and console is not None:
                console.print(
                    f"starting over in {cfg.run_dir}: removed {', '.join(removed)}", soft_wrap=True
                )
        else:
            remove_partial(cfg.run_dir)
    accelerator.wait_for_everyone()
    return resume_from


def start_fresh(run_dir: Path) -> list[str]:
    """Remove what an earlier run wrote in ``run_dir`` (see ``tunelab.train.previous_run``)."""
    return clear_outputs(Path(run_dir))


def finished_run(cfg: RunConfig) -> dict[str, Any] | None:
    """The ``train_summary.json`` of a finished run of ``cfg`` in ``output.dir``, else None.

    Finished: ``model/`` and the summary are there, the summary was written with this
    config's hash, and the run stopped early or took every step this config asks for (so a
    run extended to more steps is not finished).
    """
    recover_dir(cfg.run_dir / "model")
    path = cfg.run_dir / "train_summary.json"
    model_file = "tunelab_tasks.json" if cfg.task_names else "tunelab_method.json"
    if not path.is_file() or not (cfg.run_dir / "model" / model_file).is_file():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(summary, dict) or not hash_matches(
        cfg, summary.get("config_hash"), cfg.run_dir
    ):
        return None
    if summary.get("stop_reason") == "early_stopped":
        return summary
    per_epoch = summary.get("batches_per_epoch")
    if not per_epoch or summary.get("steps", 0) < total_steps_for(cfg.train, per_epoch):
        return None
    return summary


def restore(loop: Loop, path: Path, stopper: EarlyStopping) -> tuple[LoopState, EarlyStopping]:
    """Load a checkpoint into the loop's model, optimizer, scheduler and RNG.

    A run extended (or shortened) since the checkpoint follows its new LR schedule from here.
    """
    accelerator = loop.accelerator
    stored = read_state(path)
    if stored["world_size"] != accelerator.num_processes:
        raise TunelabError(
            f"{path} was written by {stored['world_size']} process(es); resume with the same "
            f"number (now {accelerator.num_processes}) so the data order matches"
        )
    if stored["step"] > loop.total_steps:  # fewer epochs than taken (max_steps: checked before)
        raise too_short(path, stored["step"], loop.total_steps)
    state = load_checkpoint(path, loop.backend.unwrap(loop.model), loop.optimizer)
    loop.scheduler.load_state_dict(state["scheduler"])
    if state.get("total_steps", loop.total_steps) != loop.total_steps:
        reschedule(loop.scheduler)
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    stopper.load_state_dict(state["early_stopping"])
    loop_state = LoopState(**state["loop"])
    if "sampler" in state:
        loop.data.sampler.check_state(state["sampler"], loop_state.epoch, loop_state.batch_in_epoch)
    if accelerator.is_main_process:
        truncate_metrics(loop.run_dir, state["step"])
    return loop_state, stopper


def train_data(
    cfg: RunConfig, dataset: Any, model: nn.Module, pad_token_id: int, accelerator: Any
) -> TrainData:
    """Rows (packed for ``train.packing``), collate function and this process's sampler."""
    rows, collate, lengths = training_rows(cfg, dataset, model, pad_token_id)
    sampler = LengthGroupedBatchSampler(
        lengths,
        cfg.train.batch_size,
        seed=cfg.train.seed,
        group_by_length=cfg.train.group_by_length,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
    )
    return TrainData(rows, collate, sampler, cfg.train.num_workers)
