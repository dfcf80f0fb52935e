"""Which backend a run uses, picked once from the launch environment.

``accelerate launch`` says what it launched in environment variables: a DeepSpeed config
sets ``ACCELERATE_USE_DEEPSPEED``, an FSDP config ``ACCELERATE_USE_FSDP``, and several
processes set ``WORLD_SIZE``. The first registered backend whose ``requested()`` is true
runs; one process (``single``) is the fallback. A new backend is one module plus one
:func:`register_backend` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tunelab.config import TrainConfig
from tunelab.train.backends.base import AcceleratorOptions, Backend, Launcher
from tunelab.train.backends.ddp import DataParallel, ddp_requested
from tunelab.train.backends.deepspeed import ZeroEngine, deepspeed_requested
from tunelab.train.backends.fsdp import FullySharded, fsdp_requested
from tunelab.train.backends.single import SingleProcess


@dataclass(frozen=True)
class BackendEntry:
    """A backend: its name, when the launch asks for it, and how it starts."""

    name: str
    requested: Callable[[], bool]
    launch: Launcher


# checked in order; the last one always applies
BACKENDS: list[BackendEntry] = [
    BackendEntry("deepspeed", deepspeed_requested, ZeroEngine.launch),
    BackendEntry("fsdp", fsdp_requested, FullySharded.launch),
    BackendEntry("ddp", ddp_requested, DataParallel.launch),
    BackendEntry("single", lambda: True, SingleProcess.launch),
]


def register_backend(name: str, requested: Callable[[], bool], launch: Launcher) -> None:
    """Add a backend, checked before the built-in ones (a name already there is replaced)."""
    BACKENDS[:] = [BackendEntry(name, requested, launch)] + [
        entry for entry in BACKENDS if entry.name != name
    ]


def requested_backend() -> BackendEntry:
    """The backend the launch environment asks for."""
    return next(entry for entry in BACKENDS if entry.requested())


def start_backend(cfg: TrainConfig, options: AcceleratorOptions) -> Backend:
    """Start the requested backend: it builds the run's Accelerator from ``options``."""
    return requested_backend().launch(cfg, options)
