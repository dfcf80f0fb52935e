"""Gradient accumulation: k micro-batches of size b give the gradient of one batch of k*b."""

from __future__ import annotations

import random

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from tunelab.config import TrainConfig
from tunelab.train.backends.single import SingleProcess
from tunelab.train.collate import PadCollator
from tunelab.train.loop import accumulate_gradients
from tunelab.train.objective import loss_fn_for


def lm_examples(n: int = 8, seed: int = 0) -> list[dict]:
    """Uneven lengths (3..30) and an uneven number of loss tokens (prompt masked)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(3, 30)
        ids = [rng.randrange(10, 300) for _ in range(length)]
        masked = rng.randint(0, length - 2)
        out.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * length,
                "labels": [-100] * masked + ids[masked:],
            }
        )
    return out


def grads_for(model, examples, micro_size, task, accelerator) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    collate = PadCollator(pad_token_id=3)
    micro = [collate(examples[i : i + micro_size]) for i in range(0, len(examples), micro_size)]
    backend = SingleProcess(accelerator, TrainConfig())
    accumulate_gradients(backend, model, micro, loss_fn_for(task), task)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < tol, worst


@pytest.fixture(scope="module")
def accelerator():
    return Accelerator(cpu=True)


def test_causal_lm_accumulation_matches_one_big_batch(tiny_llama_dir, accelerator):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager")
    examples = lm_examples()
    full = grads_for(model, examples, 8, "causal_lm", accelerator)
    assert_same(full, grads_for(model, examples, 2, "causal_lm", accelerator))
    assert_same(full, grads_for(model, examples, 1, "causal_lm", accelerator))
    # the naive mean of per-micro-batch means differs: the test can tell
    model.zero_grad(set_to_none=True)
    collate = PadCollator(pad_token_id=3)
    for i in range(0, 8, 2):
        batch = collate(examples[i : i + 2])
        loss, count = loss_fn_for("causal_lm")(model, batch)
        (loss / count / 4).backward()
    naive = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert max((naive[k] - full[k]).abs().max().item() for k in full) > 1e-4


def test_classification_accumulation_matches_one_big_batch(tiny_bert_dir, accelerator):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir)
    model.eval()  # no dropout: compare gradients exactly
    examples = [
        {"input_ids": ex["input_ids"], "attention_mask": ex["attention_mask"], "labels": i % 3}
        for i, ex in enumerate(lm_examples(6, seed=1))
    ]
    full = grads_for(model, examples, 6, "classification", accelerator)
    assert_same(full, grads_for(model, examples, 4, "classification", accelerator))  # 4 + 2
    assert_same(full, grads_for(model, examples, 1, "classification", accelerator))
