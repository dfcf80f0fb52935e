"""Reading a run config: the YAML file, command-line overrides, validation, schema and dump."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tunelab.config.method import METHODS
from tunelab.config.overrides import apply_overrides
from tunelab.config.problems import format_problems
from tunelab.config.run import RunConfig
from tunelab.config.stage_plan import resolve_stages
from tunelab.errors import ConfigError


def load_config(
    source: str | Path | dict[str, Any], overrides: list[str] | tuple[str, ...] = ()
) -> RunConfig:
    """Read, override and validate a run config; raise ConfigError listing every problem.

    ``overrides`` are ``dotted.key=value`` strings (values parsed as YAML, kept whole where
    YAML would read a comment), applied before validation so they are type-checked like the
    file; ``method.name=...`` replaces the file's method (see :mod:`tunelab.config.overrides`).
    """
    name = None
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        name = str(path)
        if not path.is_file():
            raise ConfigError([f"config file not found: {path}"], None)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(
                [f"not valid YAML{line}: {getattr(exc, 'problem', exc)}"], name
            ) from None
        if not isinstance(raw, dict):
            raise ConfigError(["the top level must be a mapping of sections"], name)
    blocks = [n for n, m in METHODS.items() if m.settings is not None]
    raw = apply_overrides(raw, overrides, name, blocks)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_problems(exc, raw), name) from None
    resolve_stages(cfg, name)  # every stage's config is checked up front
    return cfg


def json_schema() -> dict[str, Any]:
    """JSON Schema of the run config, with a description on every field."""
    return RunConfig.model_json_schema()


def dump_config(cfg: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from tunelab.io import atomic_write_text

    data = cfg.model_dump(mode="json")
    if data.get("stages") is None:
        data.pop("stages", None)  # a one-stage run's config.yaml stays as it was
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
