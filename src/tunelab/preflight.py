"""Check a run config against the disk and the task before anything heavy runs.

``tunelab validate``, the start of ``tunelab train`` and ``tunelab data prepare`` call these
checks, so a config that would fail after training (or with a raw traceback) is refused before
a model loads or a step trains. Every problem is collected and raised together as one
:class:`~tunelab.errors.ConfigError`; each names its config key.

- data: ``data.path``, ``validation_path`` and ``test_path`` exist (``pkg://`` resolves), fit
  ``data.file_type`` (a folder is not a jsonl file) and, in their first ``PEEK_ROWS`` rows,
  hold the columns the format needs.
- model: a value that is a path (starts with ``/``, ``.``, ``~`` or ``pkg://``, exists, or its
  first part exists here) must be a directory with a ``config.json`` that parses (or hold
  ``model.gguf_file``); a hub id (``org/name`` not on disk) is left to the loader.
  ``data.max_length`` must fit the position limit in that ``config.json``.
- metrics: ``train.early_stopping.metric`` is one validation computes for the task,
  ``eval.metrics`` fit the task and format, and METEOR finds WordNet.
- splits: ``eval.at_end`` evaluates a split that gets rows.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from tunelab.config import DataConfig, RunConfig, resolve_stages
from tunelab.data.formats import required_columns
from tunelab.data.loading import detect_type, peek_columns, resolve_files
from tunelab.errors import ConfigError, TunelabError
from tunelab.evaluate.registry import eval_metrics_problem, missing_reason
from tunelab.metric_catalog import VALIDATION_METRICS, infer_mode
from tunelab.modalities.registry import format_task, modality_for
from tunelab.models import HUB_ID, gguf_cache_dir
from tunelab.paths import PKG_PREFIX, resolve_path

PEEK_ROWS = 20
POSITION_KEYS = ("max_position_embeddings", "n_positions")
SPARSE_COLUMNS = ("system", "text_pair")  # optional per row: a JSON row may lack them
DATA_KEYS = ("path", "validation_path", "test_path")


def check_run(cfg: RunConfig, console: Console | None = None, source: str | None = None) -> None:
    """Print :func:`run_warnings`; raise a ConfigError listing every :func:`run_problems`."""
    _report(run_problems(cfg), run_warnings(cfg), console, source)


def check_data(cfg: RunConfig, source: str | None = None) -> None:
    """The checks ``tunelab data prepare`` needs: the data and the model (tokenizer) paths."""
    if cfg.task_names:
        raise ConfigError(
            ["data: tunelab data prepare takes one dataset; data.tasks are prepared by "
             "tunelab train (each task's report: RUN_DIR/tasks/NAME/data_report.json)"],
            source,
        )  # fmt: skip
    _report([*data_problems(cfg.data), *model_problems(cfg, need_config=False)], [], None, source)


def run_problems(cfg: RunConfig) -> list[str]:
    """Every problem that would stop ``tunelab train`` on this machine, as one line each
    (a stage's own ones, with ``stages:``, named ``stages[i]: ...``)."""
    if cfg.task_names:
        problems = [*task_problems(cfg), *model_problems(cfg, need_config=True)]
    else:
        problems = [
            *data_problems(cfg.data),
            *model_problems(cfg, need_config=True),
            *metric_problems(cfg),
            *split_problems(cfg),
        ]
    for i, stage in enumerate(resolve_stages(cfg)):
        problems += [f"stages[{i}]: {p}" for p in run_problems(stage) if p not in problems]
    return problems


def task_problems(cfg: RunConfig) -> list[str]:
    """The data, metric and split problems of every task of ``data.tasks`` (keys named
    ``data.tasks.N.*``), and an early-stopping metric that validation does not compute."""
    problems = []
    for i, name in enumerate(cfg.task_names):
        task_cfg = cfg.for_task(name)
        found = [*data_problems(task_cfg.data), *split_problems(task_cfg)]
        problems += [p.replace("data.", f"data.tasks.{i}.", 1) for p in found]
        problems += eval_metric_problems(task_cfg)
    metric = cfg.train.early_stopping.metric
    produced = list(VALIDATION_METRICS[cfg.task]) + [
        f"eval_{name}_{base.removeprefix('eval_')}"
        for name in cfg.task_names
        for base in VALIDATION_METRICS[cfg.task]
    ]
    if metric not in produced:
        problems.append(
            f"train.early_stopping.metric: {metric!r} is not computed during validation of "
            f"these tasks; choose one of {', '.join(produced)} (eval_<metric> is the mean "
            "over the tasks)"
        )
    return list(dict.fromkeys(problems))


def run_warnings(cfg: RunConfig) -> list[str]:
    """Settings that work but are probably not meant: an early-stopping mode against its metric."""
    stopping = cfg.train.early_stopping
    inferred = infer_mode(stopping.metric)
    if inferred is None or stopping.mode == inferred:
        return []
    better = "lower" if inferred == "min" else "higher"
    kept = "lowest" if stopping.mode == "min" else "highest"
    return [
        f"train.early_stopping.mode is {stopping.mode!r} but {stopping.metric} is better "
        f"{better}: the checkpoint with the {kept} value is kept; remove mode to use {inferred!r}"
    ]


def _report(
    problems: list[str], warnings: list[str], console: Console | None, source: str | None
) -> None:
    if console is not None and os.environ.get("RANK", "0") == "0":
        for warning in warnings:
            console.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)
    if problems:
        raise ConfigError(problems, source)


