"""kube-event-exporter: every Kubernetes Event occurrence, exported and confirmed.

Data path: exporter/sources/ -> exporter/pipeline.py (records.normalise,
transforms/filters) -> exporter/sinks/ -> acknowledgements -> exporter/acks.py ->
exporter/checkpoint/. Wiring and lifecycle: exporter/app.py; CLI: exporter/cli.py.
"""
__version__ = "0.1.0"
