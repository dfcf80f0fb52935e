"""Reference-free factual consistency of an output with its source text.

**Fact overlap** (always available). The checkable facts of an output are:

- numbers (``3``, ``2,500``, ``4.5``; thousands separators removed),
- capitalised words that do not start a sentence (named-entity-like: ``Paris``, ``IBM``),
- CJK character bigrams (Chinese has no capitals; bigrams approximate names and terms).

The score of one output is the share of its facts that also occur in the source (numbers
among the source's numbers, words as whole words, bigrams as substrings). Outputs with no
checkable fact get no score; the metric is the mean over the outputs that have one, reported
with how many that was. It catches invented numbers and names, not paraphrased falsehoods.

**NLI** (optional, ``eval.nli_model``): the mean probability that the source entails the
output, from a local sequence-classification NLI model whose ``id2label`` has an
"entailment" class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.errors import TunelabError
from tunelab.evaluate.language import CJK_RANGES

if TYPE_CHECKING:
    from tunelab.evaluate.registry import ScoringContext

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CAPITALISED = re.compile(r"(?<![\w])([A-Z][\w'-]*)")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n\s*)$")
_CJK_RUN = re.compile(f"[{CJK_RANGES}]+")


def _numbers(text: str) -> set[str]:
    return {m.replace(",", "") for m in _NUMBER.findall(text)}


def output_facts(text: str) -> tuple[set[str], set[str], set[str]]:
    """(numbers, capitalised non-sentence-initial words, CJK bigrams) of ``text``."""
    words = {
        m.group(1)
        for m in _CAPITALISED.finditer(text)
        if not _SENTENCE_START.search(text[: m.start()])
    }
    bigrams = {run[i : i + 2] for run in _CJK_RUN.findall(text) for i in range(len(run) - 1)}
    return _numbers(text), words, bigrams


def fact_overlap(output: str, source: str) -> float | None:
    """Share of the output's facts found in ``source``; None when it has none."""
    numbers, words, bigrams = output_facts(output)
    total = len(numbers) + len(words) + len(bigrams)
    if total == 0:
        return None
    source_words = set(re.findall(r"[\w'-]+", source))
    found = (
        len(numbers & _numbers(source))
        + len(words & source_words)
        + sum(b in source for b in bigrams)
    )
    return found / total


class ConsistencyAccumulator:
    """Running mean of :func:`fact_overlap` over the outputs that have checkable facts."""

    def __init__(self) -> None:
        self.total = 0.0
        self.scored = 0
        self.count = 0

    def update(self, outputs: Sequence[str], sources: Sequence[str]) -> list[float | None]:
        scores = [fact_overlap(o, s) for o, s in zip(outputs, sources, strict=True)]
        for score in scores:
            if score is not None:
                self.total += score
                self.scored += 1
        self.count += len(scores)
        return scores

    def compute(self) -> dict[str, float | int | None]:
        """consistency (mean over scored outputs, None if none) and consistency_scored."""
        mean = self.total / self.scored if self.scored else None
        return {"consistency": mean, "consistency_scored": self.scored}


class NliScorer:
    """Entailment probability of an output given its source, from a local NLI model."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not Path(path).is_dir():
            raise TunelabError(f"eval.nli_model {str(path)!r}: no such local model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        self.device = device
        labels = {int(i): str(n).lower() for i, n in self.model.config.id2label.items()}
        hits = [i for i, name in labels.items() if "entail" in name]
        if not hits:
            raise TunelabError(
                f"eval.nli_model {str(path)!r}: id2label {self.model.config.id2label} has no "
                "entailment class"
            )
        self.entail_index = hits[0]

    def score(self, outputs: Sequence[str], sources: Sequence[str]) -> list[float]:
        """P(entailment) for each (source premise, output hypothesis) pair."""
        import torch

        enc = self.tokenizer(
            list(sources), list(outputs), padding=True, truncation=True, return_tensors="pt"
        ).to(self.device)
        with torch.no_grad():
            probs = self.model(**enc).logits.float().softmax(-1)
        return probs[:, self.entail_index].tolist()


def source_text(example: dict[str, Any]) -> str:
    """What an output should be consistent with: the context, else the non-assistant turns."""
    if example.get("context"):
        return example["context"]
    messages = example.get("messages") or []
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=0)
    return "\n".join(m["content"] for m in messages[:last] if m["role"] != "assistant")


class ConsistencyScorer:
    """The registry's consistency scorer: fact overlap, and NLI when ``eval.nli_model`` is set."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.facts = ConsistencyAccumulator()
        path = ctx.cfg.eval.nli_model
        self.nli = NliScorer(path, ctx.device) if path else None
        self.nli_total = 0.0

    def update(
        self, outputs: Sequence[str], examples: Sequence[dict[str, Any]]
    ) -> list[dict[str, float | None]]:
        """Each output's ``consistency`` (and ``consistency_nli``) against its source."""
        sources = [source_text(ex) for ex in examples]
        rows: list[dict[str, float | None]] = [
            {"consistency": s} for s in self.facts.update(outputs, sources)
        ]
        if self.nli is not None:
            scores = self.nli.score(outputs, sources)
            self.nli_total += sum(scores)
            for row, score in zip(rows, scores, strict=True):
                row["consistency_nli"] = score
        return rows

    def compute(self) -> dict[str, float | int | None]:
        out = self.facts.compute()
        if self.nli is not None:
            out["consistency_nli"] = self.nli_total / max(self.facts.count, 1)
        return out
