"""Benchmarks for kube-event-exporter (issue 7): `python -m bench --help`. Not part of the test suite."""
