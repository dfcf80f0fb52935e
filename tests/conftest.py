"""Shared fixtures: a tokenizer trained in-session and tiny random-init models, all offline
(built by ``tunelab.testing``, which the benchmarks share)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunelab.testing import Kind, build_tokenizer, save_tiny_model

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TUNELAB_CACHE", str(Path(__file__).parent / ".cache-tests"))


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer with a ChatML chat template."""
    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def plain_tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer without a chat template."""
    path = tmp_path_factory.mktemp("tokenizer_plain")
    build_tokenizer(path, chat_template=None)
    return path


def _save_tiny(kind: Kind, path: Path, tokenizer_path: Path) -> Path:
    from transformers import AutoTokenizer

    return save_tiny_model(kind, path, AutoTokenizer.from_pretrained(tokenizer_path))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return _save_tiny("llama", tmp_path_factory.mktemp("tiny_llama"), tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return _save_tiny("qwen2", tmp_path_factory.mktemp("tiny_qwen2"), tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return _save_tiny("gpt2", tmp_path_factory.mktemp("tiny_gpt2"), tokenizer_dir)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tokenizer_dir) -> Path:
    return _save_tiny("bert", tmp_path_factory.mktemp("tiny_bert"), tokenizer_dir)


@pytest.fixture(scope="session")
def smollm2_cache_dir(tmp_path_factory) -> Path:
    """One GGUF dequantisation cache for the whole session (SmolLM2 takes ~25 s to convert)."""
    return tmp_path_factory.mktemp("smollm2_cache")
