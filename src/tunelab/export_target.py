"""Where ``tunelab export`` may write: never into the run, never over files it did not write.

Every export holds :data:`MARKER` (``tunelab_export.json``): the run it came from, the method
and the names of the files written. Only a folder holding that marker and nothing else it
does not list may be replaced, and only when asked (``--overwrite``).
"""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.errors import TunelabError

MARKER = "tunelab_export.json"


def check_output(run_dir: Path, artifact: Path, out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is, lies inside or contains the run; or that holds other files."""
    target = out.resolve()
    for protected in _protected(run_dir, artifact):
        if target == protected or protected in target.parents:
            raise TunelabError(
                f"{out}: is the run {run_dir} or inside it (exporting there would overwrite the "
                "run); choose a folder outside the run directory"
            )
        if target in protected.parents:
            raise TunelabError(
                f"{out}: contains the run {run_dir}; choose a new folder outside the run directory"
            )
    if target.exists() and not target.is_dir():
        raise TunelabError(f"{out}: is a file, not a folder; choose a new folder for the export")
    present = sorted(p.name for p in target.iterdir()) if target.is_dir() else []
    if not present:
        return
    if not overwrite:
        raise TunelabError(
            f"{out}: is not empty; choose a new or empty folder, or pass --overwrite "
            "(overwrite=True) to replace an earlier tunelab export there"
        )
    listed = _exported_files(out)
    extra = [name for name in present if name not in listed]
    if extra:
        raise TunelabError(
            f"{out}: holds files that tunelab did not export ({', '.join(extra[:5])}"
            f"{', ...' if len(extra) > 5 else ''}); --overwrite replaces only an earlier "
            "export: move those files or choose another folder"
        )


def write_marker(folder: Path, artifact: Path, method: str) -> None:
    """Write :data:`MARKER` into a finished export ``folder`` (listing everything in it)."""
    files = sorted({p.name for p in folder.iterdir()} | {MARKER})
    record = {
        "exported_by": "tunelab",
        "artifact": str(artifact.resolve()),
        "method": method,
        "files": files,
    }
    (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _protected(run_dir: Path, artifact: Path) -> list[Path]:
    """The run directory and its artifact folder (resolved), which an export must not touch."""
    artifact = artifact.resolve()
    found = {run_dir.resolve(), artifact}
    if (artifact.parent / "config.yaml").is_file():  # RUN_DIR/model given: protect RUN_DIR
        found.add(artifact.parent)
    return sorted(found)


def _exported_files(out: Path) -> set[str]:
    """The file names an earlier export in ``out`` recorded; a clear error when it is none."""
    path = out / MARKER
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return set(record["files"])
    except FileNotFoundError:
        raise TunelabError(
            f"{out}: is not an earlier tunelab export (no {MARKER}); --overwrite replaces only "
            "an earlier export: choose a new or empty folder"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise TunelabError(
            f"{path}: unreadable export marker ({exc}); choose a new or empty folder"
        ) from None
