"""Offline built-in datasets (the mini-benchmark)."""
