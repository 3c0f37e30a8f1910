"""Benchmark harnesses (``leptonkit bench ...``)."""
