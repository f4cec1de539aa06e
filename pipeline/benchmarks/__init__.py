"""Benchmarks: scripts that time things and print numbers (`python -m pipeline.benchmarks.<name>`)."""
