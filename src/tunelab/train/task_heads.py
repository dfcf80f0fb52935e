"""One shared encoder with one classification head per task.

The model is the first task's sequence-classification model; each of its head modules (the
children outside the base model, e.g. ``classifier``; DeBERTa also has a fresh ``pooler``)
becomes a :class:`TaskHeads`, one copy per task built for that task's labels. The head that
runs is the active task's (:func:`active_task`), set by the loss and the validator, so every
method (full, freeze, LoRA with PEFT's saved head modules...) trains it unchanged.
:func:`task_view` shows the model as a plain one-task classifier, which is what each task's
artifact saves.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from torch import nn

from tunelab.errors import TunelabError

_ACTIVE: ContextVar[str | None] = ContextVar("tunelab_active_task", default=None)


class TaskHeads(nn.Module):
    """One head module per task; ``forward`` runs the active task's."""

    def __init__(self, heads: dict[str, nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(heads)

    def forward(self, *args, **kwargs):
        name = _ACTIVE.get()
        if name is None or name not in self.heads:
            raise TunelabError(f"no active task among {sorted(self.heads)} (use active_task)")
        return self.heads[name](*args, **kwargs)


@contextmanager
def active_task(name: str) -> Iterator[None]:
    """Run the heads of task ``name`` inside the block."""
    token = _ACTIVE.set(name)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def head_children(model: nn.Module) -> list[str]:
    """Names of ``model``'s children that hold parameters outside the base model."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, child in model.named_children()
        if name != prefix and any(True for _ in child.parameters())
    ]


def build_multihead(models: dict[str, nn.Module]) -> nn.Module:
    """The first model of ``models`` (task -> classifier) with every task's heads in it."""
    first = next(iter(models.values()))
    for name in head_children(first):
        heads = {task: getattr(model, name) for task, model in models.items()}
        setattr(first, name, TaskHeads(heads))
    return first


@contextmanager
def task_view(model: nn.Module, task: str, label_names: list[str]) -> Iterator[nn.Module]:
    """``model`` with every :class:`TaskHeads` replaced by task ``task``'s head and the config's
    labels set to ``label_names``; restored after the block."""
    swapped: list[tuple[nn.Module, str, TaskHeads]] = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TaskHeads):
                swapped.append((parent, name, child))
                setattr(parent, name, child.heads[task])
    config = getattr(model, "config", None)
    saved = (config.num_labels, config.id2label, config.label2id) if config else None
    if config is not None:
        config.num_labels = len(label_names)
        config.id2label = dict(enumerate(label_names))
        config.label2id = {label: i for i, label in enumerate(label_names)}
    try:
        yield model
    finally:
        for parent, name, heads in swapped:
            setattr(parent, name, heads)
        if config is not None and saved is not None:
            config.num_labels, config.id2label, config.label2id = saved
