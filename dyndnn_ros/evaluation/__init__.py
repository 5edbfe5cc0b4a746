"""Evaluation: scenarios, a faster-than-real-time runner, metrics, report and plots."""
