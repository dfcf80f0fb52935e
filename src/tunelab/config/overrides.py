"""Command-line overrides (``key.path=value``): applied to the raw config, typed, method switches.

Values are read as YAML (``1e-4``, ``true``, ``[a, b]``), but a command line has no comments:
a value YAML would cut at `` #`` (``output.dir=runs/my run #1``) is kept whole, as a string.

``method.name=NAME`` on the command line replaces the method: the settings blocks of other
methods that came from the file are dropped, with a note (so one config can sweep over
methods). In the file itself, a block for another method stays an error.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from typing import Any

import yaml

from tunelab.errors import ConfigError


def apply_overrides(
    raw: dict[str, Any],
    overrides: Iterable[str],
    name: str | None,
    blocks: Iterable[str],
) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``a.b.c=value`` overrides applied.

    ``blocks`` are the method settings block names a ``method.name`` override may drop.
    """
    out = copy.deepcopy(raw)
    switch_method(out, overrides, blocks)
    problems = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"override {item!r} is not of the form key.path=value")
            continue
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = _child(node, part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict | list):
                problems.append(f"override {item!r}: {part!r} is not a section")
                break
            node = child
        else:
            last = parts[-1]
            if isinstance(node, list) and not (last.isdigit() and int(last) < len(node)):
                problems.append(f"override {item!r}: {last!r} is not an index of that list")
                continue
            node[int(last) if isinstance(node, list) else last] = override_value(value)
    if problems:
        raise ConfigError(problems, name)
    return out


def _child(node: dict[str, Any] | list[Any], part: str) -> Any:
    """``node[part]``; a list is indexed by position (``data.tasks.0.path``), None when absent."""
    if isinstance(node, list):
        return node[int(part)] if part.isdigit() and int(part) < len(node) else False
    return node.get(part)


def override_value(text: str) -> Any:
    """The YAML-typed value of an override; ``text`` stays whole where YAML would drop a part."""
    if not text.strip():
        return None
    try:
        node = yaml.compose(text)
        if node is None or node.end_mark.index < len(text.rstrip()):
            return text  # only a comment, or a trailing part YAML reads as a comment
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def switch_method(raw: dict[str, Any], overrides: Iterable[str], blocks: Iterable[str]) -> None:
    """Drop (in place) the file's settings blocks of methods other than a ``method.name`` override.

    Nothing is dropped when the override names the file's own method; blocks the overrides
    themselves set are kept, so contradictory overrides are still refused.
    """
    names = [item.partition("=")[2] for item in overrides if _key(item) == "method.name"]
    method = raw.get("method")
    if not names or not isinstance(method, dict):
        return
    name = override_value(names[-1])
    if name == method.get("name"):
        return
    keys = [_key(item).split(".") for item in overrides]
    overridden = {parts[1] for parts in keys if len(parts) > 2 and parts[0] == "method"}
    for block in blocks:
        if block != name and block in method and block not in overridden:
            del method[block]
            print(
                f"note: method.name={name} given on the command line; dropped the file's "
                f"method.{block} settings",
                file=sys.stderr,
            )


def _key(item: str) -> str:
    return item.partition("=")[0].strip()
