"""Evaluation: question files, metrics, and a runner that writes a report (``byline eval``)."""
