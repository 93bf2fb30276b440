"""OtlpSink delivery logic with a scripted exporter: acks only on SUCCESS, retries, batching, backpressure, drain.

The real Collector tests are tests/integration/test_otlp_sink.py; these pin the
logic around export() without a network.
"""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.sinks import otlp
from exporter.settings import OtlpSettings
from exporter.sinks.otlp import OtlpSink

RESULT = {True: SimpleNamespace(name="SUCCESS"), False: SimpleNamespace(name="FAILURE")}


def record(i: int) -> dict:
    return {"timestamp": "2026-11-29T03:18:45Z", "observed_timestamp": "2026-11-29T03:18:46Z", "type": "Normal",
            "reason": "R", "action": None, "message": f"message {i}", "count": 1,
            "object": {"kind": "Pod", "name": f"p{i}", "namespace": "ns", "uid": f"u{i}"},
            "event": {"name": f"e{i}", "uid": f"eu{i}", "creation_timestamp": "2026-11-29T03:18:45Z"},
            "source_host": None, "reporting_controller": "c", "reporting_instance": None, "cluster": None}


class ScriptedExporter:
    """export() answers from a script (True/False/Exception), then SUCCESS; records what it got."""

    def __init__(self, script=(), gate: threading.Event | None = None):
        self.script = list(script)
        self.gate = gate
        self.batches: list[int] = []
        self.calls = 0
        self.shut = False

    def export(self, batch):
        if self.gate is not None:
            self.gate.wait(10)
        self.calls += 1
        outcome = self.script.pop(0) if self.script else True
        if isinstance(outcome, Exception):
            raise outcome
        if outcome:
            self.batches.append(batch.count)
        return RESULT[outcome]

    def shutdown(self):
        self.shut = True


def make(exporter, **kw) -> OtlpSink:
    cfg = OtlpSettings(enabled=True, endpoint="http://127.0.0.1:1", retry_backoff_initial_seconds=0.01,
                       retry_backoff_max_seconds=0.05, **kw)
    return OtlpSink(cfg, cluster="c", stats=Stats(), env={}, exporter=exporter)


