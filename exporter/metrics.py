"""Every metric, declared once; /metrics, /healthz and /readyz.

The hot path bumps plain integer attributes of :class:`Stats` (a few ns each,
no locks); a custom Prometheus collector reads them at scrape time. Labels are
low-cardinality only: sink name, watch outcome, error kind; never an object name.
"""
from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from exporter import log

#: One metric sample a component exposes (sinks, the leader): (name, "counter" | "gauge", help, labels, value).
Metric = tuple[str, str, str, dict[str, str], float]

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class Stats:
    """Counters and gauges of one exporter process."""

    def __init__(self) -> None:
        self.received_occurrences = 0   # ADDED + MODIFIED envelopes
        self.bookmarks = 0
        self.deleted = 0                # DELETED envelopes (TTL expiry), counted not exported
        self.unknown_envelopes = 0
        self.decode_errors = 0          # lines that are not JSON watch envelopes
        self.filtered = 0
        self.truncated = 0
        self.relists = 0                # LIST after 410 Gone
        self.gaps = 0                   # relists where history between last seen RV and the list RV was lost
        self.relist_deduplicated = 0    # list items skipped as already delivered
        self.watch_restarts: dict[str, int] = {}  # outcome -> count (closed, gone, error, timeout)
        self.errors: dict[tuple[str, str], int] = {}  # (component, kind) -> count
        self.in_flight = 0
        self.checkpoint_rv: dict[str, str] = {}
        self.checkpoint_saved_at: float | None = None
        self.checkpoint_failures = 0
        self.sink_stats: list[Any] = []  # sinks exposing .metrics() -> iterable of (name, kind, labels, value)
        self.last_progress = time.monotonic()
        #: Set by progress(): the runner's checkpointer sleeps on it while nothing moves (exporter/runner.py).
        self.wake: threading.Event | None = None
        self.ready = False
        self.lag_counts = [0] * (len(LAG_BUCKETS) + 1)
        self.lag_sum = 0.0
        self._lag_ts: str | None = None  # the last timestamp parsed, and its epoch seconds:
        self._lag_epoch = 0.0            # Events of one burst share their second

    def observe_lag(self, ts: str | None) -> None:
        """Seconds from the event's occurrence to its emission (live mode only)."""
        if not ts:
            return
        if ts == self._lag_ts:
            epoch = self._lag_epoch
        else:
            try:
                epoch = datetime.fromisoformat(ts).timestamp()
            except (TypeError, ValueError):
                return
            self._lag_ts, self._lag_epoch = ts, epoch
        lag = time.time() - epoch
        if lag < 0:
            lag = 0.0
        self.lag_counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.lag_sum += lag

    def error(self, component: str, kind: str) -> None:
        key = (component, kind)
        self.errors[key] = self.errors.get(key, 0) + 1

    def restart(self, outcome: str) -> None:
        self.watch_restarts[outcome] = self.watch_restarts.get(outcome, 0) + 1

    def progress(self) -> None:
        """A source handed over what it read (or saw the stream alive): /healthz, and the checkpointer's wake-up."""
        self.last_progress = time.monotonic()
        wake = self.wake
        if wake is not None and not wake.is_set():  # a look, not a lock, while the checkpointer is awake
            wake.set()

    def notify(self) -> None:
        """Something the runner watches changed (a sink became fatal): wake its loop."""
        if self.wake is not None:
            self.wake.set()


