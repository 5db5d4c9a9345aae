"""Evaluation: metrics, reports, plots."""