# ----------------------------------------------------------------------------- data


def data_problems(data: DataConfig) -> list[str]:
    """Missing files, file types that do not fit, and columns the first rows lack."""
    problems = []
    for name in DATA_KEYS:
        spec = getattr(data, name)
        if not spec:
            continue
        try:
            paths = resolve_files(spec)
        except TunelabError as exc:
            problems.append(f"data.{name}: {exc}")
            continue
        for path in paths:
            problems.extend(file_problems(f"data.{name}", path, data))
    return problems


def file_problems(key: str, path: Path, data: DataConfig) -> list[str]:
    """Problems of one data file (or label folder) named by config key ``key``."""
    try:
        kind = detect_type(path, data.file_type)
    except TunelabError as exc:
        return [f"{key}: {exc}"]
    if kind == "folder" and not path.is_dir():
        return [f"{key}: {path} is a file, but data.file_type is folder; name a label folder"]
    if kind != "folder" and path.is_dir():
        return [
            f"{key}: {path} is a folder, but data.file_type is {kind}; name a .{kind} file, or "
            "set data.file_type: folder for one sub-folder of .txt files per label"
        ]
    if kind == "folder" and format_task(data.format) != "classification":
        return [
            f"{key}: {path} is a folder (one sub-folder of .txt files per label), which needs "
            f"data.format classification, not {data.format}; name a data file"
        ]
    if kind == "folder" and not any(p.is_dir() for p in path.iterdir()):
        return [f"{key}: {path} has no label sub-folders (expected <label>/*.txt)"]
    if kind == "folder" and modality_for(data.format) is not None:
        return []  # label folders of media files: the pipeline reads them
    folder_keys = (data.columns.text, data.columns.label or "label")
    try:
        names = peek_columns(path, kind, folder_keys, PEEK_ROWS)
    except TunelabError as exc:
        return [f"{key}: {exc}"]
    except OSError as exc:
        return [f"{key}: {path} cannot be read ({exc.strerror or exc})"]
    return column_problems(path, kind, names, data)


def column_problems(path: Path, kind: str, names: list[str], data: DataConfig) -> list[str]:
    """The format's columns missing from ``names`` (an empty file is left to the pipeline)."""
    if not names:
        return []
    sparse = SPARSE_COLUMNS if kind in ("jsonl", "json") else ()
    return [
        f"data.columns.{key}: column {column!r} is not in {path}; its columns are: "
        f"{', '.join(names)}"
        for key, column in required_columns(data.format, data.columns).items()
        if column not in names and key not in sparse
    ]


# ----------------------------------------------------------------------------- model


def local_path(value: str) -> Path | None:
    """The path ``value`` names, or None for a hub id (``org/name`` that is not on disk).

    A path starts with ``/``, ``.``, ``~`` or ``pkg://``, exists, has a first part that
    exists, or is no valid hub id. An unresolvable ``pkg://`` raises TunelabError.
    """
    path = resolve_path(value)
    first = Path(value).parts[0] if Path(value).parts else value
    if value.startswith((PKG_PREFIX, "/", ".", "~")) or path.exists() or Path(first).exists():
        return path
    return None if HUB_ID.match(value) else path


