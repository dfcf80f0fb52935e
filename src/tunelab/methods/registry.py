"""The method registry: ``method.name`` -> :class:`~tunelab.methods.base.Method`.

Adding a method is one module defining its ``Method`` plus one line here (its instance in
the tuple below; outside tunelab, one ``register(...)`` call). Artifacts, export and
inference read what they need from here; the config gets the methods handed over
(``use_methods``: its ``method`` union is rebuilt at import and on every (un)registration).
"""

from __future__ import annotations

from tunelab.config.method import DEFAULT_METHOD
from tunelab.config.run import use_methods
from tunelab.errors import TunelabError
from tunelab.methods.adapter import ADAPTER
from tunelab.methods.auto import AUTO
from tunelab.methods.base import Method
from tunelab.methods.bitfit import BITFIT
from tunelab.methods.freeze import FREEZE
from tunelab.methods.full import FULL
from tunelab.methods.lora import LORA
from tunelab.methods.prefix_tuning import PREFIX_TUNING
from tunelab.methods.prompt_tuning import PROMPT_TUNING

METHODS: dict[str, Method] = {
    method.name: method
    for method in (FULL, FREEZE, BITFIT, ADAPTER, LORA, PROMPT_TUNING, PREFIX_TUNING, AUTO)
}
__all__ = ["DEFAULT_METHOD", "METHODS", "Method", "get_method", "register", "unregister"]


def register(method: Method) -> Method:
    """Add (or replace) ``method`` under its name; the config accepts it from now on."""
    METHODS[method.name] = method
    use_methods(METHODS)
    return method


def unregister(name: str) -> None:
    """Remove the method ``name`` (e.g. a test's toy method); the config refuses it again."""
    METHODS.pop(name, None)
    use_methods(METHODS)


def get_method(name: str) -> Method:
    """The registered method ``name``; a clear error for an unknown one."""
    if name not in METHODS:
        raise TunelabError(
            f"unknown method {name!r}; registered methods: {', '.join(METHODS)} "
            "(register a custom one with tunelab.methods.registry.register)"
        )
    return METHODS[name]


use_methods(METHODS)
