"""Evaluation: baselines, scoring suites and reports."""
