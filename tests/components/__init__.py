"""Real components started on loopback for the integration tests (issue 2).

    from tests.components import ControlPlane, KafkaBroker, Collector, OpenSearch

The session fixtures in tests/conftest.py (control_plane, kafka_broker,
otel_collector, opensearch, namespace) are the usual way in; the classes can also be used
directly for a private instance (call .start() and .stop()).
Binaries come from `scripts/testbin` (a cache outside the checkout).
"""
from .collector import Collector, flatten_logs
from .controlplane import ControlPlane
from .kafka import KafkaBroker, Record
from .opensearch import OpenSearch
from .paths import MissingComponent, binary, cache_dir
from .proc import ComponentError, ManagedProcess, free_port, running_logs, wait_until

__all__ = ["Collector", "ComponentError", "ControlPlane", "KafkaBroker", "ManagedProcess", "MissingComponent",
           "OpenSearch", "Record", "binary", "cache_dir", "flatten_logs", "free_port", "running_logs", "wait_until"]
