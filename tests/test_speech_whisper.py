"""Whisper tiny.en (converted by ``scripts/install.sh --multimodal``) on real speech: it
transcribes Debian's pocketsphinx recording, and a short LoRA run keeps it doing so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
WHISPER = ROOT / "examples" / "models" / "whisper_tiny_en"
DATA = ROOT / "examples" / "data" / "generated"
GOFORWARD = DATA / "speech" / "pocketsphinx" / "goforward.wav"


def _need_assets() -> None:
    missing = [p for p in (WHISPER / "config.json", DATA / "speech_train.jsonl", GOFORWARD)]
    missing = [p for p in missing if not p.exists()]
    if missing:
        pytest.fail(
            f"{missing[0]} is missing: run scripts/install.sh --multimodal (it converts Whisper "
            "tiny.en and writes the speech data)"
        )


@pytest.mark.integration
def test_whisper_tiny_en_transcribes_real_speech_before_and_after_lora(tmp_path):
    import tunelab
    from tunelab import finetune
    from tunelab.config import load_config
    from tunelab.evaluate.wer import edit_counts

    _need_assets()
    raw = {
        "model": {"name_or_path": str(WHISPER)},
        "data": {
            "path": str(DATA / "speech_train.jsonl"),
            "format": "speech",
            "max_samples": 6,
            "split": {"train": 0.67, "validation": 0.0, "test": 0.33},
        },
        "method": {"name": "lora", "lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}},
        "train": {"max_steps": 2, "batch_size": 2, "lr": 1e-4, "report_to": []},
        "eval": {"batch_size": 2, "generation": {"max_new_tokens": 24}},
        "output": {"dir": str(tmp_path / "run"), "report": False},
    }
    result = finetune(load_config(raw))
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").open()]
    assert len(rows) == 2 and all(r["prediction"] for r in rows)
    assert result.final_metrics["wer"] == pytest.approx(
        sum(edit_counts(r["reference"], r["prediction"])[0] for r in rows)
        / sum(edit_counts(r["reference"], r["prediction"])[1] for r in rows)
    )
    loaded = tunelab.load(tmp_path / "run")
    text = tunelab.predict(loaded, [{"audio": str(GOFORWARD)}])[0]["transcript"]
    # the base model says "Go forward 10 meters." (one word off: "10" for "ten")
    assert edit_counts("go forward ten meters", text)[0] <= 1, text
