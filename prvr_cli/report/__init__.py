"""Run reports: training curves, detection per epoch and the paper's Fig. 4 of a finished run, as
matplotlib PNGs and one self-contained HTML page (``prvr report``)."""

from prvr_cli.report.build import REPORT_NAME, build_report, report_paths

__all__ = ["REPORT_NAME", "build_report", "report_paths"]
