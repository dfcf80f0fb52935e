"""The method registry: ``method.name`` -> :class:`~tunelab.methods.base.Method`.

Adding a method is one module defining its ``Method`` plus one line here (or, outside
tunelab, one ``register(...)`` call). Config (the ``method`` union), artifacts, export and
inference read what they need from here. Registering rebuilds the config's method union.
"""

from __future__ import annotations

from collections.abc import Callable

from tunelab.errors import TunelabError
from tunelab.methods.adapter import ADAPTER
from tunelab.methods.base import Method
from tunelab.methods.bitfit import BITFIT
from tunelab.methods.freeze import FREEZE
from tunelab.methods.full import FULL
from tunelab.methods.lora import LORA
from tunelab.methods.prefix_tuning import PREFIX_TUNING
from tunelab.methods.prompt_tuning import PROMPT_TUNING

METHODS: dict[str, Method] = {}
DEFAULT_METHOD = "lora"
_LISTENERS: list[Callable[[], None]] = []


def register(method: Method) -> Method:
    """Add (or replace) ``method`` under its name; the config accepts it from now on."""
    METHODS[method.name] = method
    for listener in _LISTENERS:
        listener()
    return method


def unregister(name: str) -> None:
    """Remove the method ``name`` (e.g. a test's toy method); the config refuses it again."""
    METHODS.pop(name, None)
    for listener in _LISTENERS:
        listener()


def on_register(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every later (un)registration (the config rebuilds its union)."""
    _LISTENERS.append(listener)


def get_method(name: str) -> Method:
    """The registered method ``name``; a clear error for an unknown one."""
    if name not in METHODS:
        raise TunelabError(
            f"unknown method {name!r}; registered methods: {', '.join(METHODS)} "
            "(register a custom one with tunelab.methods.registry.register)"
        )
    return METHODS[name]


for _method in (FULL, FREEZE, BITFIT, ADAPTER, LORA, PROMPT_TUNING, PREFIX_TUNING):
    register(_method)
