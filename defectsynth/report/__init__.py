"""The train-eval report: report.md, metrics.json and figures/, plus the summary table the CLI prints."""

from defectsynth.report.markdown import write_report
from defectsynth.report.table import rich_table, summary_table

__all__ = ["rich_table", "summary_table", "write_report"]
