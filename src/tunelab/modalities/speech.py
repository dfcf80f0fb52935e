"""The ``speech`` data format: rows ``{audio, text}`` -> a Whisper-style speech-to-text model.

- Examples: ``{"audio": absolute path, "text": transcript, "reference": transcript}``; every
  file is read once while preparing, so a missing, unreadable, too long or unsupported-rate
  file names its row (``data.on_bad_rows: skip`` counts and drops it instead).
- Tokens: the decoder reads the model's prompt (the tokenizer's ``prefix_tokens``:
  ``<|startoftranscript|><|notimestamps|>`` for an English-only Whisper) then the transcript
  (with Whisper's leading space); the labels are the transcript and ``<|endoftext|>``, so
  the prompt carries no loss.
- Features: log-mel ``input_features`` from the model's feature extractor at collate time
  (audio resampled to its rate); the dataset keeps file paths.
- Loss: the summed token cross-entropy over the transcript tokens (the loop divides).
- Generation: greedy ``generate`` from the same prompt (``tunelab.modalities.transcribe``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError, first_line
from tunelab.modalities.audio import BadAudio, audio_seconds, audio_source, read_audio, too_long
from tunelab.modalities.base import BadFile, Modality, Processor

if TYPE_CHECKING:
    from torch import nn

    from tunelab.config import ColumnsConfig, DataConfig, MethodConfig, ModelConfig, RunConfig

IGNORE = -100
DECODER_POSITIONS = 448  # Whisper's decoder: prompt + transcript + end token
METHODS = ("lora", "full", "freeze", "bitfit")  # what trains a Whisper model here
LORA_TARGETS = ["q_proj", "v_proj"]  # method.lora.target_modules all-linear, for Whisper


class SpeechProcessor(Processor):
    """A Whisper processor: ``feature_extractor`` (audio -> log-mel) and ``tokenizer``."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.feature_extractor = inner.feature_extractor
        self.tokenizer = inner.tokenizer
        self.pad_token_id = self.tokenizer.pad_token_id
        self.eos_token = self.tokenizer.eos_token

    @property
    def rate(self) -> int:
        """The sample rate the model hears."""
        return int(self.feature_extractor.sampling_rate)

    @property
    def window(self) -> float:
        """The longest audio the model hears per example (Whisper: 30 s)."""
        return self.feature_extractor.n_samples / self.feature_extractor.sampling_rate

    def read(self, path: str) -> Any:
        """The audio file at the model's rate (:class:`BadAudio` when it cannot be used)."""
        return read_audio(path, self.rate, self.window)

    def features(self, sources: Sequence[Any]) -> Any:
        """Log-mel ``input_features`` of audio files (paths) or already-read sample arrays."""
        audio = [self.read(s) if isinstance(s, str) else s for s in sources]
        return self.feature_extractor(audio, sampling_rate=self.rate, return_tensors="pt")[
            "input_features"
        ]


