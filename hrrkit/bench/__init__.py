"""Benchmark harness: registry of cases, timers, JSON rows and tables."""
