"""The reproduction report: Markdown + self-contained HTML, PNG figures, JSON/CSV numbers.

Figure functions take plain data and return matplotlib Figures, reusable for a user's own
study: :mod:`tgd.repro.report.images` (``image_grid``, ``line_profiles``) and
:mod:`tgd.repro.report.plots` (``tradeoff_scatter``, ``tradeoff_panels``, ``compare_methods``,
``loss_vs_time``, ``threshold_sweep``).
"""

from tgd.repro.report.folder import check_report_folder, reproduce, write_report_folder
from tgd.repro.report.images import image_grid, line_profiles
from tgd.repro.report.plots import (
    compare_methods,
    loss_vs_time,
    threshold_sweep,
    tradeoff_panels,
    tradeoff_scatter,
)
from tgd.repro.report.writer import load_results, write_report

__all__ = ["check_report_folder", "compare_methods", "image_grid", "line_profiles",
           "load_results", "loss_vs_time", "reproduce", "threshold_sweep", "tradeoff_panels",
           "tradeoff_scatter", "write_report", "write_report_folder"]
