"""The search space of ``tunelab tune``: ``--space KEY=SPEC`` items.

``SPEC`` is ``LOW:HIGH`` (a float, uniform), with flags after more colons: ``log``
(log-uniform, ``LOW > 0``) and ``int`` (whole numbers), e.g. ``train.lr=1e-5:1e-3:log``,
``method.lora.r=4:64:int:log``; or choices separated by commas, read as YAML:
``train.batch_size=8,16,32``, ``method.name=lora,full``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunelab.config.overrides import override_value
from tunelab.errors import TunelabError

FLAGS = ("log", "int")


@dataclass(frozen=True)
class Param:
    """One searched setting: a range (``low``..``high``, ``log``, ``integer``) or ``choices``."""

    key: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This setting's value for an Optuna ``trial``."""
        if self.choices:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def corners(self) -> list[Any]:
        """Values a config must accept for the space to be valid (both ends, every choice)."""
        if self.choices:
            return list(self.choices)
        cast = int if self.integer else float
        return [cast(self.low), cast(self.high)]


def _bad(item: str, why: str) -> TunelabError:
    return TunelabError(
        f"--space {item!r}: {why}; write KEY=LOW:HIGH[:log][:int] (e.g. "
        "train.lr=1e-5:1e-3:log) or KEY=A,B,C"
    )


def parse_param(item: str) -> Param:
    """One ``--space`` item, or a one-line error naming it and the fix."""
    key, sep, spec = item.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or not spec:
        raise _bad(item, "not of the form KEY=SPEC")
    if ":" not in spec:
        choices = tuple(override_value(part.strip()) for part in spec.split(","))
        if len(choices) < 2:
            raise _bad(item, "give a LOW:HIGH range or at least two choices")
        if len(set(map(repr, choices))) != len(choices):
            raise _bad(item, "a choice is listed twice")
        return Param(key, choices=choices)
    low_text, high_text, *flags = (part.strip() for part in spec.split(":"))
    unknown = [f for f in flags if f not in FLAGS]
    if unknown:
        raise _bad(item, f"unknown flag {unknown[0]!r} (flags: {', '.join(FLAGS)})")
    try:
        low, high = float(low_text), float(high_text)
    except ValueError:
        raise _bad(item, f"{low_text!r} or {high_text!r} is not a number") from None
    if not low < high:
        raise _bad(item, f"LOW {low:g} must be below HIGH {high:g}")
    if "log" in flags and low <= 0:
        raise _bad(item, f"a log range needs LOW > 0 (got {low:g})")
    if "int" in flags and (low != int(low) or high != int(high)):
        raise _bad(item, "an int range needs whole LOW and HIGH")
    return Param(key, low, high, log="log" in flags, integer="int" in flags)


def parse_space(items: list[str]) -> list[Param]:
    """Every ``--space`` item; at least one, no key twice."""
    if not items:
        raise TunelabError(
            "tunelab tune needs at least one --space KEY=SPEC (e.g. train.lr=1e-5:1e-3:log)"
        )
    params = [parse_param(item) for item in items]
    keys = [p.key for p in params]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise TunelabError(f"--space lists {twice[0]} more than once; give each key once")
    return params


def as_overrides(values: dict[str, Any]) -> list[str]:
    """``key=value`` overrides for sampled values (YAML-typed on the way back in)."""
    return [f"{key}={_yaml(value)}" for key, value in values.items()]


def _yaml(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value).lower() if isinstance(value, bool) else str(value)
