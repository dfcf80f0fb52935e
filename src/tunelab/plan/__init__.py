"""Planning before training: memory and time estimates per method, precision, gradient
checkpointing and micro-batch (``tunelab plan``), and ``method.name: auto`` /
``train.batch_size: auto`` (see docs/planning.md). Entry points load on first use."""

from __future__ import annotations

from tunelab.lazy_exports import lazy_getattr

_LAZY = {
    "build_plan": "tunelab.plan.planner",
    "plan_json": "tunelab.plan.report",
    "print_plan": "tunelab.plan.report",
    "resolve_auto": "tunelab.plan.auto",
}
__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
