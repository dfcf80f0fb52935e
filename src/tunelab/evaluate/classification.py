"""Classification metrics accumulated batch by batch.

The accumulator keeps one predicted class, one label and one probability row per example
(``n x num_labels`` floats, needed for ROC-AUC) and never the batches' logits tensors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.table import Table

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext


class ClassificationAccumulator:
    """``update(logits_or_probs, labels)`` per batch, then ``compute()``.

    Rows that are already probability distributions (non-negative, summing to 1) are used as
    they are; anything else is treated as logits and soft-maxed.
    """

    def __init__(self, num_labels: int, label_names: list[str] | None = None) -> None:
        self.num_labels = num_labels
        self.label_names = label_names or [str(i) for i in range(num_labels)]
        self._probs: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def update(self, logits_or_probs: torch.Tensor | np.ndarray, labels: Any) -> np.ndarray:
        """Add a batch; returns its ``[batch, num_labels]`` probabilities (float32)."""
        probs = probabilities(logits_or_probs)
        if probs.shape[-1] != self.num_labels:
            raise ValueError(f"expected {self.num_labels} scores per row, got {probs.shape[-1]}")
        self._probs.append(probs)
        self._labels.append(np.asarray(torch.as_tensor(labels).cpu(), dtype=np.int64).reshape(-1))
        return probs

    @property
    def count(self) -> int:
        return sum(len(y) for y in self._labels)

    def compute(self) -> dict[str, Any]:
        """accuracy, f1_macro, f1_micro, auc (None when undefined), confusion_matrix, per_class.

        ``f1_macro`` averages the F1 of the labels present in the evaluated rows (listed in
        ``f1_macro_labels``): a label without rows has no defined recall, so it is left out
        rather than counted as 0. ``per_class`` gives precision, recall, F1 and support of
        every label, absent ones included (support 0).
        """
        from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

        probs = np.concatenate(self._probs) if self._probs else np.zeros((0, self.num_labels))
        y = np.concatenate(self._labels) if self._labels else np.zeros(0, dtype=np.int64)
        if len(y) == 0:
            raise ValueError("no examples were accumulated")
        pred = probs.argmax(-1)
        labels = list(range(self.num_labels))
        present = sorted(int(c) for c in np.unique(y))
        auc, skipped = roc_auc(y, probs)
        return {
            "accuracy": float(accuracy_score(y, pred)),
            "f1_macro": float(f1_score(y, pred, labels=present, average="macro", zero_division=0)),
            "f1_macro_labels": [self.label_names[c] for c in present],
            "f1_micro": float(f1_score(y, pred, labels=labels, average="micro", zero_division=0)),
            "auc": auc,
            "auc_classes_skipped": [self.label_names[c] for c in skipped],
            "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
            "labels": self.label_names,
            "per_class": per_class(y, pred, self.label_names),
        }


class ClassificationScorer(ClassificationAccumulator):
    """The registry's scorer of accuracy, f1, auc and confusion_matrix (one for all four)."""

    def __init__(self, ctx: ScoringContext) -> None:
        names = ctx.label_names or []
        super().__init__(len(names), names)


def probabilities(logits_or_probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """``[batch, num_labels]`` float32 probabilities: rows that already are distributions
    (non-negative, summing to 1) as they are, anything else soft-maxed."""
    scores = torch.as_tensor(logits_or_probs).detach().float().cpu()
    if not _is_distribution(scores):
        scores = scores.softmax(-1)
    return scores.numpy().astype(np.float32)


def per_class(y: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, dict[str, Any]]:
    """Precision, recall, F1 and support (true rows) of every label, by label name."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=list(range(len(names))), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def class_tables(metrics: dict[str, Any]) -> list[Table]:
    """The confusion matrix and the per-class table of a results record's metrics, if any."""
    tables = []
    matrix, names = metrics.get("confusion_matrix"), metrics.get("labels")
    if matrix:
        cm = Table(title="confusion matrix (rows: true, columns: predicted)")
        cm.add_column("")
        for name in names:
            cm.add_column(name, justify="right")
        for name, row in zip(names, matrix, strict=True):
            cm.add_row(name, *map(str, row))
        tables.append(cm)
    if metrics.get("per_class"):
        table = Table(title="per class")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for name, row in metrics["per_class"].items():
            scores = [f"{row[k]:.4f}" for k in ("precision", "recall", "f1")]
            table.add_row(name, *scores, str(row["support"]))
        tables.append(table)
    return tables


def roc_auc(y: np.ndarray, probs: np.ndarray) -> tuple[float | None, list[int]]:
    """Binary ROC-AUC, or one-vs-rest macro ROC-AUC over the classes it is defined for.

    A class without both positive and negative examples in ``y`` has no ROC curve; it is
    left out of the macro average and returned in the second element. None when no class
    qualifies (e.g. every label is the same).
    """
    from sklearn.metrics import roc_auc_score

    num_labels = probs.shape[1]
    if num_labels == 2:
        if len(np.unique(y)) < 2:
            return None, [0, 1]
        return float(roc_auc_score(y, probs[:, 1])), []
    scores, skipped = [], []
    for c in range(num_labels):
        positive = y == c
        if positive.all() or not positive.any():
            skipped.append(c)
            continue
        scores.append(roc_auc_score(positive, probs[:, c]))
    return (float(np.mean(scores)) if scores else None), skipped


def _is_distribution(scores: torch.Tensor) -> bool:
    if scores.numel() == 0 or (scores < 0).any() or (scores > 1).any():
        return False
    return bool(torch.allclose(scores.sum(-1), torch.ones(scores.shape[0]), atol=1e-4))
