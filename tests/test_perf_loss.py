"""Chunked causal-LM loss equals the full-logits loss, on plain and PEFT-wrapped models."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, PromptTuningConfig, get_peft_model
from transformers import AutoModelForCausalLM

from tunelab.train.loss import (
    causal_lm_loss,
    chunked_causal_lm_loss,
    lm_loss,
    supports_chunked_loss,
)
from tunelab.train.packing import PackedCollator, pack_examples


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (3, 21), generator=gen)
    labels = ids.clone()
    labels[0, :6] = -100
    labels[1, 15:] = -100  # right padding
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _run(fn, model, batch) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss, count = fn(model, batch)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.item(), count, grads


def _assert_same(model, batch, chunk_size: int) -> None:
    ref_loss, ref_count, ref_grads = _run(causal_lm_loss, model, batch)
    loss, count, grads = _run(lambda m, b: chunked_causal_lm_loss(m, b, chunk_size), model, batch)
    assert count == ref_count == int((batch["labels"][:, 1:] != -100).sum())
    assert loss == pytest.approx(ref_loss, abs=1e-5, rel=1e-6)
    assert grads.keys() == ref_grads.keys() and grads
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-5, rtol=1e-5), name


@pytest.mark.parametrize("chunk_size", [4, 7, 1000])
def test_chunked_loss_equals_full_loss(chunk_size, tiny_llama_dir) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).train()
    assert supports_chunked_loss(model)
    _assert_same(model, _batch(model.config.vocab_size), chunk_size)


def test_chunked_loss_on_gpt2(tiny_gpt2_dir) -> None:
    no_dropout = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir, **no_dropout).train()
    assert supports_chunked_loss(model)
    _assert_same(model, _batch(model.config.vocab_size), 5)


def test_chunked_loss_equals_full_loss_under_lora(tiny_llama_dir) -> None:
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    config = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(base, config).train()
    assert supports_chunked_loss(model)
    _, _, ref_grads = _run(causal_lm_loss, model, _batch(base.config.vocab_size))
    assert all("lora_" in name for name in ref_grads)
    assert all(g.abs().sum() > 0 for g in ref_grads.values())
    _assert_same(model, _batch(base.config.vocab_size), 6)


def test_chunked_loss_on_packed_batch(tiny_qwen2_dir) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir).train()
    ids = [list(range(10, 10 + n)) for n in (9, 14, 5, 20)]
    labels = [[-100] * 3 + x[3:] for x in ids]
    collate = PackedCollator(model.config._attn_implementation, model.config.pad_token_id)
    _assert_same(model, collate(pack_examples(ids, labels, 24)), 8)


def test_prompt_tuning_falls_back_to_standard_loss(tiny_llama_dir) -> None:
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert not supports_chunked_loss(model)
    batch = _batch(base.config.vocab_size)
    loss, count = lm_loss(model, batch, chunk_size=8)
    ref, ref_count = causal_lm_loss(model, batch)
    assert count == ref_count
    assert loss.item() == pytest.approx(ref.item(), abs=1e-6)
    loss.backward()
    assert model.prompt_encoder.default.embedding.weight.grad.abs().sum() > 0


def test_no_loss_tokens_gives_zero_with_a_graph(tiny_llama_dir) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    batch = _batch(model.config.vocab_size)
    batch["labels"] = torch.full_like(batch["labels"], -100)
    loss, count = chunked_causal_lm_loss(model, batch, 4)
    assert (loss.item(), count) == (0.0, 0)
    loss.backward()
