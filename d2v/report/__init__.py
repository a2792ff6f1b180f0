"""The comparison report: runs from MLflow, the paper's numbers beside them, markdown + HTML."""

from d2v.report.build import build_report
from d2v.report.tables import compare_runs

__all__ = ["build_report", "compare_runs"]
