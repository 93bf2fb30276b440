"""OtlpSink delivery logic with a scripted transport: acks only on success, retries, batching, backpressure,
interruptible send, conditions, drain, secrets never logged.

The real Collector tests are tests/integration/test_otlp_sink.py; these pin the
logic around the transport without a network.
"""
from __future__ import annotations

import threading
import time

import pytest
from structlog.testing import capture_logs

from exporter.acks import OrderedAcks
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.settings import OtlpSettings
from exporter.sinks.base import SinkInterrupted
from exporter.sinks.otlp import Answer, OtlpSink

OK = Answer(True)
DOWN = Answer(False, "UNAVAILABLE", "UNAVAILABLE: connection refused")


def record(i: int) -> dict:
    return {"timestamp": "2026-11-29T03:18:45Z", "observed_timestamp": "2026-11-29T03:18:46Z", "type": "Normal",
            "reason": "R", "action": None, "message": f"message {i}", "count": 1,
            "object": {"kind": "Pod", "name": f"p{i}", "namespace": "ns", "uid": f"u{i}"},
            "event": {"name": f"e{i}", "uid": f"eu{i}", "creation_timestamp": "2026-11-29T03:18:45Z"},
            "source_host": None, "reporting_controller": "c", "reporting_instance": None, "cluster": None}


class ScriptedTransport:
    """export() answers from a script (Answer or Exception), then success; records what it got."""

    def __init__(self, script=(), gate: threading.Event | None = None):
        self.script = list(script)
        self.gate = gate
        self.batches: list[int] = []
        self.calls = 0
        self.closed = False
        self.cancelled = False

    def export(self, payload: bytes) -> Answer:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls += 1
        outcome = self.script.pop(0) if self.script else OK
        if isinstance(outcome, Exception):
            raise outcome
        if outcome.ok:
            self.batches.append(payload.count(b"message "))
        return outcome

    def cancel(self) -> None:
        self.cancelled = True

    def close(self) -> None:
        self.closed = True


def make(transport, env=None, **kw) -> OtlpSink:
    kw.setdefault("endpoint", "http://127.0.0.1:1")
    cfg = OtlpSettings(enabled=True, retry_backoff_initial_seconds=0.01, retry_backoff_max_seconds=0.05, **kw)
    return OtlpSink(cfg, cluster="c", stats=Stats(), env=env or {}, transport=transport)


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


def metric(s, name, **labels):
    for n, _kind, _doc, lab, value in s.metrics():
        if n == name and all(lab.get(k) == v for k, v in labels.items()):
            return value
    raise KeyError(name)


def test_ack_only_after_success_and_retry_never_drops():
    exp = ScriptedTransport([DOWN, RuntimeError("boom"), Answer(False, "http_503", "HTTP 503")])
    sink = make(exp, batch_max_records=10)
    for i in range(1, 11):
        sink.send(i, b"", record(i))
    assert wait_for(lambda: sink.acked() == 10)
    assert exp.calls == 4 and exp.batches == [10]
    assert sink.failures == {"unavailable": 1, "exception": 1, "http_503": 1}
    assert metric(sink, "kee_sink_retries", sink="otlp") == 3
    assert sink.stats.errors == {("otlp", "unavailable"): 1, ("otlp", "exception"): 1, ("otlp", "http_503"): 1}
    sink.close(5)
    assert exp.closed


def test_watermark_waits_for_failing_batch():
    gate = threading.Event()
    exp = ScriptedTransport([DOWN] * 1000, gate=gate)
    sink = make(exp, batch_max_records=5)
    for i in range(1, 11):
        sink.send(i, b"", record(i))
    gate.set()
    time.sleep(0.2)
    assert sink.acked() == 0  # nothing confirmed while the receiver fails
    exp.script.clear()
    assert wait_for(lambda: sink.acked() == 10)
    sink.close(5)


def test_batches_by_count_bytes_and_time():
    exp = ScriptedTransport()
    sink = make(exp, batch_max_records=4, batch_timeout_seconds=0.2)
    for i in range(1, 10):
        sink.send(i, b"", record(i))
    assert wait_for(lambda: sink.acked() == 8)     # two full batches at once
    assert sink.acked() == 8
    assert wait_for(lambda: sink.acked() == 9, 2)   # the partial one after the linger time
    assert exp.batches == [4, 4, 1]
    sink.close(5)
    exp2 = ScriptedTransport()
    one = len(make(ScriptedTransport())._encoder.encode(record(1)))
    sink = make(exp2, batch_max_bytes=one * 3 + 1, batch_timeout_seconds=0.05)
    for i in range(1, 8):
        sink.send(i, b"", record(i))
    sink.close(5)
    assert exp2.batches == [3, 3, 1]


