"""The reproduction report: Markdown + HTML, PNG figures, JSON/CSV numbers."""

from tgd.report.writer import write_report

__all__ = ["write_report"]
