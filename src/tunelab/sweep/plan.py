"""A sweep's plan: the ``--set KEY=V1,V2,...`` options parsed, every combination a run with
its own folder, each run's config validated before anything runs."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

from tunelab.config import RunConfig, load_config
from tunelab.errors import ConfigError, TunelabError

OPEN, CLOSE = "[{(", "]})"


@dataclass
class SweepKey:
    """One ``--set``: a dotted config key and the values it takes (as written)."""

    key: str
    values: list[str]


@dataclass
class PlannedRun:
    """One combination: its folder name, its ``key=value`` overrides and its validated config."""

    name: str
    settings: dict[str, str]
    cfg: RunConfig


@dataclass
class SweepPlan:
    """Every run of a sweep, in the order they run, under ``sweep_dir``."""

    config: Path
    sweep_dir: Path
    keys: list[SweepKey]
    runs: list[PlannedRun]


def split_values(text: str) -> list[str]:
    """``V1,V2,...`` split at the commas outside brackets and quotes (``[a, b],c`` is two)."""
    values, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in OPEN:
            depth += 1
        elif char in CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_sets(sets: list[str]) -> list[SweepKey]:
    """The ``--set`` options as keys with their values; a malformed or repeated one is an error."""
    keys: list[SweepKey] = []
    for item in sets:
        key, sep, text = item.partition("=")
        key = key.strip()
        values = split_values(text)
        if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise TunelabError(
                f"--set {item!r}: not of the form KEY=V1,V2,... (e.g. train.lr=1e-4,3e-4)"
            )
        if any(not v for v in values):
            raise TunelabError(f"--set {item!r}: an empty value; separate values by single commas")
        if key == "output.dir":
            raise TunelabError(
                "--set output.dir: a sweep puts each run in its own folder under the sweep "
                "directory; choose that with -o DIR"
            )
        if any(k.key == key for k in keys):
            raise TunelabError(f"--set {key}: given twice; list all its values in one --set")
        keys.append(SweepKey(key, values))
    if not keys:
        raise TunelabError("no --set given; name at least one KEY=V1,V2,... to sweep over")
    return keys


def run_name(settings: dict[str, str], varying: list[str]) -> str:
    """A folder name from the values of the keys that vary (``lora_lr-0.001``): a method
    stands for itself, another key for its last part unless two varying keys share it."""
    if not varying:
        return "run"
    last = [key.rsplit(".", 1)[-1] for key in varying]
    parts = []
    for key, short in zip(varying, last, strict=True):
        label = short if last.count(short) == 1 else key
        parts.append(settings[key] if key == "method.name" else f"{label}-{settings[key]}")
    return re.sub(r"[^\w.=+-]+", "_", "_".join(parts)).strip("_")[:120]


def plan_sweep(config: str | Path, sets: list[str], out: str | Path | None = None) -> SweepPlan:
    """Every combination of the ``--set`` values as a validated run under the sweep directory
    (``out``, default the config's ``output.dir``); every problem of every run is reported
    before anything runs."""
    config = Path(config)
    keys = parse_sets(sets)
    base = load_config(config)  # the file alone must be valid
    sweep_dir = Path(out) if out is not None else base.run_dir
    varying = [k.key for k in keys if len(k.values) > 1]
    runs, problems, names = [], {}, set()
    for combo in itertools.product(*(k.values for k in keys)):
        settings = {k.key: value for k, value in zip(keys, combo, strict=True)}
        name = run_name(settings, varying)
        if name in names:
            raise TunelabError(
                f"--set values {settings} give the folder name {name!r} twice; make them differ"
            )
        names.add(name)
        overrides = [f"{key}={value}" for key, value in settings.items()]
        overrides.append(f"output.dir={sweep_dir / name}")
        try:
            cfg = load_config(config, overrides)
        except ConfigError as exc:
            for problem in exc.problems:
                problems.setdefault(problem, []).append(settings)
            continue
        runs.append(PlannedRun(name, settings, cfg))
    if problems:
        total = len(runs) + len({id(r) for rs in problems.values() for r in rs})
        lines = [_where(p, problems[p], varying, total) for p in problems]
        raise ConfigError(lines, str(config))
    return SweepPlan(config, sweep_dir, keys, runs)


def _where(problem: str, runs: list[dict[str, str]], varying: list[str], total: int) -> str:
    """``problem`` named by the ``--set`` values that all the runs having it share (none
    named: every run has it)."""
    shared = [
        f"{key}={runs[0][key]}" for key in varying if all(r[key] == runs[0][key] for r in runs)
    ]
    if shared:
        return f"--set {', '.join(shared)}: {problem}"
    return problem if len(runs) == total else f"{len(runs)} of {total} runs: {problem}"