def test_lone_record_goes_after_linger_without_flush():
    exp = ScriptedTransport()
    sink = make(exp, batch_timeout_seconds=0.2)
    time.sleep(0.1)  # the worker is idle, waiting for a batch
    sink.send(1, b"", record(1))
    assert wait_for(lambda: sink.acked() == 1, 2)
    sink.close(5)


def test_flush_sends_partial_batch_at_once():
    exp = ScriptedTransport()
    sink = make(exp, batch_timeout_seconds=60)
    sink.send(1, b"", record(1))
    sink.flush()
    assert wait_for(lambda: sink.acked() == 1, 2)
    sink.close(5)


def test_backpressure_blocks_send():
    gate = threading.Event()
    exp = ScriptedTransport(gate=gate)
    sink = make(exp, batch_max_records=2, max_in_flight_records=4)
    for i in range(1, 5):
        sink.send(i, b"", record(i))
    done = threading.Event()

    def fifth():
        sink.send(5, b"", record(5))
        done.set()
    t = threading.Thread(target=fifth, daemon=True)
    t.start()
    assert not done.wait(0.3)  # blocked: 4 held, limit 4
    assert metric(sink, "kee_sink_in_flight_records", sink="otlp") == 4
    gate.set()
    assert done.wait(5)
    sink.close(5)
    assert sink.acked() == 5 and sum(exp.batches) == 5
    assert metric(sink, "kee_sink_backpressure_seconds", sink="otlp") > 0.2


def test_interrupt_frees_a_blocked_send_at_once():
    """Shutdown while the Collector is down: a send() blocked by backpressure must not make the drain wait."""
    exp = ScriptedTransport([DOWN] * 100_000)
    sink = make(exp, batch_max_records=2, max_in_flight_records=2)
    sink.send(1, b"", record(1))
    sink.send(2, b"", record(2))
    err: list[BaseException] = []

    def blocked():
        try:
            sink.send(3, b"", record(3))
        except SinkInterrupted as e:
            err.append(e)
    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    sink.interrupt()
    t.join(2)
    assert err and time.monotonic() - t0 < 0.5
    with pytest.raises(SinkFatal):
        sink.close(0.3)
    assert sink.acked() == 0


def test_close_drains_everything():
    exp = ScriptedTransport([DOWN, DOWN])
    sink = make(exp, batch_max_records=100, batch_timeout_seconds=30)
    for i in range(1, 251):
        sink.send(i, b"", record(i))
    sink.close(10)
    assert sink.acked() == 250 and sum(exp.batches) == 250


def test_close_gives_up_after_timeout_without_acking():
    exp = ScriptedTransport([DOWN] * 10_000)
    sink = make(exp)
    sink.send(1, b"", record(1))
    t0 = time.monotonic()
    with capture_logs() as logs, pytest.raises(SinkFatal):
        sink.close(0.5)
    assert time.monotonic() - t0 < 3
    assert sink.acked() == 0 and exp.closed
    assert any(e["event"] == "sink_undelivered_at_close" and e["records"] == 1 for e in logs)


def test_close_cancels_a_hanging_request():
    gate = threading.Event()  # the request never answers
    exp = ScriptedTransport(gate=gate)
    sink = make(exp)
    sink.send(1, b"", record(1))
    sink.flush()
    time.sleep(0.1)
    with pytest.raises(SinkFatal):
        sink.close(0.3)
    assert exp.cancelled
    gate.set()


@pytest.mark.parametrize("answer,kind,setting", [
    (Answer(False, "UNAUTHENTICATED", "UNAUTHENTICATED: bad token"), "authentication", "sinks.otlp.headers"),
    (Answer(False, "http_403", "HTTP 403 Forbidden"), "authentication", "sinks.otlp.headers"),
    (Answer(False, "http_404", "HTTP 404 Not Found"), "endpoint", "sinks.otlp.endpoint"),
    (Answer(False, "http_413", "HTTP 413"), "request_too_large", "sinks.otlp.batch_max_bytes"),
    (Answer(False, "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED: grpc: received message larger than max"),
     "request_too_large", "sinks.otlp.batch_max_bytes"),
])
def test_answers_only_a_person_can_fix_are_loud_conditions_held_and_retried(answer, kind, setting):
    exp = ScriptedTransport([answer] * 5)
    sink = make(exp)
    with capture_logs() as logs:
        sink.send(1, b"", record(1))
        sink.flush()
        assert wait_for(lambda: exp.calls >= 3)
    loud = [e for e in logs if e["event"] == "sink_condition"]
    assert len(loud) == 1 and loud[0]["log_level"] == "error"      # once, then every 30 s
    assert loud[0]["condition"] == kind and loud[0]["setting"] == setting and loud[0]["fix"]
    assert sink.fatal is None                                       # held and retried, the process goes on
    assert wait_for(lambda: sink.acked() == 1)                      # fixed: delivered, nothing lost
    sink.close(5)


