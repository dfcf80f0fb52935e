"""A client's local training: tunelab's own loop pieces (``train_step``, ``advance``, the
method, optimizer, schedule, precision and backend) run for one round's steps.

Clients are stateless between rounds: round ``r`` starts from the global tensors, a fresh
optimizer, the LR of global local step ``(r-1) * steps`` of one schedule over all rounds,
the data position of that step and a seed of (seed, client, round). So a resumed run
repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch
from rich.console import Console
from torch import nn

from tunelab.config import RunConfig
from tunelab.train.loop import Loop, LoopState, advance, train_step
from tunelab.train.objective import Batch, LossFn, loss_items
from tunelab.train.schedule import build_scheduler, reschedule


@dataclass
class LocalTrainer:
    """One client's model, data and loop (built once per process and client)."""

    cfg: RunConfig
    loop: Loop
    examples: int
    fingerprint: str
    label_names: list[str] | None

    @property
    def steps_per_round(self) -> int:
        fed = self.cfg.federated
        if fed.local_steps is not None:
            return fed.local_steps
        per_epoch = math.ceil(
            self.loop.data.batches_per_epoch / self.cfg.train.gradient_accumulation_steps
        )
        return fed.local_epochs * per_epoch


def build_trainer(cfg: RunConfig, dataset: Any, label_names: list[str] | None) -> LocalTrainer:
    """The loop of tunelab training around ``dataset`` (this client's tokenised rows)."""
    from accelerate.utils import set_seed

    from tunelab.federated.transport import fingerprint
    from tunelab.models import load_tokenizer
    from tunelab.train.run import build_loop, build_model, make_backend

    console = Console(quiet=True)
    backend = make_backend(cfg, console)
    set_seed(cfg.train.seed)  # new heads start as the server's (their frozen copies count)
    model = build_model(cfg, label_names)
    base_print = fingerprint(model)
    pad = load_tokenizer(cfg.model).pad_token_id
    loop = build_loop(cfg, backend, model, pad, {"train": dataset}, console)
    trainer = LocalTrainer(cfg, loop, len(dataset), base_print, label_names)
    loop.total_steps = cfg.federated.rounds * trainer.steps_per_round
    loop.scheduler = build_scheduler(loop.optimizer, cfg.train, loop.total_steps)
    return trainer


def proximal_loss(loss_fn: LossFn, model: nn.Module, mu: float, task: str) -> LossFn:
    """FedProx: ``loss_fn`` plus (mu/2)*||w - w_global||^2 per loss item of the batch (the
    loop divides the step's summed loss by its items, so the step adds the term once)."""
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def with_term(module: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        loss, items = loss_fn(module, batch)
        term = sum(
            ((p - anchor[n]) ** 2).sum() for n, p in module.named_parameters() if n in anchor
        )
        return loss + 0.5 * mu * term * loss_items(batch, task), items

    return with_term


def train_round(trainer: LocalTrainer, server_round: int, seed: int) -> dict[str, float]:
    """Train the loaded global tensors for one round; return the round's client metrics."""
    from accelerate.utils import set_seed

    loop, cfg = trainer.loop, trainer.cfg
    steps = trainer.steps_per_round
    start = (server_round - 1) * steps
    set_seed(seed)
    optimizer = getattr(loop.optimizer, "optimizer", loop.optimizer)
    optimizer.state.clear()  # a fresh local optimizer each round
    loop.scheduler.last_epoch = start
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # step() before optimizer.step()
        reschedule(loop.scheduler)
    base_loss = loop.loss_fn
    mu = cfg.federated.strategy.mu if cfg.federated.strategy.name == "fedprox" else None
    if mu:
        loop.loss_fn = proximal_loss(base_loss, loop.backend.unwrap(loop.model), mu, loop.task)
    per_epoch = loop.data.batches_per_epoch
    first = start * cfg.train.gradient_accumulation_steps
    state = LoopState(step=start, epoch=first // per_epoch, batch_in_epoch=first % per_epoch)
    batches = loop.data.batches(state.epoch, state.batch_in_epoch)
    losses, items = [], 0
    loop.model.train()
    try:
        for _ in range(steps):
            micro = list(islice(batches, cfg.train.gradient_accumulation_steps))
            result = train_step(loop, micro)
            advance(state, result, len(micro), per_epoch)
            if state.batch_in_epoch == 0:
                batches = loop.data.batches(state.epoch, 0)
            losses.append(result.loss)
            items += result.loss_items
    finally:
        loop.loss_fn = base_loss
    finite = [x for x in losses if math.isfinite(x)]
    return {
        "train_loss": sum(finite) / max(len(finite), 1),
        "last_loss": losses[-1],
        "steps": steps,
        "loss_items": items,
    }
