"""``tunelab doctor``: read a run's metrics, summary, config and data report and name what
went wrong, with the evidence and the config change to try.

One module per family of checks (``curves``, ``stability``, ``data_checks``, ``speed``,
``memory``), each listing its ``CHECKS``; ``registry`` collects them (``register`` adds one).
"""

from __future__ import annotations

from tunelab.doctor.finding import Finding
from tunelab.doctor.record import RunRecord, load_run
from tunelab.doctor.registry import CHECKS, diagnose, register
from tunelab.doctor.report import print_findings

__all__ = ["CHECKS", "Finding", "RunRecord", "diagnose", "load_run", "print_findings", "register"]
