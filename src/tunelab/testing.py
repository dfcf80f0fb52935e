"""Tiny tokenizers and random-init models for tests and benchmarks, built offline.

One place for what ``tests/conftest.py``'s fixtures and ``benchmarks/`` build: a byte-level
BPE tokenizer trained on the spot (ChatML chat template) and tiny Llama, Qwen2, GPT-2 and BERT
models of a given shape. torch, tokenizers and transformers load inside the functions.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

Kind = Literal["llama", "qwen2", "gpt2", "bert"]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

WORDS = (
    "the a model data train test sport business politics tech film music news game team "
    "market price vote election phone chip goal match win lose bank stock law court actor "
    "award album song player coach share profit party minister software internet network "
    "hello how are you fine thanks what is your name good morning night weather today 1 2 3"
).split()

_DECODER = {  # the same tiny shape for Llama and Qwen2
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
SHAPES: dict[str, dict[str, Any]] = {
    "llama": _DECODER,
    "qwen2": _DECODER,
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256},
    "bert": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 256,
        "num_labels": 3,
    },
}


def corpus_lines(n: int = 3000, seed: int = 0) -> list[str]:
    """``n`` random lines of 3-20 words from ``WORDS``."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 20))) for _ in range(n)]


def build_tokenizer(
    path: Path,
    texts: Iterable[str] | None = None,
    vocab_size: int = 400,
    chat_template: str | None = CHATML_TEMPLATE,
) -> PreTrainedTokenizerBase:
    """Train a byte-level BPE tokenizer on ``texts`` (default: ``corpus_lines()``), save it at
    ``path`` as a Transformers tokenizer and return it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines() if texts is None else texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat_template:
        fast.chat_template = chat_template
    fast.save_pretrained(path)
    return fast


def tiny_config(kind: Kind, vocab_size: int, **overrides: Any) -> PretrainedConfig:
    """The config of a tiny ``kind`` model: ``SHAPES[kind]`` with ``overrides`` on top."""
    from transformers import BertConfig, GPT2Config, LlamaConfig, Qwen2Config

    classes = {"llama": LlamaConfig, "qwen2": Qwen2Config, "gpt2": GPT2Config, "bert": BertConfig}
    return classes[kind](vocab_size=vocab_size, **{**SHAPES[kind], **overrides})


def tiny_model(kind: Kind, vocab_size: int, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A random-init tiny model (causal LM; BERT with a classification head), seeded."""
    import torch
    from transformers import (
        BertForSequenceClassification,
        GPT2LMHeadModel,
        LlamaForCausalLM,
        Qwen2ForCausalLM,
    )

    classes = {
        "llama": LlamaForCausalLM,
        "qwen2": Qwen2ForCausalLM,
        "gpt2": GPT2LMHeadModel,
        "bert": BertForSequenceClassification,
    }
    torch.manual_seed(seed)
    return classes[kind](tiny_config(kind, vocab_size, **overrides))


def save_tiny_model(
    kind: Kind, path: Path, tokenizer: PreTrainedTokenizerBase, seed: int = 0, **overrides: Any
) -> Path:
    """Save a tiny ``kind`` model sized to ``tokenizer`` (its special ids) and the tokenizer."""
    ids = {"pad_token_id": tokenizer.pad_token_id}
    if kind != "bert":
        ids |= {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    model = tiny_model(kind, len(tokenizer), seed, **{**ids, **overrides})
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


WHISPER_SPECIAL = (
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|transcribe|>",
    "<|translate|>",
    "<|notimestamps|>",
)


def save_tiny_whisper(
    path: Path, texts: Iterable[str] | None = None, seed: int = 0, chunk_seconds: int = 2
) -> Path:
    """A random-init tiny English-only Whisper (WhisperForConditionalGeneration) with a BPE
    WhisperTokenizer trained on ``texts`` and a 16-mel feature extractor whose window is
    ``chunk_seconds`` (Whisper's is 30 s), saved at ``path`` with its processor."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=[WHISPER_SPECIAL[0]],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus_lines() if texts is None else texts, trainer=trainer)
    end = WHISPER_SPECIAL[0]
    tokenizer = WhisperTokenizerFast(
        tokenizer_object=tok,
        unk_token=end,
        bos_token=end,
        eos_token=end,
        pad_token=end,
        additional_special_tokens=list(WHISPER_SPECIAL[1:]),
    )
    extractor = WhisperFeatureExtractor(feature_size=16, chunk_length=chunk_seconds)
    end_id = tokenizer.eos_token_id
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_ffn_dim=64, num_mel_bins=16, max_source_positions=extractor.nb_max_frames // 2,
        max_target_positions=64, bos_token_id=end_id, eos_token_id=end_id,
        pad_token_id=tokenizer.convert_tokens_to_ids(WHISPER_SPECIAL[4]),  # EOS: not a zero row
        decoder_start_token_id=tokenizer.convert_tokens_to_ids(WHISPER_SPECIAL[1]),
        suppress_tokens=None, begin_suppress_tokens=None, init_std=0.2,
    )  # fmt: skip
    torch.manual_seed(seed)
    WhisperForConditionalGeneration(config).save_pretrained(path)
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path
