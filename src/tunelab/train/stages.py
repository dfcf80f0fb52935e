"""Training in stages (``stages:``): each stage is one ordinary run, in order.

Stage ``N`` (1-based) of a run in ``RUN_DIR`` trains with its resolved config
(:func:`tunelab.config.resolve_stages`) in ``RUN_DIR/stages/N-NAME/`` through
:func:`tunelab.train.run.train`, so checkpoints, resume, early stopping and the best
artifact work per stage exactly as in a one-stage run; its optimizer and schedule are its own.
A stage before the last hands on its final artifact (its best checkpoint by the
early-stopping metric, else its last) as a plain model, ``RUN_DIR/handoff/N-NAME/`` (the
method's export: LoRA merged into the weights), which the next stage loads as its base
model and applies its own method to (trainable parameters are chosen afresh; a trained
classification head is part of the weights, so it stays). ``RUN_DIR/stages.json`` records
the stage list, so a resume with a changed list is refused naming the stage; the run's
``model/``, ``metrics.jsonl``, ``train_summary.json`` and evaluation are written by
:mod:`tunelab.train.stage_results`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelab.config import RunConfig, dump_config, load_config, resolve_stages
from tunelab.errors import TunelabError
from tunelab.io import atomic_write_json
from tunelab.preflight import check_run
from tunelab.task_runs import TASKS_FILE, handoff_model
from tunelab.train.checkpoint import (
    config_hash,
    earlier_hash,
    latest_checkpoint,
    resumable,
    run_settings,
    settings_diff,
)
from tunelab.train.previous_run import check_no_earlier_results, clear_outputs, report_finished
from tunelab.train.run import TrainResult, finished_run
from tunelab.train.run import train as train_one
from tunelab.train.stage_results import finish_run, join_metrics

STAGES_DIR = "stages"
HANDOFF_DIR = "handoff"
PLAN_FILE = "stages.json"
METHOD_FILE = "tunelab_method.json"


@dataclass(frozen=True)
class Stage:
    """One stage of a staged run: its name, resolved run config and hand-off folder."""

    index: int  # 0-based, as in stages[i]
    name: str
    cfg: RunConfig  # output.dir: RUN_DIR/stages/N-NAME; model: the previous hand-off
    handoff: Path | None  # where its weights go for the next stage (None: the last stage)

    @property
    def label(self) -> str:
        return f"stages[{self.index}] ({self.name!r})"


def train(
    cfg: RunConfig,
    resume: bool | None = None,
    console: Console | None = None,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg``: one run, or each of its ``stages:`` in order (see the module doc).

    ``resume``: True/False forces, None auto-resumes (a finished stage is not trained again;
    a run killed in stage N resumes in stage N at its latest checkpoint). ``on_eval(step,
    metrics)`` is called after each validation (of every stage; steps count per stage).
    """
    if cfg.stages is None:
        return train_one(cfg, resume, console, on_eval=on_eval)
    return train_stages(cfg, resume, console or Console(), on_eval)


