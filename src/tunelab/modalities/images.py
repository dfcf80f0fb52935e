"""Images: check a row's image reference, decode it, and augment it for training.

A reference is a path (relative to the data file's folder, or absolute), raw bytes, or a
Parquet/``datasets`` image cell (``{"bytes": ..., "path": ...}``). The data pipeline only
checks that it opens; the collator decodes it (as RGB) when the batch is built.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.data.formats import InvalidRow
from tunelab.errors import TunelabError, first_line
from tunelab.modalities.base import BadFile

if TYPE_CHECKING:
    from PIL import Image

    from tunelab.config.data import AugmentConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
Reference = str | bytes


def image_reference(value: Any, base: Path) -> Reference:
    """The checked reference of a row's image: an absolute path or bytes.

    Raises InvalidRow for a missing value, BadFile for a file that is missing, unreadable,
    or text where an image was expected.
    """
    if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        value = value.get("bytes") or value["path"]
    if value is None or value == "":
        raise InvalidRow("image is missing")
    if isinstance(value, bytes | bytearray):
        check_image(io.BytesIO(value), "the image bytes")
        return bytes(value)
    if not isinstance(value, str):
        raise BadFile(f"image must be a file path or bytes, got {type(value).__name__}")
    path = Path(value).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        if Path(value).suffix.lower() not in IMAGE_SUFFIXES:
            shown = value if len(value) <= 40 else value[:39] + "…"
            raise BadFile(f"image column holds text ({shown!r}), not an image path or bytes")
        raise BadFile(f"image file not found: {path}")
    check_image(path, str(path))
    return str(path.resolve())


def check_image(source: Any, name: str) -> None:
    """Raise BadFile when ``source`` (a path or file object) is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise BadFile(f"cannot read image {name} ({first_line(exc)})") from None


def load_image(reference: Reference) -> Image.Image:
    """The image as RGB; a file gone since the data was prepared is a one-line error."""
    from PIL import Image

    source = io.BytesIO(reference) if isinstance(reference, bytes) else reference
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except OSError as exc:
        shown = "image bytes" if isinstance(reference, bytes) else reference
        raise TunelabError(
            f"cannot read {shown} ({first_line(exc)}); it was readable when the data was "
            "prepared: restore it, or delete the data cache entry"
        ) from None


def augment(image: Image.Image, cfg: AugmentConfig) -> Image.Image:
    """A random resized crop (``crop_scale``) and horizontal flip (``flip``), drawn from
    torch's RNG (seeded by ``train.seed``)."""
    import torch
    from PIL import ImageOps

    if cfg.crop_scale is not None and cfg.crop_scale < 1:
        image = random_crop(image, cfg.crop_scale, torch.rand(4).tolist())
    if cfg.flip and torch.rand(1).item() < 0.5:
        image = ImageOps.mirror(image)
    return image


def random_crop(image: Image.Image, min_scale: float, draws: Sequence[float]) -> Image.Image:
    """A crop of between ``min_scale`` and all of the area, aspect ratio 3/4 to 4/3, placed
    by ``draws`` (four numbers in [0, 1)); the processor resizes it afterwards."""
    width, height = image.size
    area = width * height * (min_scale + (1 - min_scale) * draws[0])
    log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * draws[1]
    ratio = math.exp(log_ratio)
    w = max(1, min(width, round(math.sqrt(area * ratio))))
    h = max(1, min(height, round(math.sqrt(area / ratio))))
    left = int((width - w) * draws[2])
    top = int((height - h) * draws[3])
    return image.crop((left, top, left + w, top + h))


@dataclass
class ImageCollator:
    """Rows with an image reference (and ``labels``) -> ``pixel_values`` (and ``labels``),
    through the model's image processor; ``augment`` (training only) before it."""

    processor: Any
    key: str = "image"
    augment: AugmentConfig | None = None

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        images = [load_image(row[self.key]) for row in rows]
        if self.augment is not None:
            images = [augment(image, self.augment) for image in images]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"]
        batch = {"pixel_values": pixels}
        if "labels" in rows[0]:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        return batch