def model_problems(cfg: RunConfig, need_config: bool) -> list[str]:
    """A model or tokenizer path that does not exist; with ``need_config``, a model directory
    whose ``config.json`` is missing or broken, or a position limit below data.max_length."""
    problems = []
    if cfg.model.tokenizer:
        problems.extend(_missing("model.tokenizer", cfg.model.tokenizer))
    name = cfg.model.name_or_path
    missing = _missing("model.name_or_path", name)
    if missing:
        return [*problems, *missing]
    path = local_path(name)
    if path is None:
        return problems
    if not path.is_dir():
        hint = f" and model.gguf_file: {path.name}" if path.suffix == ".gguf" else ""
        return [*problems, f"model.name_or_path: {name} is a file; give its directory{hint}"]
    if cfg.model.gguf_file:
        try:
            config_file = gguf_cache_dir(cfg.model) / "config.json"
        except TunelabError as exc:
            return [*problems, str(exc)]
        if not config_file.is_file():  # not dequantised yet: no config.json to check
            return problems
    else:
        config_file = path / "config.json"
        if not config_file.is_file():
            if need_config:
                problems.append(
                    f"model.name_or_path: {path} has no config.json (not a Transformers model "
                    "directory; for a GGUF model set model.gguf_file)"
                )
            return problems
    if need_config:
        tasks = [cfg.for_task(name).data for name in cfg.task_names] or [cfg.data]
        problems.extend(config_problems(config_file, max(d.max_length for d in tasks)))
    return problems


def _missing(key: str, value: str) -> list[str]:
    """``[problem]`` when ``value`` is a path that does not exist (or does not resolve)."""
    try:
        path = local_path(value)
    except TunelabError as exc:
        return [f"{key}: {exc}"]
    if path is not None and not path.exists():
        where = f" ({path})" if str(path) != value else ""
        return [f"{key}: {value} does not exist{where}; give a model directory or a hub id"]
    return []


def config_problems(config_file: Path, max_length: int) -> list[str]:
    """A ``config.json`` that does not parse, or a position limit below ``max_length``."""
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [f"model.name_or_path: {config_file} is not valid JSON ({exc})"]
    if not isinstance(config, dict):
        return [f"model.name_or_path: {config_file} is not a JSON object"]
    key, limit = position_limit(config)
    if limit is not None and max_length > limit:
        return [
            f"data.max_length: {max_length} is above the model's position limit {limit} "
            f"({key} in {config_file}); set data.max_length <= {limit}"
        ]
    return []


def position_limit(config: dict[str, Any]) -> tuple[str | None, int | None]:
    """The (key, value) of the model's position limit, also inside ``text_config``."""
    for section in (config, config.get("text_config") or {}):
        for key in POSITION_KEYS:
            value = section.get(key) if isinstance(section, dict) else None
            if isinstance(value, int) and value > 0:
                return key, value
    return None, None


# ----------------------------------------------------------------------------- metrics


def metric_problems(cfg: RunConfig) -> list[str]:
    """An early-stopping metric validation never computes; eval.metrics the task cannot give."""
    problems = []
    metric = cfg.train.early_stopping.metric
    produced = VALIDATION_METRICS[cfg.task]
    if metric not in produced:
        problems.append(
            f"train.early_stopping.metric: {metric!r} is not computed during validation of a "
            f"{cfg.task} run; choose one of {', '.join(produced)}"
        )
    return problems + eval_metric_problems(cfg)


def eval_metric_problems(cfg: RunConfig) -> list[str]:
    """``eval.metrics`` the task or data format cannot give, or this machine cannot compute."""
    if cfg.eval.metrics is None:
        return []
    wrong = eval_metrics_problem(cfg.task, cfg.data.format, cfg.eval.metrics)
    problems = [wrong] if wrong else []
    reasons = (missing_reason(name) for name in dict.fromkeys(cfg.eval.metrics))
    return problems + [f"eval.metrics: {reason}" for reason in reasons if reason]


def split_problems(cfg: RunConfig) -> list[str]:
    """``eval.at_end`` on a split that gets no rows (fraction 0 and no file of its own)."""
    split = cfg.eval.split
    if not cfg.eval.at_end or split == "train":
        return []
    if getattr(cfg.data, f"{split}_path") or getattr(cfg.data.split, split) > 0:
        return []
    return [
        f"eval.split: the {split!r} split gets no rows (data.split.{split} is 0 and there is no "
        f"data.{split}_path); set data.split.{split} > 0, give data.{split}_path, or set "
        "eval.at_end: false"
    ]


def check_splits(cfg: RunConfig, splits: Collection[str]) -> None:
    """Refuse an end-of-run evaluation on a split that the prepared data lacks (its fraction
    rounded to no rows, or cleaning emptied it); called before the model loads."""
    split = cfg.eval.split
    if cfg.eval.at_end and split not in splits:
        raise ConfigError(
            [
                f"eval.split: the data has no {split!r} rows after splitting and cleaning "
                f"(splits: {', '.join(splits)}); raise data.split.{split}, give "
                f"data.{split}_path, or set eval.at_end: false"
            ]
        )