class Speech(Modality):
    """Audio file + transcript -> a sequence-to-sequence speech model (Whisper)."""

    format = "speech"
    task = "speech_to_text"
    input_key = "audio"

    def config_problems(self, cfg: RunConfig) -> list[str]:
        problems = [p for p in super().config_problems(cfg) if "virtual tokens" not in p]
        if cfg.task != self.task:
            problems.append(
                f"model.task {cfg.task} does not fit data.format speech; leave model.task out "
                "(speech trains speech_to_text)"
            )
        if cfg.method.name not in METHODS:
            problems.append(
                f"method {cfg.method.name} does not apply to data.format speech; use "
                f"{', '.join(METHODS)} (prompt/prefix tuning prepend virtual tokens to a text "
                "input; the bottleneck adapter is not supported for Whisper)"
            )
        return problems

    def required_columns(self, columns: ColumnsConfig) -> dict[str, str]:
        return {"audio": columns.audio, "text": columns.text}

    def to_example(self, data: dict[str, Any], columns: ColumnsConfig, base: Path) -> dict:
        """``{"audio", "text", "reference", "seconds"}``; the file's header is read here (a
        file that is not wav/flac audio or has an unsupported rate is a :class:`BadFile`)."""
        from tunelab.data.formats import InvalidRow

        text = data.get(columns.text)
        if not isinstance(text, str) or not text.strip():
            raise InvalidRow(f"the transcript ({columns.text!r}) must be a non-empty text")
        path = self.media(data.get(columns.audio), base)
        try:
            seconds = audio_seconds(path)
        except BadAudio as exc:
            raise BadFile(str(exc)) from None
        return {"audio": path, "text": text, "reference": text, "seconds": round(seconds, 3)}

    def media(self, value: Any, base: Path) -> str:
        try:
            return audio_source(value, base)
        except BadAudio as exc:
            raise BadFile(str(exc)) from None

    def content_key(self, example: dict[str, Any]) -> str:
        """The audio file's bytes and the transcript (one clip may carry two readings)."""
        digest = hashlib.sha256(Path(example["audio"]).read_bytes())
        digest.update(example["text"].encode())
        return digest.hexdigest()

    def load_processor(self, source: str, model_cfg: ModelConfig) -> SpeechProcessor:
        from transformers import AutoProcessor

        try:
            inner = AutoProcessor.from_pretrained(source)
        except (OSError, ValueError, TypeError) as exc:
            raise TunelabError(
                f"{source}: no speech processor in it (data.format speech needs a Whisper "
                f"model folder with its processor files; {first_line(exc)})"
            ) from None
        if getattr(inner, "feature_extractor", None) is None or not hasattr(inner, "tokenizer"):
            raise TunelabError(
                f"{source}: has no audio feature extractor and tokenizer; data.format speech "
                "needs a speech model such as Whisper"
            )
        processor = SpeechProcessor(inner)
        decoder_prompt(processor.tokenizer)  # a tokenizer without one: refused here
        return processor

    def fingerprint(self, processor: SpeechProcessor) -> str:
        from tunelab.data.cache import tokenizer_fingerprint

        state = json.dumps(processor.feature_extractor.to_dict(), sort_keys=True, default=str)
        text = tokenizer_fingerprint(processor.tokenizer)
        return hashlib.sha256(f"{state}|{text}".encode()).hexdigest()

    def encode(
        self,
        examples: list[dict[str, Any]],
        processor: SpeechProcessor,
        label_names: Any,
        data: DataConfig | None = None,
    ) -> dict[str, list[Any]]:
        """File paths and decoder tokens (at most ``data.max_length`` and the decoder's 448
        positions); a clip longer than the model's window is an error."""
        positions = min(data.max_length, DECODER_POSITIONS) if data else DECODER_POSITIONS
        columns: dict[str, list[Any]] = {"audio": [], "decoder_input_ids": [], "labels": []}
        for example in examples:
            if example["seconds"] > processor.window + 1e-6:
                raise TunelabError(
                    str(too_long(example["audio"], example["seconds"], processor.window))
                )
            features = encode_transcript(processor.tokenizer, example["text"], positions)
            columns["audio"].append(example["audio"])
            for key, values in features.items():
                columns[key].append(values)
        return columns

    def collator(self, processor: SpeechProcessor, data: DataConfig | None, train: bool) -> Any:
        return SpeechCollator(processor)

    def check_model(self, config: Any, name: str) -> None:
        from transformers.models.auto import modeling_auto as auto

        if config.model_type not in auto.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES:
            raise TunelabError(
                f"model {name!r} ({config.model_type}) is not a speech-to-text model; "
                "data.format speech needs one such as Whisper (examples/models/whisper_tiny_en)"
            )

    def auto_class(self) -> Any:
        from transformers import AutoModelForSpeechSeq2Seq

        return AutoModelForSpeechSeq2Seq

    def method_config(self, method_cfg: MethodConfig, model: nn.Module) -> MethodConfig:
        """LoRA's ``all-linear`` means the encoder's and decoder's attention q/v for Whisper."""
        settings = method_cfg.settings
        if method_cfg.name != "lora" or settings.target_modules != "all-linear":
            return method_cfg
        lora = settings.model_copy(update={"target_modules": list(LORA_TARGETS)})
        return method_cfg.model_copy(update={"lora": lora})

    def loss_fn(self, chunk_size: int | None) -> Any:
        return speech_loss


def decoder_prompt(tokenizer: Any) -> list[int]:
    """The decoder's start tokens (``prefix_tokens``; for an English-only Whisper
    ``<|startoftranscript|><|notimestamps|>``)."""
    prompt = list(getattr(tokenizer, "prefix_tokens", None) or [])
    if not prompt:
        raise TunelabError(
            f"tokenizer {type(tokenizer).__name__} has no speech decoder prompt "
            "(prefix_tokens); data.format speech needs a Whisper tokenizer"
        )
    return prompt


def encode_transcript(tokenizer: Any, text: str, positions: int) -> dict[str, list[int]]:
    """``{"decoder_input_ids", "labels"}``: prompt + transcript as decoder input, transcript
    + end token as labels (``-100`` under the prompt), cut to the decoder's ``positions``."""
    prompt = decoder_prompt(tokenizer)
    ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
    ids = ids[: max(positions - len(prompt) - 1, 0)]
    labels = [IGNORE] * (len(prompt) - 1) + ids + [tokenizer.eos_token_id]
    return {"decoder_input_ids": prompt + ids, "labels": labels}


@dataclass
class SpeechCollator:
    """Collate speech rows: ``input_features`` (audio read and resampled here), right-padded
    ``decoder_input_ids`` / ``decoder_attention_mask``, and ``labels`` padded with -100."""

    processor: SpeechProcessor

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        length = max(len(r["decoder_input_ids"]) for r in rows)
        ids = torch.full((len(rows), length), self.processor.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        labels = torch.full((len(rows), length), IGNORE, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["decoder_input_ids"])
            ids[i, :n] = torch.as_tensor(row["decoder_input_ids"])
            mask[i, :n] = 1
            labels[i, :n] = torch.as_tensor(row["labels"])
        return {
            "input_features": self.processor.features([r["audio"] for r in rows]),
            "decoder_input_ids": ids,
            "decoder_attention_mask": mask,
            "labels": labels,
        }


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


def transcribe(model: Any, processor: SpeechProcessor, input_features: Any, max_new_tokens: int):
    """Greedy transcripts of a batch of ``input_features``, from the decoder prompt."""
    import torch

    param = next(model.parameters())
    prompt = decoder_prompt(processor.tokenizer)
    limit = getattr(getattr(model, "config", None), "max_target_positions", DECODER_POSITIONS)
    start = torch.tensor([prompt] * len(input_features), device=param.device)
    with torch.no_grad():
        out = model.generate(
            input_features=input_features.to(param.device, param.dtype),
            decoder_input_ids=start,
            max_new_tokens=max(1, min(max_new_tokens, limit - len(prompt))),
            do_sample=False,
        )
    sequences = getattr(out, "sequences", out)
    texts = processor.tokenizer.batch_decode(sequences, skip_special_tokens=True)
    return [text.strip() for text in texts]


MODALITY = Speech()
