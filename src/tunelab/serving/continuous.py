"""Continuous batching: rows join and leave one running batch between decoding steps.

A :class:`Running` batch holds the open rows (:class:`~tunelab.serving.jobs.Choice`) of one
model and one KV cache for all of them, left-padded to a common width. :meth:`Running.admit`
prefills new rows together (their own cache, their first token), then pads both caches to
the wider one and stacks them, so new requests join a batch that is already decoding;
:meth:`Running.step` decodes one token for every row, and rows that finish (stop token, stop
string, ``max_tokens``, a cancelled request) leave at once, with the padding columns no row
needs any more. Each row keeps its own positions, sampling rule and, on a PEFT model, its
LoRA adapter (PEFT's mixed-adapter batches, ``adapter_names``), so a row decodes as it
would alone.

Only models whose cache is Transformers' plain :class:`DynamicCache` (every layer a full
``DynamicLayer``) decode here; :func:`supports` says which. Others (sliding-window caches,
prompt and prefix tuning, DoRA) keep the per-batch path of :mod:`tunelab.serving.engine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.decoding import sample

if TYPE_CHECKING:
    from tunelab.serving.jobs import Choice

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed batch


def supports(model: nn.Module) -> bool:
    """Whether ``model``'s KV cache is a plain ``DynamicCache`` (the layout this batch edits)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    cache = DynamicCache(config=config)
    return all(type(layer) is DynamicLayer for layer in cache.layers)


class Running:
    """The rows now decoding on one model, with their shared KV cache."""

    def __init__(self, model: nn.Module, pad_id: int, peft: bool) -> None:
        self.model, self.pad_id, self.peft = model, pad_id, peft
        self.device = next(model.parameters()).device
        self.rows: list[Choice] = []
        self.tokens: list[list[int]] = []  # each row's new tokens so far
        self.generators: list[torch.Generator | None] = []
        self.cache: Any = None
        self.mask = torch.zeros((0, 0), dtype=torch.long, device=self.device)
        self.positions = torch.zeros(0, dtype=torch.long, device=self.device)  # next position

    def __len__(self) -> int:
        return len(self.rows)

    def admit(self, choices: list[Choice]) -> None:
        """Prefill ``choices`` together, pick their first tokens, and join them to the batch."""
        from transformers.cache_utils import DynamicCache

        width = max(len(c.prompt) for c in choices)
        ids = torch.full((len(choices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, choice in enumerate(choices):
            ids[row, width - len(choice.prompt) :] = torch.tensor(choice.prompt)
            mask[row, width - len(choice.prompt) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(ids, mask, positions, cache, choices)
        gens = [_generator(c) for c in choices]
        picks = [sample(c.sampling, logits[r], gens[r]) for r, c in enumerate(choices)]
        self._join(cache, mask, positions[:, -1] + 1, choices, gens)
        self._advance(len(self.rows) - len(choices), picks)

    def step(self) -> None:
        """Decode one token for every row; finished rows leave."""
        last = torch.tensor([[t[-1]] for t in self.tokens], dtype=torch.long, device=self.device)
        self.mask = torch.cat([self.mask, torch.ones_like(last)], dim=1)
        logits = self._forward(last, self.mask, self.positions[:, None], self.cache, self.rows)
        self.positions = self.positions + 1
        picks = [sample(c.sampling, logits[r], self.generators[r]) for r, c in enumerate(self.rows)]
        self._advance(0, picks)

    def fail(self) -> list[Choice]:
        """Drop every row (after a failed step); returns them."""
        rows = self.rows
        self._keep([])
        return rows

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, rows: list
    ) -> torch.Tensor:
        """The last logits of each row (each row through its own adapter on a PEFT model)."""
        extra: dict[str, Any] = {}
        if self.peft:
            extra["adapter_names"] = [c.job.slot.adapter or BASE for c in rows]
        with torch.no_grad():
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
                **extra,
            )
        return out.logits[:, -1]

    def _join(
        self,
        cache: Any,
        mask: torch.Tensor,
        positions: torch.Tensor,
        choices: list[Choice],
        gens: list[torch.Generator | None],
    ) -> None:
        """Stack the new rows' cache under the running one, both left-padded to one width."""
        if self.cache is None or not self.rows:
            self.cache, self.mask, self.positions = cache, mask, positions
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            for old, new in zip(self.cache.layers, cache.layers, strict=True):
                old.keys = torch.cat([_pad(old.keys, width, 2), _pad(new.keys, width, 2)])
                old.values = torch.cat([_pad(old.values, width, 2), _pad(new.values, width, 2)])
            self.mask = torch.cat([_pad(self.mask, width, 1), _pad(mask, width, 1)])
            self.positions = torch.cat([self.positions, positions])
        self.rows += choices
        self.tokens += [[] for _ in choices]
        self.generators += gens

    def _advance(self, first: int, picks: list[int]) -> None:
        """Append each row's pick (rows from ``first`` on); keep the rows still open."""
        keep = list(range(first))
        for offset, pick in enumerate(picks):
            row = first + offset
            self.tokens[row].append(pick)
            if not self.rows[row].watch(self.tokens[row]):
                keep.append(row)
        if len(keep) < len(self.rows):
            self._keep(keep)

    def _keep(self, keep: list[int]) -> None:
        """Keep only the rows ``keep``; cut the padding columns none of them needs."""
        self.rows = [self.rows[i] for i in keep]
        self.tokens = [self.tokens[i] for i in keep]
        self.generators = [self.generators[i] for i in keep]
        if not keep:
            self.cache = None
            self.mask = self.mask[:0, :0]
            self.positions = self.positions[:0]
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self.mask = self.mask.index_select(0, index)
        used = self.mask.any(0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = self.mask[:, start:]
        self.positions = self.positions.index_select(0, index)
        for layer in self.cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]


def _pad(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``tensor`` left-padded with zeros to ``width`` along ``dim`` (the sequence axis)."""
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    spec = [0, 0] * (tensor.dim() - 1 - dim) + [missing, 0]
    return F.pad(tensor, spec)


def _generator(choice: Choice) -> torch.Generator | None:
    seed = choice.sampling.seed
    return None if seed is None else torch.Generator().manual_seed(seed)
