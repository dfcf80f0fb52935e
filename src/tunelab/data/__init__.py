"""The data pipeline: load, clean, split, render and tokenise a run's data (cached on disk)."""

from tunelab.data.pipeline import PreparedData, prepare_data
from tunelab.data.report import print_inspection, print_report, print_warnings

__all__ = ["PreparedData", "prepare_data", "print_inspection", "print_report", "print_warnings"]
