"""A real OpenTelemetry Collector (built by `scripts/testbin otelcol`) on loopback.

Why this exists: the OTLP sink must be proven against the real receiver the
users run, not a hand-made gRPC/HTTP server. The test collector receives OTLP
logs over gRPC and HTTP and writes them with the file exporter as OTLP/JSON
lines, which read_logs() parses back (attributes flattened to plain dicts).

``Collector(exporter="debug")`` ends the pipeline in the debug exporter (verbosity basic:
one log line per request) instead of the file exporter, and serves the Collector's own
metrics: accepted_log_records() counts what the OTLP receiver accepted. The file exporter
(OTLP/JSON encoding and a write per request) costs the Collector more CPU per record than
the exporter spends sending it; the benchmark uses the debug pipeline to measure the sink
rather than the Collector's file writer (bench/sinks.py), and the file one to verify content.

The same binary with the contrib k8s_events receiver (Collector.k8s_events())
is the peer the exporter is compared/benchmarked against: it watches the
ControlPlane (auth_type kubeConfig, via $KUBECONFIG) and writes what it sees
to its own file.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .paths import binary, new_workdir
from .proc import ComponentError, ManagedProcess, free_port, port_open, wait_until

READY_LINE = "Everything is ready"


def any_value(v: dict | None):
    """Decode an OTLP/JSON AnyValue into a plain Python value."""
    if not v:
        return None
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "bytesValue" in v:
        import base64
        return base64.b64decode(v["bytesValue"])
    if "arrayValue" in v:
        return [any_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return attributes(v["kvlistValue"].get("values", []))
    return None


def attributes(kvs: list | None) -> dict:
    """OTLP/JSON [{key, value}] -> {key: python value}."""
    return {kv["key"]: any_value(kv.get("value")) for kv in (kvs or [])}


def flatten_logs(request: dict) -> list[dict]:
    """One ExportLogsServiceRequest (OTLP/JSON) -> a list of flat log records."""
    out = []
    for rl in request.get("resourceLogs", []):
        res = attributes(rl.get("resource", {}).get("attributes"))
        for sl in rl.get("scopeLogs", []):
            scope = sl.get("scope", {})
            for lr in sl.get("logRecords", []):
                out.append({
                    "resource": res,
                    "resource_schema_url": rl.get("schemaUrl", ""),
                    "scope": {"name": scope.get("name", ""), "version": scope.get("version", ""),
                              "attributes": attributes(scope.get("attributes"))},
                    "time_unix_nano": int(lr.get("timeUnixNano", 0)),
                    "observed_time_unix_nano": int(lr.get("observedTimeUnixNano", 0)),
                    "severity_number": int(lr.get("severityNumber", 0) or 0),
                    "severity_text": lr.get("severityText", ""),
                    "event_name": lr.get("eventName", ""),
                    "body": any_value(lr.get("body")),
                    "attributes": attributes(lr.get("attributes")),
                    "trace_id": lr.get("traceId", ""),
                    "span_id": lr.get("spanId", ""),
                    "flags": int(lr.get("flags", 0) or 0),
                    "raw": lr,
                })
    return out


class Collector:
    """otelcol-kee with a generated config; see the module docstring.

    Attributes: grpc_endpoint ("127.0.0.1:PORT"), http_endpoint ("http://127.0.0.1:PORT"),
    output_path (file exporter JSON lines), config_path, dir.
    """

    def __init__(self, workdir: Path | None = None, *, receivers: dict | None = None, env: dict | None = None,
                 name: str = "otelcol", otlp: bool = True, exporter: str = "file"):
        self.bin = binary("otelcol-kee")
        self.dir = Path(workdir) if workdir else new_workdir(name)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.otlp = otlp
        self.output_path = self.dir / "logs.jsonl"
        self.config_path = self.dir / "config.yaml"
        self._skip = 0
        self._log_offset = 0
        self.grpc_port, self.http_port = free_port(), free_port()
        self.grpc_endpoint = f"127.0.0.1:{self.grpc_port}"
        self.http_endpoint = f"http://127.0.0.1:{self.http_port}"
        recv = dict(receivers or {})
        if exporter not in ("file", "debug"):
            raise ValueError(f"exporter must be file or debug, not {exporter!r}")
        self.exporter = exporter
        self.metrics_port = free_port() if exporter == "debug" else None
        if otlp:
            recv["otlp"] = {"protocols": {"grpc": {"endpoint": self.grpc_endpoint},
                                          "http": {"endpoint": f"127.0.0.1:{self.http_port}"}}}
        exporters = {"file": {"path": str(self.output_path), "format": "json", "flush_interval": "100ms",
                              "append": True}} if exporter == "file" else {"debug": {"verbosity": "basic"}}
        metrics: dict = {"level": "none"}
        if self.metrics_port is not None:  # otelcol_receiver_accepted_log_records, for accepted_log_records()
            metrics = {"level": "basic", "readers": [{"pull": {"exporter": {"prometheus": {
                "host": "127.0.0.1", "port": self.metrics_port, "without_units": True}}}}]}
        self.config = {
            "receivers": recv,
            "exporters": exporters,
            "service": {
                "telemetry": {"metrics": metrics, "logs": {"level": "info", "encoding": "console"}},
                "pipelines": {"logs": {"receivers": list(recv), "exporters": list(exporters)}},
            },
        }
        self.config_path.write_text(json.dumps(self.config, indent=1))  # JSON is YAML
        self.process = ManagedProcess(name, [self.bin, f"--config={self.config_path}"], self.dir / f"{name}.log",
                                      env=env)

    @classmethod
    def k8s_events(cls, control_plane, namespaces: list[str] | None = None, workdir: Path | None = None,
                   kubeconfig: Path | str | None = None) -> Collector:
        """A collector whose only receiver is contrib's k8s_events, watching `control_plane`
        (admin kubeconfig unless `kubeconfig` is given), writing to its output_path."""
        recv = {"k8s_events": {"auth_type": "kubeConfig", "namespaces": list(namespaces or [])}}
        return cls(workdir, receivers=recv, otlp=False, name="otelcol-k8s-events",
                   env={"KUBECONFIG": str(kubeconfig or control_plane.kubeconfig)})

    @classmethod
    def k8s_objects(cls, control_plane, namespaces: list[str] | None = None, workdir: Path | None = None,
                    kubeconfig: Path | str | None = None, group: str = "") -> Collector:
        """A collector whose only receiver is contrib's k8sobjects, WATCHing Events (core v1, or
        group="events.k8s.io"); each log record's body is the watch event {type, object}."""
        obj = {"name": "events", "mode": "watch"}
        if group:
            obj["group"] = group
        if namespaces:
            obj["namespaces"] = list(namespaces)
        recv = {"k8sobjects": {"auth_type": "kubeConfig", "objects": [obj]}}
        return cls(workdir, receivers=recv, otlp=False, name="otelcol-k8s-objects",
                   env={"KUBECONFIG": str(kubeconfig or control_plane.kubeconfig)})

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 60) -> Collector:
        self._log_offset = self.process.log_path.stat().st_size if self.process.log_path.exists() else 0
        self.process.start()
        wait_until(self._ready, timeout, f"{self.name} ready", proc=self.process, interval=0.1)
        return self

    def _ready(self) -> bool:
        with open(self.process.log_path, "rb") as f:
            f.seek(self._log_offset)
            if READY_LINE.encode() not in f.read():
                return False
        return not self.otlp or (port_open(self.grpc_port) and port_open(self.http_port))

    def stop(self) -> None:
        """Graceful stop (SIGTERM: the file exporter flushes)."""
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- output --------------------------------------------------------------------
    def accepted_log_records(self) -> int:
        """Log records the OTLP receiver accepted so far, both transports (the Collector's own
        otelcol_receiver_accepted_log_records; exporter="debug" only). A record is counted once the
        pipeline took it, before the Collector answers the request."""
        if self.metrics_port is None:
            raise ComponentError(f"{self.name}: accepted_log_records() needs Collector(exporter='debug')")
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text = r.read().decode()
        n = 0.0
        for line in text.splitlines():
            if line.startswith("otelcol_receiver_accepted_log_records") and 'receiver="otlp"' in line:
                n += float(line.rsplit(" ", 1)[1])
        return int(n)


    def read_requests(self) -> list[dict]:
        """Every OTLP/JSON line the file exporter wrote so far (one export request per line)."""
        if not self.output_path.exists():
            return []
        with open(self.output_path, "rb") as f:
            f.seek(self._skip)
            text = f.read().decode("utf-8", "replace")
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line being written right now
        return out

    def read_logs(self) -> list[dict]:
        """Every log record received so far, flattened (see flatten_logs)."""
        return [r for req in self.read_requests() for r in flatten_logs(req)]

    def wait_for_logs(self, predicate: Callable[[list[dict]], object] | int = 1, timeout: float = 15) -> list[dict]:
        """Wait until read_logs() satisfies `predicate` (or holds at least that many records); return them."""
        if isinstance(predicate, int):
            n = predicate
            predicate = lambda logs: len(logs) >= n  # noqa: E731
        got: list[dict] = []

        def check():
            nonlocal got
            got = self.read_logs()
            return predicate(got)
        try:
            wait_until(check, timeout, f"log records in {self.output_path}", interval=0.1, proc=self.process)
        except ComponentError as e:
            raise ComponentError(f"{e}\n(last read: {len(got)} records)") from None
        return got

    def clear(self) -> None:
        """Forget what was received so far (later reads start after the current end of the file)."""
        self._skip = self.output_path.stat().st_size if self.output_path.exists() else 0

    def __repr__(self) -> str:
        return f"<Collector {self.name} grpc={self.grpc_endpoint} http={self.http_endpoint} dir={self.dir}>"
