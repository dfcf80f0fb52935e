"""Packing: best-fit-decreasing bins, and packed == unpacked loss, gradients and isolation."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunelab.train.loss import causal_lm_loss
from tunelab.train.packing import (
    PackedCollator,
    best_fit_decreasing,
    block_causal_mask,
    pack_examples,
    packing_efficiency,
    rows_efficiency,
)


def test_best_fit_decreasing_fills_bins_tightly() -> None:
    lengths = [5, 4, 3, 3, 2, 2, 1]  # 20 tokens: BFD packs them into 3 bins of 8
    bins = best_fit_decreasing(lengths, 8)
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[i] for i in b) <= 8 for b in bins)
    assert bins == [[0, 2], [1, 3, 6], [4, 5]]  # the 1 goes to the tightest fit
    assert packing_efficiency(lengths, bins, 8) == pytest.approx(20 / 24)


def test_best_fit_decreasing_on_skewed_lengths_is_near_optimal() -> None:
    rng = random.Random(0)
    lengths = [
        rng.randint(8, 40) if rng.random() < 0.7 else rng.randint(40, 500) for _ in range(400)
    ]
    bins = best_fit_decreasing(lengths, 512)
    over_half = sum(n > 256 for n in lengths)  # no two of these share a bin
    lower_bound = max(-(-sum(lengths) // 512), over_half)
    assert (lower_bound, len(bins)) == (70, 71)  # within one bin of optimal
    assert packing_efficiency(lengths, bins, 512) > 0.98


def test_rejects_examples_longer_than_a_row() -> None:
    with pytest.raises(ValueError, match=r"1\.\.8"):
        best_fit_decreasing([3, 9], 8)


def test_pack_examples_masks_first_label_of_each_example() -> None:
    rows = pack_examples([[1, 2, 3], [4, 5], [6]], [[-100, 2, 3], [4, 5], [6]], 6)
    assert [r["seq_lens"] for r in rows] == [[3, 2, 1]]
    assert rows[0]["input_ids"] == [1, 2, 3, 4, 5, 6]
    assert rows[0]["labels"] == [-100, 2, 3, -100, 5, -100]
    assert rows_efficiency(rows, 6) == 1.0


def test_block_causal_mask_bool_and_float() -> None:
    mask = block_causal_mask([[2, 1]], 4, "bool")
    expected = torch.tensor(
        [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.bool
    )
    assert mask.shape == (1, 1, 4, 4)
    assert torch.equal(mask[0, 0], expected)
    additive = block_causal_mask([[2, 1]], 4, "float")
    assert torch.equal(additive[0, 0] == 0, expected)
    assert additive.min().item() == torch.finfo(torch.float32).min


def _examples(vocab: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    ids, labels = [], []
    for n in (7, 19, 4, 12, 25, 9):
        seq = [rng.randrange(5, vocab) for _ in range(n)]
        prompt = rng.randint(1, n - 1)
        ids.append(seq)
        labels.append([-100] * prompt + seq[prompt:])
    return ids, labels


def _load(path, attn: str) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn)
    return model.float().train()


def _loss_and_grads(model, batches) -> tuple[float, int, dict[str, torch.Tensor]]:
    model.zero_grad()
    total, count = 0.0, 0
    for batch in batches:
        loss, n = causal_lm_loss(model, batch)
        loss.backward()
        total += loss.item()
        count += n
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return total, count, grads


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_loss_and_grads_equal_unpacked(arch, attn, tiny_llama_dir, tiny_qwen2_dir) -> None:
    model = _load(tiny_llama_dir if arch == "llama" else tiny_qwen2_dir, attn)
    ids, labels = _examples(model.config.vocab_size)
    unpacked = [
        {"input_ids": torch.tensor([i]), "labels": torch.tensor([lab])}
        for i, lab in zip(ids, labels, strict=True)
    ]
    rows = pack_examples(ids, labels, 32)
    assert len(rows) < len(ids)
    collate = PackedCollator(model.config._attn_implementation, pad_token_id=0)
    packed = [collate(rows[:2]), collate(rows[2:])]
    assert packed[0]["attention_mask"].dtype == (torch.bool if attn == "sdpa" else torch.float32)

    ref_loss, ref_count, ref_grads = _loss_and_grads(model, unpacked)
    loss, count, grads = _loss_and_grads(model, packed)
    assert count == ref_count == sum(sum(x != -100 for x in lab[1:]) for lab in labels)
    assert loss == pytest.approx(ref_loss, abs=1e-4)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        assert torch.allclose(grad, ref_grads[name], atol=1e-4, rtol=0), name


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_token_attends_across_examples(attn, tiny_llama_dir) -> None:
    model = _load(tiny_llama_dir, attn).eval()
    a, b = list(range(10, 30)), list(range(40, 52))
    collate = PackedCollator(attn, pad_token_id=0)

    def logits_of_b(first: list[int]) -> torch.Tensor:
        rows = pack_examples([first, b], [first, b], 40)
        assert [x["seq_lens"] for x in rows] == [[len(first), len(b)]]  # longest first
        start = len(first)
        batch = collate(rows)
        with torch.no_grad():
            out = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return out[0, start : start + len(b)]

    perturbed = [t + 7 for t in a]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b])).logits[0]
    base = logits_of_b(a)
    assert torch.allclose(base, logits_of_b(perturbed), atol=1e-5)
    assert torch.allclose(base, alone, atol=1e-5)
