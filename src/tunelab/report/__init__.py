"""HTML reports of runs: ``tunelab report RUN_DIR [RUN_DIR ...]``.

``write_report(run_dirs, out_path)`` writes one self-contained HTML file (plotly.js inlined,
opens offline) for one run or a comparison of several. Sections come from
``tunelab.report.registry`` (one module each under ``tunelab.report.sections``).
"""

from __future__ import annotations

from tunelab.report.build import REPORT_FILE, load_runs, render_report, write_report
from tunelab.report.registry import SECTIONS, register
from tunelab.report.section import Section
from tunelab.report.sections.comparison import comparison_rows

__all__ = [
    "REPORT_FILE",
    "SECTIONS",
    "Section",
    "comparison_rows",
    "load_runs",
    "register",
    "render_report",
    "write_report",
]
