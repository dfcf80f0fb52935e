"""The chunked causal-LM loss is on by default (``loss_chunk_size: 0`` or ``null`` turns it off)
and validation and perplexity compute the loss in chunks too."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from train_helpers import lm_config, write_text_data
from tunelab.errors import ConfigError
from tunelab.evaluate.perplexity import perplexity
from tunelab.evaluate.validation import validation_metrics
from tunelab.train.loss import causal_lm_loss
from tunelab.train.objective import loss_fn_for


def _batch(vocab: int) -> dict[str, torch.Tensor]:
    """Two rows of 30 tokens; the loss covers the last 10 positions of each (a response)."""
    ids = torch.randint(5, vocab, (2, 30), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :20] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _head_rows(model, loss_fn, batch) -> tuple[float, list[int]]:
    """The loss of ``loss_fn`` (after backward) and the rows the LM head computed, per call."""
    rows: list[int] = []
    head = model.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, _o: rows.append(args[0][..., 0].numel()))
    try:
        loss, _ = loss_fn(model, batch)
        loss.backward()
    finally:
        hook.remove()
    return loss.item(), rows


def _lora(model_dir) -> torch.nn.Module:
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    return get_peft_model(base, LoraConfig(r=4, target_modules="all-linear")).train()


def _config(model_dir, tmp_path, **train):
    data = write_text_data(tmp_path / "text.jsonl", n=8)
    return lm_config(model_dir, data, tmp_path / "run", train)


def test_default_config_uses_chunked_loss(tiny_llama_dir, tmp_path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path)
    assert cfg.train.loss_chunk_size == 1024
    model = _lora(tiny_llama_dir)
    batch = _batch(model.config.vocab_size)
    loss, rows = _head_rows(model, loss_fn_for(cfg.task, cfg.train.loss_chunk_size), batch)
    # the head ran on the 2 x 10 loss positions only (forward, then once more in backward),
    # never on the full [2, 30] logits
    assert rows == [20, 20]
    full, full_rows = _head_rows(model, causal_lm_loss, batch)
    assert full_rows == [60]
    assert loss == pytest.approx(full, abs=1e-5, rel=1e-6)


@pytest.mark.parametrize("off", [0, None])
def test_loss_chunk_size_zero_or_null_turns_it_off(off, tiny_llama_dir, tmp_path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path, loss_chunk_size=off)
    assert not cfg.train.loss_chunk_size
    model = _lora(tiny_llama_dir)
    _, rows = _head_rows(model, loss_fn_for(cfg.task, cfg.train.loss_chunk_size), _batch(99))
    assert rows == [60]


def test_small_chunks_bound_the_logits(tiny_llama_dir, tmp_path) -> None:
    cfg = _config(tiny_llama_dir, tmp_path, loss_chunk_size=8)
    model = _lora(tiny_llama_dir)
    _, rows = _head_rows(model, loss_fn_for(cfg.task, cfg.train.loss_chunk_size), _batch(99))
    assert sorted(rows) == [4, 4, 8, 8, 8, 8]  # forward, then recomputed in backward


def test_negative_loss_chunk_size_is_refused(tiny_llama_dir, tmp_path) -> None:
    with pytest.raises(ConfigError, match="loss_chunk_size"):
        _config(tiny_llama_dir, tmp_path, loss_chunk_size=-1)


def test_validation_and_perplexity_never_build_full_logits(tiny_llama_dir) -> None:
    model = _lora(tiny_llama_dir)
    batch = _batch(model.config.vocab_size)
    rows: list[int] = []
    head = model.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda _m, args, _o: rows.append(args[0][..., 0].numel()))
    try:
        metrics = validation_metrics(model, [batch], "causal_lm")
        ppl = perplexity(model.eval(), [batch])
    finally:
        hook.remove()
    assert rows == [20, 20]  # the 2 x 10 loss positions, once per evaluation
    with torch.no_grad():
        full, count = causal_lm_loss(model, batch)
    assert metrics["loss"] == pytest.approx(full.item() / count, abs=1e-5)
    assert ppl["loss"] == pytest.approx(metrics["loss"], abs=1e-6)
