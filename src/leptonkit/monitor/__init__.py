"""Monitoring shared by every stage: Prometheus metrics, resource use, structured logs."""
