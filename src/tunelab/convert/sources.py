"""Source files for the converters: found, or a one-line error that says how to get them."""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError, first_line

FETCH_HINT = "run scripts/install.sh --multimodal to fetch it"


def require_file(path: str | Path, what: str) -> Path:
    """``path`` as a Path when it is a file; else a TunelabError naming it and the fix."""
    path = Path(path)
    if not path.is_file():
        raise TunelabError(f"{what} not found: {path} ({FETCH_HINT})")
    return path


def unreadable(path: str | Path, what: str, exc: BaseException) -> TunelabError:
    """The one-line error for a source file that exists but cannot be read as ``what``."""
    return TunelabError(
        f"{what} {path} is unreadable or corrupt ({first_line(exc)}); delete it and {FETCH_HINT}"
    )
