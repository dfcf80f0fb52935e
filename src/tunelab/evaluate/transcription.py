"""Evaluation of a speech-to-text model: batched greedy transcripts of a split's audio,
scored by the generate-stage metrics (``wer``), one ``predictions.jsonl`` line per clip."""

from __future__ import annotations

import time
from typing import Any, TextIO

import torch

from tunelab.evaluate.registry import ScoringContext
from tunelab.evaluate.scoring import build_scorers, write_line
from tunelab.modalities.speech import SpeechProcessor, transcribe


@torch.no_grad()
def run_transcription(
    ctx: ScoringContext,
    processor: SpeechProcessor,
    examples: list[dict[str, Any]],
    writer: TextIO,
) -> dict[str, Any]:
    """Transcribe ``examples`` batch by batch; the scorers' results (``wer``, ``cer``)."""
    scorers = build_scorers(ctx, "generate")
    size, limit = ctx.cfg.eval.batch_size, ctx.cfg.eval.generation.max_new_tokens
    for start in range(0, len(examples), size):
        batch = examples[start : start + size]
        t0 = time.perf_counter()
        features = processor.features([ex["audio"] for ex in batch])
        texts = transcribe(ctx.model, processor, features, limit)
        ctx.latency.add(time.perf_counter() - t0, len(batch))
        rows: list[dict[str, Any]] = [{} for _ in batch]
        for scorer in scorers:
            for row, extra in zip(rows, scorer.update(texts, batch) or rows, strict=True):
                row.update(extra)
        for i, (example, text, row) in enumerate(zip(batch, texts, rows, strict=True)):
            record = {"index": start + i, "audio": example["audio"]}
            write_line(
                writer, {**record, "reference": example["reference"], "prediction": text, **row}
            )
    results: dict[str, Any] = {}
    for scorer in scorers:
        results.update(scorer.compute())
    return results
