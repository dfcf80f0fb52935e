"""Problem rendering: pydantic errors as one line each, naming the key, the value and the fix."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from tunelab.config.data import DataConfig
from tunelab.config.method import DEFAULT_METHOD, METHODS, variant
from tunelab.config.run import RunConfig
from tunelab.config.tasks import MultiTaskData

DATA_TAGS = ("single", "tasks")


def format_problems(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    """Turn pydantic errors into lines naming the key path, the value and what is allowed."""
    problems = []
    for err in exc.errors():
        path = _without_method_tag(err["loc"])
        loc = [str(p) for p in path if not _is_union_tag(p)]
        key = ".".join(loc) or "(top level)"
        kind = err["type"]
        if kind == "extra_forbidden":
            hint = _did_you_mean(loc, raw)
            problems.append(f"{key}: unknown key{hint}")
        elif kind == "missing":
            problems.append(f"{key}: required key is missing")
        elif kind == "value_error":
            msg = str(err.get("ctx", {}).get("error", err["msg"]))
            problems.append(f"{key}: {msg}" if loc else msg)
        elif kind == "union_tag_invalid":
            *rest, last = err["ctx"]["expected_tags"].split(", ")
            expected = f"{', '.join(rest)} or {last}" if rest else last
            problems.append(f"{key}.name: got {err['ctx']['tag']!r}; expected one of {expected}")
        elif kind == "union_tag_not_found":
            problems.append(f"{key}: got {err['input']!r}; expected a mapping with a name key")
        else:
            given = _lookup(raw, path)
            allowed = _allowed(err)
            problems.append(f"{key}: got {given!r}; {allowed}")
    return problems


def _without_method_tag(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The error location without the method variant's tag (``method.lora.lora.r``) or the
    data section's (``data.single.path``, ``data.tasks.tasks.0.path``)."""
    if loc[:1] == ("method",) and len(loc) > 1:
        return (loc[0], *loc[2:])
    if loc[:1] == ("data",) and len(loc) > 1 and loc[1] in DATA_TAGS:
        return (loc[0], *loc[2:])
    return loc


def _is_union_tag(part: Any) -> bool:
    """Pydantic puts union-member tags (e.g. 'literal[...]', 'list[str]') in error locations."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "float", "bool"})


def _allowed(err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return f"expected one of {ctx['expected']}"
    for bound, word in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if bound in ctx:
            value = ctx[bound]
            return (
                f"must be {word} {value:g}"
                if isinstance(value, float)
                else f"must be {word} {value}"
            )
    return str(err["msg"]).replace("Input should be", "expected").rstrip(".")


def _lookup(raw: Any, loc: tuple[Any, ...]) -> Any:
    node = raw
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list | tuple) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return node if node is not raw else None
    return node


def _did_you_mean(loc: list[str], raw: dict[str, Any]) -> str:
    fields = _fields_at(loc[:-1], raw)
    if not fields:
        return ""
    close = difflib.get_close_matches(loc[-1], fields, n=1, cutoff=0.5)
    if close:
        return f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?"
    return f"; valid keys here: {', '.join(sorted(fields))}"


def _fields_at(path: list[str], raw: dict[str, Any]) -> list[str]:
    """Names of the valid keys of the section at ``path`` (empty when not a section)."""
    model: Any = RunConfig
    for part in path:
        if isinstance(model, list) and part.isdigit():
            model = model[0]
            continue
        field = model.model_fields.get(part) if _is_section(model) else None
        if field is None:
            return []
        parent, model = model, None
        if parent is RunConfig and part == "method":
            model = _method_variant(raw)
        if parent is RunConfig and part == "data":
            model = MultiTaskData if "tasks" in (raw.get("data") or {}) else DataConfig
        model = model or _section_type(field.annotation)
    return list(model.model_fields) if _is_section(model) else []


def _method_variant(raw: dict[str, Any]) -> type[BaseModel] | None:
    """The method variant the raw config names (None when it names no registered method)."""
    section = raw.get("method")
    name = section.get("name", DEFAULT_METHOD) if isinstance(section, dict) else None
    return variant(METHODS[name]) if name in METHODS else None


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _section_type(annotation: Any) -> Any:
    if _is_section(annotation):
        return annotation
    if typing.get_origin(annotation) is list and _is_section(typing.get_args(annotation)[0]):
        return [typing.get_args(annotation)[0]]  # a list of sections: indexed next
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if _is_section(arg):
                return arg
    return None
