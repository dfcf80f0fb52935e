"""``tunelab tune``: an Optuna search over ``--space`` settings, one training run per trial.

Each trial trains ``CONFIG`` with its sampled settings into ``OUT/trials/trial-NNNN`` (no
end-of-run evaluation), reports the validation metric (``train.early_stopping.metric``,
its direction from ``mode``) after every validation, and is pruned when it falls behind the
median of earlier trials at the same step. The study lives in ``OUT/study.db`` (SQLite), or
in ``--storage URL`` (any database Optuna supports: several workers started with the same
URL and study name share the trials). Running the command again continues the study until
``--trials`` trials have finished (completed or pruned). The best trial's config is written
to ``OUT/best_config.yaml`` (with the original ``output.dir``) and ``OUT/best.json``.
"""

from __future__ import annotations

import importlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelab.config import RunConfig, dump_config, load_config
from tunelab.errors import ConfigError, TunelabError, first_line
from tunelab.io import atomic_write_json
from tunelab.tune.space import Param, as_overrides, parse_space

HEARTBEAT_S = 60  # a trial whose worker stopped beating this long ago is marked failed


@dataclass
class TuneResult:
    """A finished (or continued) search."""

    study_name: str
    storage: str
    metric: str
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    finished_trials: int


def load_optuna() -> Any:
    """Optuna, or the install command."""
    try:
        return importlib.import_module("optuna")
    except ImportError:
        raise TunelabError("tunelab tune needs optuna: pip install 'tunelab[tune]'") from None


def check_space(config: Path, overrides: list[str], params: list[Param]) -> RunConfig:
    """The base config; every key of the space must take both ends of its range (or every
    choice) or the error names the key."""
    base = load_config(config, overrides)
    for param in params:
        for value in param.corners():
            try:
                load_config(config, [*overrides, *as_overrides({param.key: value})])
            except ConfigError as exc:
                raise TunelabError(f"--space {param.key}={value}: {first_line(exc)}") from None
    if base.data.split.validation <= 0 and not base.data.validation_path:
        raise TunelabError(
            "tunelab tune needs a validation split to score trials: data.split.validation > 0 "
            "or data.validation_path"
        )
    return base


def make_storage(optuna: Any, url: str) -> Any:
    """An RDB storage with heartbeats, so trials of a killed worker are marked failed."""
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 4
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, heartbeat_interval=HEARTBEAT_S, grace_period=2 * HEARTBEAT_S
        )


def tune(
    config: str | Path,
    space: list[str],
    trials: int,
    overrides: list[str] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    out: str | Path | None = None,
    console: Console | None = None,
) -> TuneResult:
    """Search ``space`` (``--space`` items) with ``trials`` finished trials in total."""
    from tunelab.train import train

    console = console or Console()
    if trials < 1:
        raise TunelabError(f"--trials {trials}: give at least 1")
    overrides = list(overrides or [])
    params = parse_space(space)
    config = Path(config)
    base = check_space(config, overrides, params)
    optuna = load_optuna()
    out_dir = Path(out) if out is not None else base.run_dir / "tune"
    out_dir.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    name = study_name or config.stem
    stopping = base.train.early_stopping
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            storage=make_storage(optuna, url),
            study_name=name,
            direction="minimize" if stopping.mode == "min" else "maximize",
            sampler=optuna.samplers.TPESampler(seed=base.train.seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2),
            load_if_exists=True,
        )
    except Exception as exc:  # a bad URL, an unreachable database, a missing driver
        raise TunelabError(f"--storage {url}: {type(exc).__name__}: {first_line(exc)}") from None
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    done = len(study.get_trials(deepcopy=False, states=states))
    if done:
        console.print(f"study {name!r} in {url}: {done} trial(s) finished before; continuing")

    def objective(trial: Any) -> float:
        values = {p.key: p.suggest(trial) for p in params}
        run_dir = out_dir / "trials" / f"trial-{trial.number:04d}"
        trial_overrides = [
            *overrides,
            *as_overrides(values),
            f"output.dir={run_dir}",
            "eval.at_end=false",
        ]
        cfg = load_config(config, trial_overrides)

        def report(step: int, metrics: dict[str, float]) -> None:
            value = float(metrics[stopping.metric])
            if math.isfinite(value):
                trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} ({stopping.metric} {value:.4g})")

        shown = " ".join(f"{k}={_short(v)}" for k, v in values.items())
        with (run_dir.parent / f"{run_dir.name}.log").open("w", encoding="utf-8") as log:
            try:
                result = train(cfg, resume=False, console=Console(file=log), on_eval=report)
            except optuna.TrialPruned:
                console.print(f"trial {trial.number}: {shown} -> pruned")
                raise
        if result.best_metric is None:
            raise TunelabError(f"trial {trial.number} logged no {stopping.metric}; see {run_dir}")
        console.print(
            f"trial {trial.number}: {shown} -> {stopping.metric} {result.best_metric:.4g}"
        )
        return float(result.best_metric)

    (out_dir / "trials").mkdir(exist_ok=True)
    if done < trials:
        study.optimize(
            objective,
            n_trials=trials - done,
            callbacks=[optuna.study.MaxTrialsCallback(trials, states=states)],
        )
    return write_best(
        study, states, config, overrides, out_dir, name, url, stopping.metric, console
    )


def write_best(
    study: Any, states: tuple, config: Path, overrides: list[str], out_dir: Path,
    name: str, url: str, metric: str, console: Console,
) -> TuneResult:  # fmt: skip
    """``best_config.yaml`` and ``best.json`` from the study's best completed trial."""
    finished = len(study.get_trials(deepcopy=False, states=states))
    completed = [t for t in study.get_trials(deepcopy=False) if t.state == states[0]]
    if not completed:
        return TuneResult(name, url, metric, None, {}, None, finished)
    best = study.best_trial
    cfg = load_config(config, [*overrides, *as_overrides(best.params)])
    path = out_dir / "best_config.yaml"
    dump_config(cfg, path)
    summary = {"study": name, "storage": url, "metric": metric, "value": best.value,
               "trial": best.number, "params": best.params, "finished_trials": finished}  # fmt: skip
    atomic_write_json(out_dir / "best.json", summary)
    console.print(
        f"best: trial {best.number} {metric} {best.value:.4g} with "
        f"{' '.join(f'{k}={_short(v)}' for k, v in best.params.items())}; config: {path}"
    )
    return TuneResult(name, url, metric, best.value, dict(best.params), path, finished)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
