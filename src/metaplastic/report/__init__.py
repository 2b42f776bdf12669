"""Plots and reports, made from a run directory's saved metrics only."""

from metaplastic.report.plots import make_report, plot_coefficients, plot_eval, plot_meta_loss

__all__ = ["make_report", "plot_coefficients", "plot_eval", "plot_meta_loss"]