def wait_for(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


def test_ack_only_after_success_and_retry_never_drops():
    exp = ScriptedExporter([False, RuntimeError("boom"), False])
    sink = make(exp, batch_max_records=10)
    for i in range(1, 11):
        sink.send(i, b"", record(i))
    assert wait_for(lambda: sink.acked() == 10)
    assert exp.calls == 4 and exp.batches == [10]
    assert sink.failures == {"failure": 2, "exception": 1} and sink.retries == 3
    assert sink.stats.errors == {("otlp", "failure"): 2, ("otlp", "exception"): 1}
    sink.close(5)
    assert exp.shut


def test_watermark_waits_for_failing_batch():
    gate = threading.Event()
    exp = ScriptedExporter([False] * 1000, gate=gate)
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
    exp = ScriptedExporter()
    sink = make(exp, batch_max_records=4, batch_timeout_seconds=0.2)
    for i in range(1, 10):
        sink.send(i, b"", record(i))
    assert wait_for(lambda: sink.acked() == 8)     # two full batches at once
    assert sink.acked() == 8
    assert wait_for(lambda: sink.acked() == 9, 2)   # the partial one after the linger time
    assert exp.batches == [4, 4, 1]
    sink.close(5)
    exp2 = ScriptedExporter()
    one = len(make(ScriptedExporter())._encoder.encode(record(1)))
    sink = make(exp2, batch_max_bytes=one * 3 + 1, batch_timeout_seconds=0.05)
    for i in range(1, 8):
        sink.send(i, b"", record(i))
    sink.close(5)
    assert exp2.batches == [3, 3, 1]


def test_lone_record_goes_after_linger_without_flush():
    exp = ScriptedExporter()
    sink = make(exp, batch_timeout_seconds=0.2)
    time.sleep(0.1)  # the worker is idle, waiting for a batch
    sink.send(1, b"", record(1))
    assert wait_for(lambda: sink.acked() == 1, 2)
    sink.close(5)


def test_flush_sends_partial_batch_at_once():
    exp = ScriptedExporter()
    sink = make(exp, batch_timeout_seconds=60)
    sink.send(1, b"", record(1))
    sink.flush()
    assert wait_for(lambda: sink.acked() == 1, 2)
    sink.close(5)


def test_backpressure_blocks_send():
    gate = threading.Event()
    exp = ScriptedExporter(gate=gate)
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
    assert sink.blocked == 1
    gate.set()
    assert done.wait(5)
    sink.close(5)
    assert sink.acked() == 5 and sum(exp.batches) == 5


def test_close_drains_everything():
    exp = ScriptedExporter([False, False])
    sink = make(exp, batch_max_records=100, batch_timeout_seconds=30)
    for i in range(1, 251):
        sink.send(i, b"", record(i))
    sink.close(10)
    assert sink.acked() == 250 and sum(exp.batches) == 250


def test_close_gives_up_after_timeout_without_acking():
    exp = ScriptedExporter([False] * 10_000)
    sink = make(exp)
    sink.send(1, b"", record(1))
    t0 = time.monotonic()
    with pytest.raises(SinkFatal):
        sink.close(0.5)
    assert time.monotonic() - t0 < 3
    assert sink.acked() == 0 and exp.shut


def test_lasting_auth_failure_becomes_fatal(monkeypatch):
    monkeypatch.setattr(otlp, "FATAL_AFTER_SECONDS", 0.2)
    sink = None

    class Unauthenticated(ScriptedExporter):
        def export(self, batch):
            self.calls += 1
            sink._fb.last_code, sink._fb.last_error = "UNAUTHENTICATED", "UNAUTHENTICATED: bad token"
            return RESULT[False] if self.calls < 30 else RESULT[True]
    exp = Unauthenticated()
    sink = make(exp)
    sink.send(1, b"", record(1))
    assert wait_for(lambda: sink.fatal is not None, 5)
    assert sink.fatal.setting == "sinks.otlp.headers" and sink.acked() == 0
    assert wait_for(lambda: sink.acked() == 1, 10)  # retries went on meanwhile
    sink.close(5)


def test_transient_failures_never_fatal(monkeypatch):
    monkeypatch.setattr(otlp, "FATAL_AFTER_SECONDS", 0.0)
    sink = make(ScriptedExporter([False] * 5))
    sink.send(1, b"", record(1))
    assert wait_for(lambda: sink.acked() == 1)
    assert sink.fatal is None
    sink.close(5)


def test_non_contiguous_seqs():
    exp = ScriptedExporter()
    sink = make(exp, batch_max_records=2)
    for seq in (3, 7, 8, 20):
        sink.send(seq, b"", record(seq))
    assert wait_for(lambda: sink.acked() == 20)
    sink.close(5)


def test_metrics_shape():
    sink = make(ScriptedExporter())
    sink.send(1, b"", record(1))
    sink.close(5)
    m = {(name, tuple(labels.items())): value for name, kind, doc, labels, value in sink.metrics()}
    assert m[("kee_records_emitted", (("sink", "otlp"),))] == 1
    assert m[("kee_otlp_exports", ())] == 1
    assert m[("kee_otlp_in_flight_records", ())] == 0
    for name, kind, doc, labels, value in sink.metrics():
        assert kind in ("counter", "gauge") and doc


def test_ordered_acks_done_many():
    from exporter.sinks.base import OrderedAcks
    a = OrderedAcks()
    for seq in (3, 7, 8, 20):
        a.expect(seq)
    a.done_many([7, 8])
    assert a.watermark() == 2          # 3 still pending
    a.done_many([3])
    assert a.watermark() == 19         # 20 pending
    a.done_many([20])
    assert a.watermark() == 20 and a.in_flight() == 0
