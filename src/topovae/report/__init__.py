"""Reports people can look at: PNG figures, a self-contained HTML page, comparison tables."""

from topovae.report.compare import compare_table
from topovae.report.html import build_report

__all__ = ["build_report", "compare_table"]
