"""What an earlier run left in ``output.dir``, and clearing it for a fresh start.

Only what tunelab writes there is ever removed (:data:`OUTPUTS`, its model card, event files
of earlier TensorBoard writers and tunelab's own temporaries). Kept: ``config.yaml`` and
``data_report.json`` (rewritten by every run), ``eval_base/`` (the base model's scores, which
no training changes), ``adapters/`` (named adapters the user copies in) and any other file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from tunelab.errors import TunelabError
from tunelab.io import fsync_dir

# the results of a trained run: a fresh start that would silently replace them needs --no-resume
RESULTS = ("model", "train_summary.json", "eval_results.json", "predictions.jsonl")
OUTPUTS = (
    *RESULTS,
    "checkpoints",
    "metrics.jsonl",
    "prompting_comparison.json",
    "tasks",
    "report.html",
    "attention.json",
)
MODEL_CARD = "README.md"
SIDE_CARD = "README.tunelab.md"  # the card when the user's own README.md is there
CARD_LINE = "Fine-tuned with tunelab."  # in the first lines of every card tunelab writes
STAGING = ".tunelab-cleared.tmp"


def earlier_results(run_dir: Path) -> list[str]:
    """Names of a trained run's results in ``run_dir`` (its model, summary, evaluation, card)."""
    found = [name for name in RESULTS if (run_dir / name).exists()]
    return found + [card for card in (MODEL_CARD, SIDE_CARD) if is_tunelab_card(run_dir / card)]


def check_no_earlier_results(run_dir: Path) -> None:
    """Refuse an unrequested fresh start over an earlier run's results in ``run_dir``."""
    found = earlier_results(run_dir)
    if found:
        raise TunelabError(
            f"{run_dir} holds an earlier run's results ({', '.join(found)}) and no checkpoint "
            "of this config to resume; pass --no-resume to replace them (only files tunelab "
            "wrote are removed), or set output.dir to a new directory"
        )


def report_finished(
    run_dir: Path, summary: dict[str, Any], console: Console
) -> dict[str, Any] | None:
    """Say (main process) that the run is complete and where its results are; return its
    final metrics. Nothing is written."""
    results = run_dir / "eval_results.json"
    record = json.loads(results.read_text(encoding="utf-8")) if results.is_file() else {}
    if os.environ.get("RANK", "0") == "0":
        where = f"model: {run_dir / 'model'}" + (f", results: {results}" if record else "")
        console.print(
            f"{run_dir}: already trained with this config ({summary['steps']} steps, "
            f"{summary['stop_reason']}); {where}",
            soft_wrap=True,
        )
        console.print("nothing to do; pass --no-resume to train again from scratch")
    return record.get("metrics")


def clear_outputs(run_dir: Path) -> list[str]:
    """Remove what an earlier run of tunelab wrote in ``run_dir``; return the names removed.

    Everything is first renamed into one staging folder (renames are atomic, so no output is
    ever half-deleted), which is then deleted; a crash leaves at most that folder, removed by
    the next call.
    """
    run_dir = Path(run_dir)
    staging = run_dir / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    found = _outputs(run_dir)
    if not found:
        return []
    staging.mkdir()
    for i, path in enumerate(found):
        os.replace(path, staging / f"{i}-{path.name}")
    fsync_dir(run_dir)
    shutil.rmtree(staging, ignore_errors=True)
    return sorted({str(p.relative_to(run_dir)).split(os.sep)[0] for p in found})


def card_path(run_dir: Path) -> Path:
    """Where the model card goes: ``README.md``, unless one tunelab did not write is there
    (the user's, kept), then ``README.tunelab.md``."""
    path = Path(run_dir) / MODEL_CARD
    return path if not path.exists() or is_tunelab_card(path) else path.with_name(SIDE_CARD)


def is_tunelab_card(path: Path) -> bool:
    """True when ``path`` is a model card tunelab wrote (not the user's own README)."""
    if not path.is_file():
        return False
    with path.open(encoding="utf-8", errors="replace") as fh:
        head = [fh.readline().strip() for _ in range(5)]
    return CARD_LINE in head


def _outputs(run_dir: Path) -> list[Path]:
    """The paths :func:`clear_outputs` removes (those that exist)."""
    found = [run_dir / name for name in OUTPUTS if (run_dir / name).exists()]
    found += [run_dir / card for card in (MODEL_CARD, SIDE_CARD) if is_tunelab_card(run_dir / card)]
    names = (*OUTPUTS, MODEL_CARD, SIDE_CARD)
    found += [
        p for p in run_dir.glob(".*") if p.name != STAGING and p.name.startswith(_hidden(names))
    ]
    return found + _earlier_event_files(run_dir / "tensorboard")


def _hidden(names: tuple[str, ...]) -> tuple[str, ...]:
    """Prefixes of tunelab's temporaries for ``names`` (``.model.old``, ``.model.x1y2.tmp``)."""
    return tuple(f".{name}." for name in names)


def _earlier_event_files(folder: Path) -> list[Path]:
    """TensorBoard event files of earlier processes (this one's tracker is already writing)."""
    mine = re.compile(rf"\.{os.getpid()}\.\d+")
    events = folder.rglob("events.out.tfevents.*") if folder.is_dir() else []
    return [p for p in events if not mine.search(p.name)]
