"""Tiny random-init image classifiers (ViT, DINOv2, MobileNetV2) with their image processors,
and tiny generated PNG datasets whose classes differ in a way a model can learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
SIZE = 32


def save_tiny_image_model(kind: str, path: Path) -> Path:
    """A random-init ``kind`` (vit, dinov2, mobilenet_v2) classifier and processor at ``path``."""
    import torch
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2ForImageClassification,
        MobileNetV2Config,
        MobileNetV2ForImageClassification,
        MobileNetV2ImageProcessor,
        ViTConfig,
        ViTForImageClassification,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    if kind == "vit":
        model = ViTForImageClassification(
            ViTConfig(image_size=SIZE, patch_size=8, intermediate_size=64, **small)
        )
        processor = ViTImageProcessor(size={"height": SIZE, "width": SIZE})
    elif kind == "dinov2":
        model = Dinov2ForImageClassification(
            Dinov2Config(image_size=28, patch_size=14, mlp_ratio=2, **small)
        )
        processor = BitImageProcessor(
            size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}
        )
    else:
        config = MobileNetV2Config(
            image_size=16, depth_multiplier=0.25, min_depth=4, finegrained_output=False
        )
        config.tf_padding = False  # as the converted torchvision weights (and PEFT's LoRA) need
        model = MobileNetV2ForImageClassification(config)
        processor = MobileNetV2ImageProcessor(
            size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}
        )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def write_png(path: Path, colour: tuple[int, int, int], seed: int) -> Path:
    """A noisy image of one colour."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def write_image_rows(folder: Path, per_class: int = 8, name: str = "train") -> Path:
    """``folder/NAME.jsonl`` with rows ``{"image": "images/NAME/...png", "label": colour}``."""
    lines = []
    for label, colour in COLOURS.items():
        for i in range(per_class):
            rel = f"images/{name}/{label}_{i}.png"
            write_png(folder / rel, colour, seed=hash((name, label, i)) % 2**32)
            lines.append(json.dumps({"image": rel, "label": label}))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
