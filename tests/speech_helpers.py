"""What the speech tests share: tiny clips written on the spot and their run config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

# each clip: (file, transcript, tone Hz, sample rate, channels); the rates and the stereo clip
# make the pipeline resample and mix down
CLIPS = [
    ("a.wav", "hello good morning", 300.0, 16_000, 1),
    ("b.wav", "the team won the match", 500.0, 8_000, 1),
    ("c.flac", "what is your name", 700.0, 22_050, 1),
    ("d.wav", "market price news", 900.0, 44_100, 2),
    ("e.wav", "thanks fine", 1100.0, 16_000, 1),
    ("f.wav", "good night weather today", 1300.0, 16_000, 1),
]


def write_clip(path: Path, freq: float, rate: int, channels: int = 1, seconds: float = 1.0):
    """A seeded tone with a little noise (each clip differs in pitch)."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(int(freq)).normal(0.0, 0.01, len(t))
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + noise
    data = np.stack([wave, wave], axis=1) if channels == 2 else wave
    soundfile.write(str(path), data.astype("float32"), rate)
    return path


def write_rows(folder: Path, name: str, rows: list[dict[str, Any]]) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def speech_data(folder: Path) -> Path:
    """``folder/train.jsonl`` over :data:`CLIPS` and ``folder/validation.jsonl`` (one other
    clip); audio in ``folder/audio/``."""
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rows = []
    for file, text, freq, rate, channels in CLIPS:
        write_clip(folder / "audio" / file, freq, rate, channels)
        rows.append({"audio": f"audio/{file}", "text": text})
    write_clip(folder / "audio" / "held_out.wav", 600.0, 16_000)
    write_rows(folder, "validation.jsonl", [{"audio": "audio/held_out.wav", "text": "good news"}])
    return write_rows(folder, "train.jsonl", rows)


def speech_config(model_dir: Path, data_file: Path, out: Path, **sections: Any) -> dict[str, Any]:
    """A run on the tiny Whisper: every clip trains and is evaluated (memorisation)."""
    raw: dict[str, Any] = {
        "model": {"name_or_path": str(model_dir)},
        "data": {
            "path": str(data_file),
            "format": "speech",
            "split": {"train": 1.0, "validation": 0.0, "test": 0.0},
        },
        "method": {"name": "lora", "lora": {"r": 8, "alpha": 64, "dropout": 0.0}},
        "train": {
            "epochs": 100,
            "max_steps": 20,
            "batch_size": 6,
            "lr": 5e-2,
            "warmup_ratio": 0.0,
            "report_to": [],
            "save_every": 1000,
        },
        "eval": {"split": "train"},  # 64 new tokens at most, as predict
        "output": {"dir": str(out), "report": False},
    }
    for key, value in sections.items():
        raw[key] = value if key == "method" else {**raw.get(key, {}), **value}
    return raw
