"""Tiny image_chat assets for tests: a tiny Dinov2 tower composed with the session's tiny
Llama into a LLaVA dir, and a small JSONL of coloured-square images."""

from __future__ import annotations

import json
from pathlib import Path

IMAGE_SIZE = 28  # two 14 px patches a side: 4 image tokens
COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30)}


def save_tiny_dinov2(path: Path, seed: int = 0) -> Path:
    """A random-init 2-layer Dinov2Model (hidden 32) + image processor at ``path``."""
    import torch
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=IMAGE_SIZE,
        patch_size=14,
    )
    Dinov2Model(config).save_pretrained(path)
    BitImageProcessorPil(
        size={"shortest_edge": 32},
        crop_size={"height": 224, "width": 224},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(path)
    return path


def write_square_rows(folder: Path, copies: int = 2, name: str = "rows.jsonl") -> Path:
    """PNG squares (one per colour and copy, in ``images/``) and image_chat rows asking for
    the colour; returns the JSONL path (image paths relative to it)."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for copy in range(copies):
        for colour, rgb in COLOURS.items():
            image = f"images/{colour}{copy}.png"
            Image.new("RGB", (30 + copy, 30), rgb).save(folder / image)
            rows.append(chat_row(image, "what colour is it", f"it is {colour}"))
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_row(image: str, question: str, answer: str) -> dict:
    """One image_chat row."""
    user = [{"type": "image", "image": image}, {"type": "text", "text": question}]
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    }
