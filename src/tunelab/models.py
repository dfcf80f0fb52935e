"""Load tokenizers and pretrained models for a task, including dequantised-and-cached GGUF files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.checkpointing import enable_checkpointing
from tunelab.config import DataConfig, ModelConfig, Task
from tunelab.errors import TunelabError, first_line
from tunelab.io import atomic_dir
from tunelab.modalities.registry import modality_for
from tunelab.paths import PKG_PREFIX, cache_root, resolve_path
from tunelab.status import status

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def quiet_transformers() -> None:
    """Silence Transformers' load reports, info logs and progress bars."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def model_source(model_cfg: ModelConfig) -> str:
    """Where the weights load from: a local directory, a GGUF cache directory, or a hub id."""
    name = model_cfg.name_or_path
    path = resolve_path(name)
    if model_cfg.gguf_file:
        return str(ensure_gguf_cache(model_cfg))
    if path.is_dir():
        return str(path)
    if path.exists():
        raise TunelabError(f"model.name_or_path {name!r}: is a file; give the model directory")
    if name.startswith((PKG_PREFIX, "/", ".", "~")) or not HUB_ID.match(name):
        raise TunelabError(f"model.name_or_path {name!r}: no such directory and not a hub id")
    return name


def tokenizer_source(model_cfg: ModelConfig) -> str:
    """Where the tokenizer loads from (model.tokenizer, else the model's source)."""
    if model_cfg.tokenizer:
        path = resolve_path(model_cfg.tokenizer)
        return str(path) if path.exists() else model_cfg.tokenizer
    return model_source(model_cfg)


