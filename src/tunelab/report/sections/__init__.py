"""The report's sections, one module each (listed in ``tunelab.report.registry``)."""
