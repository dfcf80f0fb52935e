"""The ``speech`` data format: rows ``{audio, text}`` -> a Whisper-style speech-to-text model.

- Examples: ``{"audio": absolute path, "text": transcript, "reference": transcript}``; every
  file is read once while preparing (a missing, unreadable, too long or unsupported-rate file
  names its row; ``data.on_bad_rows: skip`` counts and drops it instead).
- Tokens: the decoder reads the model's prompt (``<|startoftranscript|><|notimestamps|>`` for
  an English-only model, the tokenizer's ``prefix_tokens``) then the transcript (with Whisper's
  leading space); the labels are the transcript and ``<|endoftext|>``: the prompt carries no
  loss.
- Features: log-mel input features from the model's feature extractor at collate time (audio
  resampled to its rate), so nothing large is cached.
- Loss: the summed token cross-entropy over the transcript tokens (what the loop divides).
- Generation: greedy ``generate`` from the same prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.modalities.audio import BadAudio, audio_source, read_audio

IGNORE = -100
TRANSCRIPT_TOKENS = 440  # Whisper's decoder holds 448 positions: prompt + transcript + EOS


def load_processor(source: str) -> Any:
    """The model's processor (feature extractor + tokenizer); an error names what is missing."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as exc:
        raise TunelabError(
            f"{source}: no speech processor to read (data.format speech needs a Whisper model "
            f"folder with preprocessor_config.json; {str(exc).splitlines()[0]})"
        ) from None
    if getattr(processor, "feature_extractor", None) is None:
        raise TunelabError(
            f"{source}: has no audio feature extractor (preprocessor_config.json); "
            "data.format speech needs a speech model such as Whisper"
        )
    return processor


def window_seconds(feature_extractor: Any) -> float:
    """The longest audio the model hears per example (Whisper: 30 s)."""
    return feature_extractor.n_samples / feature_extractor.sampling_rate


def to_example(data: Mapping[str, Any], audio_key: str, text_key: str, base_dir: Path, where: str):
    """The canonical example of one raw row; :class:`BadAudio` / ValueError say why not."""
    text = data.get(text_key)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: the transcript ({text_key!r}) must be a non-empty text")
    source = audio_source(data.get(audio_key), base_dir, where)
    return {"audio": source, "text": text, "reference": text}


def check_audio(example: Mapping[str, Any], feature_extractor: Any, where: str) -> float:
    """Read the example's audio once (raises :class:`BadAudio`); its duration in seconds."""
    rate = feature_extractor.sampling_rate
    samples = read_audio(example["audio"], rate, where, window_seconds(feature_extractor))
    return len(samples) / rate


def decoder_prompt(tokenizer: Any) -> list[int]:
    """The decoder's start tokens (``prefix_tokens``: e.g. ``<|startoftranscript|>
    <|notimestamps|>`` for an English-only Whisper)."""
    prompt = list(getattr(tokenizer, "prefix_tokens", None) or [])
    if not prompt:
        raise TunelabError(
            f"tokenizer {type(tokenizer).__name__} has no speech decoder prompt "
            "(prefix_tokens); data.format speech needs a Whisper tokenizer"
        )
    return prompt


def encode_transcript(
    tokenizer: Any, text: str, max_length: int
) -> tuple[dict[str, list[int]], bool]:
    """``({"decoder_input_ids", "labels"}, truncated)``: prompt + transcript as decoder input,
    transcript + EOS as labels (``-100`` under the prompt)."""
    prompt = decoder_prompt(tokenizer)
    ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
    room = min(max_length, TRANSCRIPT_TOKENS + len(prompt) + 1) - len(prompt) - 1
    truncated = len(ids) > room
    ids = ids[: max(room, 0)]
    labels = [IGNORE] * (len(prompt) - 1) + ids + [tokenizer.eos_token_id]
    return {"decoder_input_ids": prompt + ids, "labels": labels}, truncated


def encode_split(
    examples: Sequence[Mapping[str, Any]], tokenizer: Any, max_length: int
) -> tuple[dict[str, list[Any]], list[int], int]:
    """``(columns, token lengths, truncated rows)`` of one split's examples."""
    columns: dict[str, list[Any]] = {"audio": [], "decoder_input_ids": [], "labels": []}
    lengths, truncated = [], 0
    for example in examples:
        features, cut = encode_transcript(tokenizer, example["text"], max_length)
        truncated += cut
        columns["audio"].append(example["audio"])
        for key, values in features.items():
            columns[key].append(values)
        lengths.append(len(features["decoder_input_ids"]))
    return columns, lengths, truncated


@dataclass
class SpeechCollator:
    """Collate speech rows: log-mel ``input_features`` (read and resampled here), right-padded
    ``decoder_input_ids`` / ``decoder_attention_mask``, and ``labels`` padded with -100."""

    feature_extractor: Any
    pad_token_id: int

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        batch = {"input_features": features(self.feature_extractor, [r["audio"] for r in rows])}
        length = max(len(r["decoder_input_ids"]) for r in rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["decoder_input_ids"])
            ids[i, :n] = torch.as_tensor(row["decoder_input_ids"])
            mask[i, :n] = 1
            labels[i, :n] = torch.as_tensor(row["labels"])
        return {**batch, "decoder_input_ids": ids, "decoder_attention_mask": mask, "labels": labels}


def features(feature_extractor: Any, sources: Sequence[str]) -> Any:
    """The log-mel input features of audio files (or already-read sample arrays)."""
    rate = feature_extractor.sampling_rate
    window = window_seconds(feature_extractor)
    audio = [
        read_audio(s, rate, f"audio {s}", window) if isinstance(s, str) else s for s in sources
    ]
    out = feature_extractor(audio, sampling_rate=rate, return_tensors="pt")
    return out["input_features"]


def speech_loss(model: Any, batch: Mapping[str, Any]) -> tuple[Any, int]:
    """Summed fp32 cross-entropy over the transcript tokens, and their number."""
    import torch.nn.functional as F

    logits = model(
        input_features=batch["input_features"],
        decoder_input_ids=batch["decoder_input_ids"],
        decoder_attention_mask=batch["decoder_attention_mask"],
    ).logits
    labels = batch["labels"]
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="sum"
    )
    return loss, int((labels != IGNORE).sum())


def transcribe(model: Any, tokenizer: Any, input_features: Any, max_new_tokens: int) -> list[str]:
    """Greedy transcripts of a batch of input features, from the decoder prompt."""
    import torch

    param = next(model.parameters())
    prompt = decoder_prompt(tokenizer)
    limit = getattr(getattr(model, "config", None), "max_target_positions", None) or 448
    new_tokens = max(1, min(max_new_tokens, limit - len(prompt)))
    start = torch.tensor([prompt] * len(input_features), device=param.device)
    with torch.no_grad():
        out = model.generate(
            input_features=input_features.to(param.device, param.dtype),
            decoder_input_ids=start,
            max_new_tokens=new_tokens,
            do_sample=False,
        )
    sequences = out.sequences if hasattr(out, "sequences") else out
    return [text.strip() for text in tokenizer.batch_decode(sequences, skip_special_tokens=True)]


__all__ = [
    "BadAudio",
    "SpeechCollator",
    "check_audio",
    "decoder_prompt",
    "encode_split",
    "encode_transcript",
    "features",
    "load_processor",
    "speech_loss",
    "to_example",
    "transcribe",
    "window_seconds",
]