def train_stages(
    cfg: RunConfig,
    resume: bool | None,
    console: Console,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Run every stage of ``cfg`` from where the run directory stands."""
    check_run(cfg, console)  # every stage's data, model and metrics, before anything is written
    stages = plan(cfg)
    main = os.environ.get("RANK", "0") == "0"
    if resume is not False:
        check_plan(cfg.run_dir, stages)
        done = finished_stages(cfg, stages)
        if done is not None:
            metrics = report_finished(cfg.run_dir, done, console)
            return TrainResult(
                cfg.run_dir, cfg.run_dir / "model", "already_finished", done["steps"],
                done.get("best_metric"), done.get("best_step"), done, metrics,
            )  # fmt: skip
        if not any(started(s) for s in stages):
            if resume:
                raise TunelabError(f"--resume: no stage has started in {cfg.run_dir}")
            check_no_earlier_results(cfg.run_dir)
    elif main:  # every stage's results too: none may be resumed from the weights replaced
        for folder in (cfg.run_dir, *(s.cfg.run_dir for s in stages)):
            clear_outputs(folder)
    if main:
        dump_config(cfg, cfg.run_dir / "config.yaml")
        atomic_write_json(cfg.run_dir / PLAN_FILE, {"stages": [plan_entry(s) for s in stages]})
    for stage in stages:
        result = run_stage(stage, len(stages), resume, console, on_eval)
        if main:
            join_metrics(cfg.run_dir, [s.cfg.run_dir for s in stages])
        if result.stop_reason == "interrupted":
            return replace(result, run_dir=cfg.run_dir)
        fresh = result.stop_reason != "already_finished"
        handed = handoff_model(stage.handoff, stage.cfg, stage.cfg) if stage.handoff else None
        if handed is not None and (fresh or not (handed / "config.json").is_file()):
            hand_on(stage, main)
    return finish_run(cfg, {s.name: s.cfg for s in stages}, stages_hash(stages), console)


def plan(cfg: RunConfig) -> list[Stage]:
    """The stages of ``cfg`` with their folders; each after the first starts from the
    previous one's hand-off, and only the run as a whole evaluates at the end."""
    root = cfg.run_dir.resolve()
    resolved = resolve_stages(cfg)
    stages: list[Stage] = []
    for i, (entry, stage_cfg) in enumerate(zip(cfg.stages or [], resolved, strict=True)):
        folder = f"{i + 1}-{entry.name}"
        raw = stage_cfg.model_dump(mode="json", exclude={"stages"})
        raw["output"]["dir"] = str(root / STAGES_DIR / folder)
        raw["eval"].update(at_end=False, prompting_baseline=False)
        if stages:
            previous = handoff_model(stages[-1].handoff, stages[-1].cfg, stage_cfg)
            raw["model"].update(name_or_path=str(previous), tokenizer=None, gguf_file=None)
        handoff = root / HANDOFF_DIR / folder if i < len(resolved) - 1 else None
        stages.append(Stage(i, entry.name, load_config(raw), handoff))
    return stages


def run_stage(
    stage: Stage,
    count: int,
    resume: bool | None,
    console: Console,
    on_eval: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one stage (or report it already trained) as an ordinary run in its folder."""
    if resume is not False and (done := finished_run(stage.cfg)) is not None:
        console.print(
            f"stage {stage.index + 1}/{count} {stage.name}: already trained "
            f"({done['steps']} steps, {done['stop_reason']})"
        )
        return TrainResult(
            stage.cfg.run_dir, stage.cfg.run_dir / "model", "already_finished", done["steps"],
            done.get("best_metric"), done.get("best_step"), done,
        )  # fmt: skip
    console.print(
        f"[bold]stage {stage.index + 1}/{count} {stage.name}[/]: method "
        f"{stage.cfg.method.name}, from {stage.cfg.model.name_or_path}",
        soft_wrap=True,
    )
    return train_one(
        stage.cfg, None if resume else resume, console, on_eval=on_eval, stage=stage.name
    )


def hand_on(stage: Stage, main: bool) -> None:
    """Write the stage's final artifact as a plain model for the next stage (main process)."""
    from tunelab.export import export_run

    assert stage.handoff is not None
    if main:
        export_run(stage.cfg.run_dir, stage.handoff, overwrite=True)
    wait_for_everyone()


def wait_for_everyone() -> None:
    """A barrier when several processes train (the hand-off must exist for all of them)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def started(stage: Stage) -> bool:
    """Whether the stage has a checkpoint or a finished run in its folder."""
    folder = stage.cfg.run_dir
    return latest_checkpoint(folder) is not None or (folder / "train_summary.json").is_file()


def plan_entry(stage: Stage) -> dict[str, Any]:
    """What ``stages.json`` records of a stage."""
    return {"name": stage.name, "dir": stage.cfg.run_dir.name, "settings": run_settings(stage.cfg)}


def stages_hash(stages: list[Stage], earlier: bool = False) -> str:
    """Hash of every stage's training-relevant config, in order (``earlier``: as the tunelab
    that trained the stages hashed them, see :func:`tunelab.train.checkpoint.earlier_hash`)."""
    hashes = [earlier_hash(s.cfg, s.cfg.run_dir) if earlier else config_hash(s.cfg) for s in stages]
    text = json.dumps([[s.name, h] for s, h in zip(stages, hashes, strict=True)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_plan(run_dir: Path, stages: list[Stage]) -> None:
    """Refuse a stage list that differs from the recorded one in a stage that has started.

    A stage that handed its weights on may change only what alters no step (logging, eval
    and save cadence, evaluation); the stage in progress may also get more steps or epochs,
    as a one-stage run may. Stages not started yet may change freely.
    """
    recorded = plan_entries(run_dir)
    for i, entry in enumerate(recorded):
        folder = Path(run_dir) / STAGES_DIR / entry["dir"]
        if latest_checkpoint(folder) is None and not (folder / "train_summary.json").is_file():
            continue
        now = stages[i] if i < len(stages) else None
        if now is None or now.name != entry["name"]:
            named = f"{now.name!r}" if now is not None else "no stage"
            raise TunelabError(
                f"stages[{i}] is {named}, but {run_dir} was trained with stage "
                f"{entry['name']!r} there; restore the stage list to resume, pass --no-resume "
                "to start over, or change output.dir"
            )
        handed_on = any(
            (Path(run_dir) / STAGES_DIR / later["dir"]).is_dir() for later in recorded[i + 1 :]
        )
        changed = changed_keys(entry["settings"], now.cfg, handed_on)
        if changed:
            what = "the weights later stages started from" if handed_on else "steps already taken"
            raise TunelabError(
                f"{now.label} differs from the stage {run_dir} was trained with "
                f"({', '.join(changed)}), which would change the {what}; restore it to "
                "resume, pass --no-resume to start over, or change output.dir"
            )


def changed_keys(old: dict[str, Any], cfg: RunConfig, handed_on: bool) -> list[str]:
    """``key old -> new`` for the settings that may not change (see :func:`check_plan`)."""
    fixed = ("train.max_steps", "train.epochs") if handed_on else ()
    return [
        f"{key} {before!r} -> {now!r}"
        for key, (before, now) in settings_diff(old, cfg).items()
        if not resumable(key) or key in fixed
    ]


def finished_stages(cfg: RunConfig, stages: list[Stage]) -> dict[str, Any] | None:
    """The run's ``train_summary.json`` when every stage and the run itself are finished."""
    path = cfg.run_dir / "train_summary.json"
    model = cfg.run_dir / "model"
    if not path.is_file() or not any((model / f).is_file() for f in (METHOD_FILE, TASKS_FILE)):
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if not isinstance(summary, dict) or summary.get("config_hash") not in (
        stages_hash(stages),
        stages_hash(stages, earlier=True),
    ):
        return None
    return summary if all(finished_run(s.cfg) is not None for s in stages) else None


def recorded_stages(run_dir: Path) -> list[tuple[str, Path]]:
    """``(name, folder)`` of each stage a staged run recorded, in order; ``[]`` for a run
    without stages."""
    return [(e["name"], Path(run_dir) / STAGES_DIR / e["dir"]) for e in plan_entries(run_dir)]


def plan_entries(run_dir: Path) -> list[dict[str, Any]]:
    """The stage entries a staged run recorded in its plan file; ``[]`` when it has none."""
    path = Path(run_dir) / PLAN_FILE
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))["stages"]