def load_tokenizer(model_cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer with a pad token (falls back to EOS) and its chat template kept."""
    from transformers import AutoTokenizer

    quiet_transformers()
    source = tokenizer_source(model_cfg)
    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise TunelabError(f"tokenizer {source!r}: cannot be loaded ({first_line(exc)})") from None
    ensure_pad_token(tok)
    return tok


def load_processor(model_cfg: ModelConfig, fmt: str | None, data: DataConfig | None = None) -> Any:
    """The tokenizer, or for a non-text data format its modality's processor (from
    ``model.tokenizer`` when given, else the model directory; ``data``'s settings applied)."""
    modality = modality_for(fmt)
    if modality is None:
        return load_tokenizer(model_cfg)
    quiet_transformers()
    processor = modality.load_processor(tokenizer_source(model_cfg), model_cfg)
    return modality.adjust_processor(processor, data) if data is not None else processor


def ensure_pad_token(tok: PreTrainedTokenizerBase) -> None:
    """Give ``tok`` a pad token: EOS, else UNK; error when it has neither."""
    if tok.pad_token is not None:
        return
    fallback = tok.eos_token or tok.unk_token
    if fallback is None:
        raise TunelabError("the tokenizer has no pad, eos or unk token to pad with")
    tok.pad_token = fallback


def load_model(
    model_cfg: ModelConfig,
    task: Task,
    label_names: list[str] | None = None,
    quantize: str | None = None,
    fmt: str | None = None,
) -> PreTrainedModel:
    """Load a pretrained model with the head for ``task`` (sequence classification or causal
    LM; a non-text data format ``fmt``: its modality's class); ``quantize`` (``nf4``/``int8``)
    loads the linear layers through bitsandbytes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    quiet_transformers()
    source = model_source(model_cfg)
    trust = model_cfg.trust_remote_code
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust)
    except (OSError, ValueError) as exc:
        raise _load_error(model_cfg.name_or_path, source, exc) from None
    modality = modality_for(fmt)
    if modality is not None:
        modality.check_model(config, model_cfg.name_or_path)
    else:
        check_task_fit(config, task, model_cfg.name_or_path)
    status(f"loading model {model_cfg.name_or_path}")
    kwargs: dict[str, Any] = {"trust_remote_code": trust}
    kwargs["dtype"] = "auto" if model_cfg.dtype == "auto" else getattr(torch, model_cfg.dtype)
    if model_cfg.attn_implementation:
        kwargs["attn_implementation"] = model_cfg.attn_implementation
    if quantize:
        kwargs["quantization_config"] = quantization_config(quantize, task)
    if task == "classification" and label_names:
        kwargs["num_labels"] = len(label_names)
        kwargs["id2label"] = dict(enumerate(label_names))
        kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
        kwargs["ignore_mismatched_sizes"] = True
    if modality is not None:
        auto_cls = modality.auto_class()
    elif task == "classification":
        auto_cls = AutoModelForSequenceClassification
    else:
        auto_cls = AutoModelForCausalLM
    try:
        model = auto_cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise _load_error(model_cfg.name_or_path, source, exc) from None
    if modality is None and model.config.pad_token_id is None:
        model.config.pad_token_id = load_tokenizer(model_cfg).pad_token_id
    if model_cfg.gradient_checkpointing:
        enable_checkpointing(model)
        model.config.use_cache = False
    return model


def quantization_config(quantize: str, task: Task) -> Any:
    """bitsandbytes' config for an NF4 (4-bit) or int8 base; the task head stays unquantised."""
    import importlib.util

    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise TunelabError(
            f"method.lora.quantize {quantize!r} needs bitsandbytes: pip install 'tunelab[qlora]'"
        )
    skip = ["classifier", "score", "pre_classifier"] if task == "classification" else None
    if quantize == "nf4":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.float32,
            llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def check_task_fit(config: Any, task: Task, name: str) -> None:
    """Raise a TunelabError when the architecture cannot do ``task``."""
    from transformers.models.auto import modeling_auto as auto

    kind = config.model_type
    if task == "causal_lm":
        encoder_only = kind in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(
            config, "is_decoder", False
        )
        if encoder_only or kind not in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise TunelabError(
                f"model {name!r} ({kind}) is an encoder-only model and cannot generate text; "
                "use data.format: classification, or a decoder model for causal_lm"
            )
    elif kind not in auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise TunelabError(
            f"model {name!r} ({kind}) has no sequence-classification head in Transformers; "
            "use a generative data format (instruction, chat, qa, text) instead"
        )


# ----------------------------------------------------------------------------- GGUF


def gguf_cache_dir(model_cfg: ModelConfig) -> Path:
    """Cache directory of the dequantised GGUF model, keyed by the file's path, size and mtime."""
    gguf = resolve_path(model_cfg.name_or_path) / str(model_cfg.gguf_file)
    if not gguf.is_file():
        raise TunelabError(
            f"model.gguf_file {model_cfg.gguf_file!r}: no such file in {gguf.parent}"
        )
    stat = gguf.stat()
    digest = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    root = resolve_path(model_cfg.cache_dir) if model_cfg.cache_dir else cache_root() / "models"
    return root / f"{gguf.stem}-{digest.hexdigest()[:12]}"


def ensure_gguf_cache(model_cfg: ModelConfig) -> Path:
    """Dequantise the GGUF file once (about 25 s for 135M) and cache model + tokenizer (fp32)."""
    target = gguf_cache_dir(model_cfg)
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    source = str(resolve_path(model_cfg.name_or_path))
    gguf = str(model_cfg.gguf_file)
    status(
        f"dequantising GGUF file {Path(source) / gguf} once into cache {target} "
        "(takes a while the first time; later runs load the cache)"
    )
    try:
        tok = AutoTokenizer.from_pretrained(source, gguf_file=gguf)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError) as exc:
        raise TunelabError(
            f"model.gguf_file {gguf!r}: cannot be read ({first_line(exc)})"
        ) from None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return target


def _load_error(name: str, source: str, exc: BaseException) -> TunelabError:
    if Path(source).is_dir():
        return TunelabError(f"model.name_or_path {name!r}: cannot be loaded ({first_line(exc)})")
    return TunelabError(
        f"model.name_or_path {name!r}: no such directory and not a reachable hub id "
        f"({first_line(exc)})"
    )