def test_condition_gauge_and_recovery(monkeypatch):
    import exporter.sinks.delivery as d
    monkeypatch.setattr(d, "CLEAR_AFTER", 0.05)
    gate = threading.Event()
    exp = ScriptedTransport([Answer(False, "http_401", "HTTP 401")] * 3)
    sink = make(exp)
    sink.send(1, b"", record(1))
    sink.flush()
    assert wait_for(lambda: sink.condition is not None)
    assert metric(sink, "kee_sink_condition", condition="authentication") == 1
    assert wait_for(lambda: sink.acked() == 1)
    time.sleep(0.1)
    with capture_logs() as logs:
        assert metric(sink, "kee_sink_condition", condition="authentication") == 0
    assert any(e["event"] == "sink_recovered" for e in logs)
    gate.set()
    sink.close(5)


def test_retry_logs_never_show_credentials():
    leak = Answer(False, "connection", "ConnectionError: http://kee:pw-s3cret@127.0.0.1:1/v1/logs refused "
                                       "(headers x-honeycomb-team=hc-s3cret)")
    exp = ScriptedTransport([leak, Answer(False, "http_401", "HTTP 401: bad key hc-s3cret")])
    with capture_logs() as logs:
        sink = make(exp, protocol="http/protobuf", endpoint="http://kee:pw-s3cret@127.0.0.1:1",
                    env={"OTEL_EXPORTER_OTLP_HEADERS": "x-honeycomb-team=hc-s3cret"})
        sink.send(1, b"", record(1))
        sink.flush()
        assert wait_for(lambda: sink.acked() == 1)
        sink.close(5)
    text = repr(logs)
    assert "s3cret" not in text
    assert any(e["event"] == "sink_delivery_failed_retrying" for e in logs)
    assert any(e["event"] == "sink_condition" for e in logs)


def test_partial_success_is_counted_not_retried():
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
    resp = ExportLogsServiceResponse()
    resp.partial_success.rejected_log_records = 1
    resp.partial_success.error_message = "invalid"
    exp = ScriptedTransport([Answer(True, body=resp.SerializeToString())])
    sink = make(exp)
    sink.send(1, b"", record(1))
    sink.flush()
    assert wait_for(lambda: sink.acked() == 1)
    assert exp.calls == 1 and metric(sink, "kee_otlp_records_rejected") == 1
    sink.close(5)


def test_non_contiguous_seqs():
    exp = ScriptedTransport()
    sink = make(exp, batch_max_records=2)
    for seq in (3, 7, 8, 20):
        sink.send(seq, b"", record(seq))
    assert wait_for(lambda: sink.acked() == 20)
    sink.close(5)


def test_metrics_shape():
    sink = make(ScriptedTransport())
    sink.send(1, b"", record(1))
    sink.close(5)
    m = {(name, tuple(labels.items())): value for name, kind, doc, labels, value in sink.metrics()}
    assert m[("kee_records_emitted", (("sink", "otlp"),))] == 1
    assert m[("kee_otlp_exports", ())] == 1
    assert m[("kee_sink_in_flight_records", (("sink", "otlp"),))] == 0
    assert m[("kee_sink_fatal", (("sink", "otlp"),))] == 0
    for _name, kind, doc, _labels, _value in sink.metrics():
        assert kind in ("counter", "gauge") and doc


def test_ordered_acks_done_many():
    a = OrderedAcks()
    for seq in (3, 7, 8, 20):
        a.expect(seq, 10)
    a.done_many([7, 8], 20)
    assert a.watermark() == 2          # 3 still pending
    a.done_many([3], 10)
    assert a.watermark() == 19         # 20 pending
    a.done_many([20], 10)
    assert a.watermark() == 20 and a.in_flight() == 0 and a.bytes == 0 and a.confirmed == 4
