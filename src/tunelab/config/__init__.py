"""The run config: one YAML file describes a whole fine-tuning run.

Sections: ``model``, ``data``, ``method``, ``train``, ``eval``, ``output``, one module each
(:mod:`tunelab.config.model` ...), joined in :mod:`tunelab.config.run`. Everything is
validated up front by pydantic v2 models (no heavy imports here), and every problem is
reported at once with the full key path, the value given and what is allowed
(:mod:`tunelab.config.problems`). Reading, overrides and the schema:
:mod:`tunelab.config.loading`, :mod:`tunelab.config.overrides`. ``stages:``
(:mod:`tunelab.config.stages`) lists training stages, resolved into one run config each by
:mod:`tunelab.config.stage_plan`. The method section is a
discriminated union on ``name`` built from :mod:`tunelab.methods.registry`, which
hands the config its methods when it loads (``tunelab/__init__`` imports it); method settings
models live with their methods (``tunelab.methods.lora.LoraSettings`` ...).
"""

from __future__ import annotations

from tunelab.config.data import CleanConfig, ColumnsConfig, DataConfig, SplitConfig
from tunelab.config.eval import EvalConfig, GenerationConfig
from tunelab.config.loading import dump_config, json_schema, load_config
from tunelab.config.method import MethodConfig
from tunelab.config.model import ModelConfig
from tunelab.config.output import OutputConfig
from tunelab.config.overrides import apply_overrides
from tunelab.config.problems import format_problems
from tunelab.config.run import RunConfig
from tunelab.config.section import DataFormat, Fraction, PositiveInt, Section, Task
from tunelab.config.stage_plan import resolve_stages
from tunelab.config.train import EarlyStoppingConfig, TrainConfig

__all__ = [
    "CleanConfig",
    "ColumnsConfig",
    "DataConfig",
    "DataFormat",
    "EarlyStoppingConfig",
    "EvalConfig",
    "Fraction",
    "GenerationConfig",
    "MethodConfig",
    "ModelConfig",
    "OutputConfig",
    "PositiveInt",
    "RunConfig",
    "Section",
    "SplitConfig",
    "Task",
    "TrainConfig",
    "apply_overrides",
    "dump_config",
    "format_problems",
    "json_schema",
    "load_config",
    "resolve_stages",
]
