"""Resolving ``stages:``: each stage's run config is the top-level one with its overrides.

A stage's ``train`` and ``data`` keys merge over the top-level sections (nested mappings
merge, other values replace). Its ``method`` merges over the top-level method when it names
the same method (or none), and replaces it when it names another. Every stage config is
validated like a whole run config; problems are named ``stages[i].key``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from tunelab.config.method import METHODS
from tunelab.config.problems import format_problems
from tunelab.config.run import RunConfig
from tunelab.config.stages import STAGE_SECTIONS, StageConfig
from tunelab.errors import ConfigError
from tunelab.mappings import deep_merge


def resolve_stages(cfg: RunConfig, source: str | None = None) -> list[RunConfig]:
    """The run config of every stage of ``cfg``, in order (``[]`` without ``stages``).

    Raises a ConfigError listing every problem: a key other than name/method/train/data, an
    empty list, a repeated name, a stage config that does not validate, or a stage before the
    last whose method cannot hand plain weights on.
    """
    if cfg.stages is None:
        return []
    if not cfg.stages:
        raise ConfigError(
            ["stages: the list is empty; give at least one stage (name plus method/train/data "
             "overrides) or remove stages for a one-stage run"],
            source,
        )  # fmt: skip
    base = cfg.model_dump(mode="json", exclude={"stages"})
    problems: list[str] = []
    resolved = []
    for i, stage in enumerate(cfg.stages):
        where = f"stages[{i}]"
        found = stage_key_problems(cfg.stages, i)
        if not found:
            raw = merged_config(base, stage)
            try:
                resolved.append(RunConfig.model_validate(raw))
            except ValidationError as exc:
                found = [in_stage(where, line) for line in format_problems(exc, raw)]
        problems += found
        if not found and i < len(cfg.stages) - 1:
            problems += handoff_problems(where, resolved[-1])
    if problems:
        raise ConfigError(problems, source)
    return resolved


def stage_key_problems(stages: list[StageConfig], i: int) -> list[str]:
    """Keys a stage may not have, and a name an earlier stage already has."""
    stage, where = stages[i], f"stages[{i}]"
    problems = [
        f"{where}.{key}: a stage overrides only {', '.join(STAGE_SECTIONS)} (and has a name); "
        f"set {key} at the top level, where it applies to every stage"
        for key in sorted(stage.model_extra or {})
    ]
    earlier = [s.name for s in stages[:i]]
    if stage.name in earlier:
        problems.append(
            f"{where}.name: {stage.name!r} is already stages[{earlier.index(stage.name)}]'s "
            "name; give each stage its own name"
        )
    return problems


def handoff_problems(where: str, stage_cfg: RunConfig) -> list[str]:
    """A stage before the last must end with weights the next one can load as a plain model."""
    name = stage_cfg.method.name
    if METHODS[name].plain_export:
        return []
    allowed = ", ".join(n for n, m in METHODS.items() if m.plain_export)
    return [
        f"{where}.method.name: {name} cannot hand its weights on to a later stage (they do not "
        f"fold into a plain model); use one of {allowed} before the last stage"
    ]


WARMUP_KEYS = (("warmup_steps", "warmup_ratio"), ("warmup_ratio", "warmup_steps"))


def merged_config(base: dict[str, Any], stage: StageConfig) -> dict[str, Any]:
    """The raw config of ``stage``: ``base`` (a dumped config) with its overrides."""
    raw = {**base, "train": deep_merge(base["train"], stage.train)}
    for given, other in WARMUP_KEYS:
        if given in stage.train and other not in stage.train:
            raw["train"][other] = 0  # a stage's warmup replaces the top-level one
    # a stage's data with tasks replaces the section (adds or drops tasks); else it merges
    raw["data"] = (
        dict(stage.data) if "tasks" in stage.data else deep_merge(base["data"], stage.data)
    )
    same_method = stage.method.get("name", base["method"]["name"]) == base["method"]["name"]
    raw["method"] = deep_merge(base["method"], stage.method) if same_method else dict(stage.method)
    return raw


def in_stage(where: str, problem: str) -> str:
    """A problem of a stage's config, named from the stage (``stages[1].train.lr: ...``)."""
    for section in STAGE_SECTIONS:
        problem = problem.replace(f"did you mean '{section}.", f"did you mean '{where}.{section}.")
    if problem.startswith(STAGE_SECTIONS):
        return f"{where}.{problem}"
    return f"{where}: {problem}"
