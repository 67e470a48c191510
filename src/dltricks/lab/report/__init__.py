"""The tricks report: every experiment's claim, figures, numbers and finding on one page."""

from dltricks.lab.report.build import ReportOutcome, build_report
from dltricks.lab.report.tables import Table, results_table

__all__ = ["ReportOutcome", "Table", "build_report", "results_table"]