def _collector(stats: Stats) -> Any:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    class Collector:
        def collect(self) -> Iterator[Any]:
            def counter(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> Any:
                c = CounterMetricFamily(name, doc, labels=list(labels or {}))
                c.add_metric(list((labels or {}).values()), value)
                return c
            yield counter("kee_events_received", "Event occurrences received (ADDED and MODIFIED envelopes)",
                          stats.received_occurrences)
            yield counter("kee_bookmarks_received", "BOOKMARK envelopes received", stats.bookmarks)
            yield counter("kee_events_deleted", "DELETED envelopes (Event TTL expiry), counted, not exported",
                          stats.deleted)
            yield counter("kee_records_filtered", "records dropped by filters", stats.filtered)
            yield counter("kee_records_truncated", "records whose message was truncated", stats.truncated)
            yield counter("kee_decode_errors", "input lines that were not JSON watch envelopes", stats.decode_errors)
            yield counter("kee_unknown_envelopes", "watch envelopes of an unknown type", stats.unknown_envelopes)
            yield counter("kee_relists", "LISTs after 410 Gone", stats.relists)
            yield counter("kee_watch_gaps", "relists where history since the last seen RV was compacted: "
                          "intermediate updates and expired Events in that window are lost", stats.gaps)
            yield counter("kee_relist_deduplicated", "list items skipped as already delivered",
                          stats.relist_deduplicated)
            c = CounterMetricFamily("kee_watch_restarts", "watch requests that ended, by outcome",
                                    labels=["outcome"])
            for k, v in stats.watch_restarts.items():
                c.add_metric([k], v)
            yield c
            c = CounterMetricFamily("kee_errors", "errors, by component and kind", labels=["component", "kind"])
            for (comp, kind), v in stats.errors.items():
                c.add_metric([comp, kind], v)
            yield c
            yield counter("kee_checkpoint_failures", "checkpoint saves that failed", stats.checkpoint_failures)
            g = GaugeMetricFamily("kee_in_flight_records", "records handed to sinks, not yet confirmed by all")
            g.add_metric([], stats.in_flight)
            yield g
            g = GaugeMetricFamily("kee_checkpoint_resource_version", "saved resourceVersion (numeric RVs only)",
                                  labels=["stream"])
            for k, rv in stats.checkpoint_rv.items():
                rv = rv.partition(" ")[0] if rv else rv  # a pod stream's position: "<rv> <high-water finishedAt>"
                if rv and rv.isdigit():
                    g.add_metric([k], float(rv))
            yield g
            g = GaugeMetricFamily("kee_checkpoint_age_seconds", "seconds since the checkpoint was last saved")
            if stats.checkpoint_saved_at is not None:
                g.add_metric([], time.time() - stats.checkpoint_saved_at)
            yield g
            buckets, acc = [], 0
            for bound, n in zip((*map(str, LAG_BUCKETS), "+Inf"), stats.lag_counts, strict=False):
                acc += n
                buckets.append((bound, acc))
            h = HistogramMetricFamily("kee_emit_lag_seconds", "seconds from an event's occurrence to its emission")
            h.add_metric([], buckets, stats.lag_sum)
            yield h
            fams: dict[str, Any] = {}
            for sink in stats.sink_stats:
                for name, kind, doc, labels, value in sink.metrics():
                    fam = fams.get(name)
                    if fam is None:
                        cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                        fam = fams[name] = cls(name, doc, labels=list(labels))
                    fam.add_metric(list(labels.values()), value)
            yield from fams.values()
    return Collector()


def serve(stats: Stats, listen: str, stale_after: float) -> Any:
    """Start the HTTP endpoint in a daemon thread; returns the server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    registry = CollectorRegistry()
    registry.register(_collector(stats))
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/metrics"):
                body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
            elif self.path.startswith("/healthz"):
                stale = time.monotonic() - stats.last_progress
                ok = stale < stale_after
                body = b"ok\n" if ok else b"no progress for %ds\n" % stale
                ctype, code = "text/plain", 200 if ok else 503
            elif self.path.startswith("/readyz"):
                body = b"ready\n" if stats.ready else b"not ready\n"
                ctype, code = "text/plain", 200 if stats.ready else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    # The selector waits for a connection; poll_interval only bounds how soon shutdown() is seen, and
    # nothing calls it (a daemon thread): a long one keeps an idle exporter from waking twice a second.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 3600.0}, name="metrics-http",
                     daemon=True).start()
    log.info("metrics_listening", listen=f"{host or '0.0.0.0'}:{server.server_address[1]}")
    return server
