"""The metric registry: every ``eval.metrics`` name is declared here once.

A :class:`Metric` says which data formats it fits, whether it is a default there, the keys it
writes to ``eval_results.json``, whether higher is better (early stopping infers its mode from
it), the evaluation stage that feeds it and how to build its scorer. Declarations import
nothing heavy (a scorer's module is imported when an evaluation builds it), so the config
check and ``tunelab validate`` read the names without torch.

Stages and what a scorer's ``update`` gets (``compute()`` returns the results at the end):

- ``classify``: ``update(probabilities, labels)`` per batch of a classifier's forward pass;
- ``teacher_forced``: ``update(batch)``, the collated tensors (with ``labels``) on the device;
- ``generate``: ``update(outputs, examples)`` per batch of generated texts and their canonical
  examples; returns one dict of scores per example (for ``predictions.jsonl``) or None;
- ``run``: no updates; ``compute()`` reads the context (latency, model, directories).

Metrics whose ``scorer`` is the same factory share one scorer (e.g. accuracy, f1, auc and the
confusion matrix come from one accumulator). Adding a metric: a module with its scorer and one
``register(Metric(...))`` line below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic_core import PydanticCustomError, core_schema

from tunelab.modalities.registry import metrics_format

if TYPE_CHECKING:
    from tunelab.config import RunConfig

Stage = Literal["classify", "teacher_forced", "generate", "run"]
CLASSIFICATION = ("classification",)
LANGUAGE_MODELLING = ("instruction", "chat", "qa", "text")
GENERATIVE = ("instruction", "chat", "qa")
EVERY_FORMAT = CLASSIFICATION + LANGUAGE_MODELLING


class Scorer(Protocol):
    """Accumulates a metric batch by batch (see the module docstring for ``update``)."""

    def update(self, *batch: Any) -> list[dict[str, Any]] | None: ...

    def compute(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ScoringContext:
    """What a scorer factory may need; ``language`` is set for the generate stage."""

    cfg: RunConfig
    metrics: frozenset[str]
    model: Any
    device: str
    latency: Any  # tunelab.evaluate.efficiency.LatencyMeter
    label_names: list[str] | None = None
    language: str | None = None
    run_dir: Path | None = None  # None: the untrained base model


ScorerFactory = Callable[[ScoringContext], Scorer]


@dataclass(frozen=True)
class Metric:
    """One ``eval.metrics`` name: where it applies, what it writes and how it is scored."""

    name: str  # the eval.metrics entry
    formats: tuple[str, ...]  # data.format values it fits
    keys: tuple[str, ...]  # what it writes to eval_results.json
    stage: Stage  # what feeds its scorer
    scorer: ScorerFactory  # ScoringContext -> Scorer; the same factory = one shared scorer
    higher_is_better: bool | None = None  # None: neither (mixed or not a score)
    default: bool = True  # computed when eval.metrics is not given
    missing: Callable[[], str | None] | None = None  # why it cannot run here (None: it can)


METRICS: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to the registry (a name may be registered once)."""
    if metric.name in METRICS:
        raise ValueError(f"metric {metric.name!r} is already registered")
    METRICS[metric.name] = metric
    return metric


def lazy(target: str) -> ScorerFactory:
    """A scorer factory ``module:attribute`` imported on first use."""
    module, _, attribute = target.partition(":")

    def build(ctx: ScoringContext) -> Scorer:
        return getattr(importlib.import_module(module), attribute)(ctx)

    build.__qualname__ = target
    return build


def allowed_metrics(data_format: str) -> list[Metric]:
    """The metrics that apply to ``data_format`` (a modality's: those of the format it names)."""
    fmt = metrics_format(data_format)
    return [m for m in METRICS.values() if fmt in m.formats]


def missing_reason(name: str) -> str | None:
    """Why this machine cannot compute metric ``name`` (e.g. METEOR without WordNet), or None."""
    metric = METRICS.get(name)
    return metric.missing() if metric is not None and metric.missing else None


def eval_metrics_problem(task: str, data_format: str, names: Iterable[str]) -> str | None:
    """The message for ``names`` that do not apply to the task and format (None when all do)."""
    allowed = {m.name for m in allowed_metrics(data_format)}
    wrong = [n for n in names if n not in allowed]
    if not wrong:
        return None
    return (
        f"eval.metrics: {', '.join(wrong)} do not apply to {task} with data.format "
        f"{data_format}; choose from {', '.join(sorted(allowed))}"
    )


def _check_name(value: Any) -> str:
    if isinstance(value, str) and value in METRICS:
        return value
    names = [repr(n) for n in METRICS]
    expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else "".join(names)
    raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})


class _MetricNameSchema:
    """Pydantic schema of a metric name: checked against the registry when validated."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(_check_name)

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> dict[str, Any]:
        return {"type": "string", "enum": list(METRICS)}


MetricName = Annotated[str, _MetricNameSchema]


def _wordnet_missing() -> str | None:
    from tunelab.evaluate.wordnet_setup import MISSING, wordnet_found

    return None if wordnet_found() else MISSING


_classification = lazy("tunelab.evaluate.classification:ClassificationScorer")
_text = lazy("tunelab.evaluate.generation:TextScorer")
_qa = lazy("tunelab.evaluate.qa:QAScorer")
_F1_KEYS = ("f1_macro", "f1_macro_labels", "f1_micro", "per_class")
_EFFICIENCY_KEYS = (
    "latency_p50_ms", "latency_p95_ms", "latency_per_token_p50_ms", "latency_per_token_p95_ms",
    "trainable_params", "total_params", "model_size_mb", "artifact_size_mb",
    "train_wall_time_s", "train_tokens_per_s",
)  # fmt: skip

# fmt: off
register(Metric("accuracy", CLASSIFICATION, ("accuracy",), "classify", _classification, True))
register(Metric("f1", CLASSIFICATION, _F1_KEYS, "classify", _classification, True))
register(Metric("auc", CLASSIFICATION, ("auc", "auc_classes_skipped"), "classify", _classification, True))
register(Metric("confusion_matrix", CLASSIFICATION, ("confusion_matrix", "labels"), "classify", _classification))
register(Metric("bleu", GENERATIVE, ("bleu",), "generate", _text, True))
register(Metric("rouge", GENERATIVE, ("rouge1", "rouge2", "rougeL"), "generate", _text, True))
register(Metric("meteor", GENERATIVE, ("meteor",), "generate", _text, True, missing=_wordnet_missing))
register(Metric("exact_match", ("qa",), ("exact_match",), "generate", _qa, True))
register(Metric("qa_f1", ("qa",), ("qa_f1",), "generate", _qa, True))
register(Metric("perplexity", LANGUAGE_MODELLING, ("loss", "perplexity"), "teacher_forced",
                lazy("tunelab.evaluate.perplexity:perplexity_scorer"), False))
register(Metric("diversity", GENERATIVE, ("distinct_1", "distinct_2", "self_bleu"), "generate",
                lazy("tunelab.evaluate.diversity:DiversityScorer")))
register(Metric("consistency", GENERATIVE, ("consistency", "consistency_scored", "consistency_nli"),
                "generate", lazy("tunelab.evaluate.consistency:ConsistencyScorer"), True))
register(Metric("efficiency", EVERY_FORMAT, _EFFICIENCY_KEYS, "run",
                lazy("tunelab.evaluate.efficiency:EfficiencyScorer")))
# fmt: on
