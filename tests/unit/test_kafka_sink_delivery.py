"""KafkaSink delivery logic against a scripted producer: acknowledgement only on a delivery report,
ordered watermark, retries (never drops), backpressure, BufferError, fatal conditions, producer reset,
redaction in logs. The real broker is exercised in tests/integration/test_kafka_sink.py."""
from __future__ import annotations

import json
import threading
import time

import pytest
from confluent_kafka import KafkaError
from structlog.testing import capture_logs

from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.settings import KafkaSettings
from exporter.sinks.kafka import KafkaSink, SinkInterrupted


class FakeMessage:
    """What a delivery report carries (confluent_kafka.Message): the value and key, the latency."""

    def __init__(self, topic, value, key, headers):
        self._topic, self._value, self._key = topic, value, key

    def value(self):
        return self._value

    def key(self):
        return self._key

    def topic(self):
        return self._topic

    def latency(self):
        return 0.001


class FakeProducer:
    """Queues produce() calls; poll() serves delivery reports as the test's `outcome(msg)` says:
    None -> delivered, a KafkaError -> failed, "hold" -> stays queued."""

    instances: list[FakeProducer] = []

    def __init__(self, conf):
        self.conf = conf
        self.lock = threading.Lock()
        self.queue = []
        self.produced = []          # every (topic, value, key, headers) handed to produce()
        self.delivered = []
        self.outcome = lambda m: None
        self.buffer_full = 0        # this many produce() calls raise BufferError
        self.purged = False
        FakeProducer.instances.append(self)

    def produce(self, topic, value=None, key=None, partition=-1, callback=None, on_delivery=None, timestamp=0,
                headers=None):  # confluent_kafka's positional order
        on_delivery = callback or on_delivery
        with self.lock:
            if self.buffer_full:
                self.buffer_full -= 1
                raise BufferError("Local: Queue full")
            m = (topic, value, key, headers)
            self.produced.append(m)
            self.queue.append((m, on_delivery))

    def poll(self, timeout=0):
        with self.lock:
            ready, keep = [], []
            for m, cb in self.queue:
                r = self.outcome(m)
                (keep if isinstance(r, str) else ready).append((m, cb, r))
            self.queue = [(m, cb) for m, cb, _ in keep]
        for m, cb, r in ready:
            if r is None:
                self.delivered.append(m)
            cb(r, FakeMessage(*m))
        if not ready:
            time.sleep(min(timeout, 0.01))
        return len(ready)

    def purge(self, **kw):
        self.purged = True

    def flush(self, timeout=None):
        return len(self.queue)


def rec(i, ns="default"):
    return {"type": "Warning", "reason": "BackOff", "cluster": "c1",
            "event": {"uid": f"uid-{i}", "namespace": ns}, "object": {"uid": f"obj-{i}"}}


def line(i):
    return b'{"n":%d}\n' % i


def make(**kw):
    FakeProducer.instances.clear()
    kw.setdefault("retry_backoff_initial_ms", 10)
    kw.setdefault("retry_backoff_max_ms", 50)
    stats = Stats()
    sink = KafkaSink(KafkaSettings(enabled=True, brokers="fake:9092", **kw), cluster="c1", stats=stats,
                     producer_factory=FakeProducer)
    return sink, FakeProducer.instances[-1], stats


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    raise AssertionError("condition not reached")


def metric(sink, name, **labels):
    for n, _kind, _doc, lab, value in sink.metrics():
        if n == name and all(lab.get(k) == v for k, v in labels.items()):
            return value
    raise KeyError(name)


def test_value_key_headers_topic():
    sink, p, _ = make(topic="events.{event.namespace}")
    try:
        sink.send(1, line(1), rec(1, "kube-system"))
        wait_for(lambda: sink.acked() == 1)
        topic, value, key, headers = p.delivered[0]
        assert topic == "events.kube-system"
        assert value == b'{"n":1}'  # the JSON line without its newline
        assert key == b"uid-1"
        assert dict(headers) == {"type": b"Warning", "reason": b"BackOff", "namespace": b"kube-system",
                                 "cluster": b"c1"}
    finally:
        sink.close(1)


def test_headers_off_and_key_none():
    sink, p, _ = make(headers=False, key="none")
    try:
        sink.send(1, line(1), rec(1))
        wait_for(lambda: sink.acked() == 1)
        assert p.delivered[0][2] is None and p.delivered[0][3] is None
    finally:
        sink.close(1)


def test_watermark_waits_for_the_oldest_undelivered_record():
    sink, p, _ = make()
    try:
        p.outcome = lambda m: "hold" if m[1] == b'{"n":2}' else None
        sink.send(1, line(1), rec(1))
        sink.flush()             # the source is about to wait: 1 is acknowledged as soon as it is reported
        for i in (2, 3, 5):      # seqs need not be contiguous (other sinks' filters)
            sink.send(i, line(i), rec(i))
        wait_for(lambda: len(p.delivered) == 3)
        time.sleep(0.3)          # the poller has sealed the group of 2, 3, 5 meanwhile
        assert sink.acked() == 1                 # 3 and 5 delivered, 2 not: never past 2
        p.outcome = lambda m: None
        wait_for(lambda: sink.acked() == 5)
    finally:
        sink.close(1)


def test_failed_delivery_is_retried_never_acknowledged_never_dropped():
    sink, p, stats = make()
    try:
        fails = {"n": 3}

        def outcome(m):
            if m[1] == b'{"n":1}' and fails["n"]:
                fails["n"] -= 1
                return KafkaError(KafkaError._MSG_TIMED_OUT)
            return None
        p.outcome = outcome
        sink.send(1, line(1), rec(1))
        sink.send(2, line(2), rec(2))
        wait_for(lambda: sink.acked() == 2)
        assert [m[1] for m in p.produced].count(b'{"n":1}') == 4   # first try + 3 retries
        assert metric(sink, "kee_sink_retries") == 3
        assert metric(sink, "kee_kafka_failed") == 3
        assert metric(sink, "kee_kafka_delivered") == 2
        assert stats.errors[("kafka", "msg_timed_out")] == 3
        assert metric(sink, "kee_sink_in_flight_records") == 0
        assert metric(sink, "kee_kafka_delivery_latency_seconds") > 0
    finally:
        sink.close(1)


def test_retry_backoff_grows():
    sink, p, _ = make(retry_backoff_initial_ms=40, retry_backoff_max_ms=160)
    try:
        times = []

        def outcome(m):
            times.append(time.monotonic())
            return KafkaError(KafkaError._TRANSPORT) if len(times) < 5 else None
        p.outcome = outcome
        sink.send(1, line(1), rec(1))
        wait_for(lambda: sink.acked() == 1)
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # 40 ms, 80, 160, 160 (capped), each with jitter in [d/2, d]: the third gap is always above the first
        assert 0.018 <= gaps[0] < 0.1 and gaps[2] >= 0.075 and gaps[2] > gaps[0]
        assert max(gaps) < 0.5                          # capped
    finally:
        sink.close(1)


def test_backpressure_blocks_send_until_records_are_delivered():
    sink, p, _ = make(max_in_flight_records=3)
    try:
        p.outcome = lambda m: "hold"
        for i in range(1, 4):
            sink.send(i, line(i), rec(i))
        done = threading.Event()
        t = threading.Thread(target=lambda: (sink.send(4, line(4), rec(4)), done.set()), daemon=True)
        t.start()
        assert not done.wait(0.3)                       # blocked: 3 in flight
        assert metric(sink, "kee_sink_in_flight_records") == 3
        assert sink.acked() == 0
        p.outcome = lambda m: None
        assert done.wait(2)
        wait_for(lambda: sink.acked() == 4)
        assert metric(sink, "kee_sink_backpressure_seconds") > 0.2
    finally:
        sink.close(1)


def test_byte_bound():
    sink, p, _ = make(max_in_flight_bytes=20)
    try:
        p.outcome = lambda m: "hold"
        sink.send(1, line(1), rec(1))   # 8 bytes
        sink.send(2, line(2), rec(2))   # 16: a third would be 24 > 20
        done = threading.Event()
        threading.Thread(target=lambda: (sink.send(3, line(3), rec(3)), done.set()), daemon=True).start()
        assert not done.wait(0.3)
        assert sink.in_flight() == (2, 16)
        p.outcome = lambda m: None
        assert done.wait(2)
    finally:
        sink.close(1)


def test_a_record_larger_than_the_byte_bound_still_goes_alone():
    sink, p, _ = make(max_in_flight_bytes=4)
    try:
        sink.send(1, line(1), rec(1))
        wait_for(lambda: sink.acked() == 1)
    finally:
        sink.close(1)


def test_interrupt_wakes_a_blocked_send():
    sink, p, _ = make(max_in_flight_records=1)
    p.outcome = lambda m: "hold"
    sink.send(1, line(1), rec(1))
    err = []

    def blocked():
        try:
            sink.send(2, line(2), rec(2))
        except SinkInterrupted as e:
            err.append(e)
    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    time.sleep(0.2)
    sink.interrupt()
    t.join(2)
    assert err and sink.acked() == 0
    with pytest.raises(SinkFatal):
        sink.close(0.2)


def test_buffer_error_is_polled_and_retried():
    sink, p, _ = make()
    try:
        p.buffer_full = 5
        sink.send(1, line(1), rec(1))
        wait_for(lambda: sink.acked() == 1)
        assert len(p.produced) == 1
    finally:
        sink.close(1)


@pytest.mark.parametrize("code,kind,setting", [
    (KafkaError.UNKNOWN_TOPIC_OR_PART, "unknown_topic", "sinks.kafka.topic"),
    (KafkaError._UNKNOWN_TOPIC, "unknown_topic", "sinks.kafka.topic"),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, "topic_authorization", "sinks.kafka.topic"),
    (KafkaError.CLUSTER_AUTHORIZATION_FAILED, "cluster_authorization", "enable.idempotence"),
    (KafkaError.MSG_SIZE_TOO_LARGE, "message_too_large", "records.max_record_bytes"),
    (KafkaError.INVALID_RECORD, "invalid_record", "sinks.kafka.key"),
])
def test_fatal_delivery_errors_are_loud_counted_and_held(code, kind, setting):
    sink, p, stats = make()
    try:
        state = {"fail": True}
        p.outcome = lambda m: KafkaError(code) if state["fail"] else None
        with capture_logs() as logs:
            sink.send(1, line(1), rec(1))
            wait_for(lambda: metric(sink, "kee_sink_retries") >= 3)
        assert sink.acked() == 0
        assert metric(sink, "kee_sink_condition", condition=kind) == 1
        assert stats.errors[("kafka", kind)] >= 3
        loud = [e for e in logs if e["event"] == "sink_condition"]
        assert len(loud) == 1                       # once, then every 30 s: loud, not a flood
        assert loud[0]["log_level"] == "error" and loud[0]["condition"] == kind and setting in loud[0]["setting"]
        state["fail"] = False                       # somebody created the topic / granted the ACL
        wait_for(lambda: sink.acked() == 1)
        sink.send(2, line(2), rec(2))
        wait_for(lambda: sink.acked() == 2)
    finally:
        sink.close(1)


def test_fatal_condition_clears_after_recovery(monkeypatch):
    import exporter.sinks.delivery as d
    monkeypatch.setattr(d, "CLEAR_AFTER", 0.05)
    sink, p, _ = make()
    try:
        state = {"fail": True}
        p.outcome = lambda m: KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED) if state["fail"] else None
        sink.send(1, line(1), rec(1))
        wait_for(lambda: sink.condition is not None)
        state["fail"] = False
        with capture_logs() as logs:
            wait_for(lambda: sink.condition is None)
        assert any(e["event"] == "sink_recovered" for e in logs)
        assert metric(sink, "kee_sink_condition", condition="topic_authorization") == 0
    finally:
        sink.close(1)


def test_authentication_error_from_the_client_names_the_setting_without_the_secret():
    FakeProducer.instances.clear()
    stats = Stats()
    sink = KafkaSink(KafkaSettings(enabled=True, brokers="fake:9092", secrets_from_env={"sasl.password": "PW"},
                                   config={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                           "sasl.username": "kee"}),
                     stats=stats, producer_factory=FakeProducer, env={"PW": "s3cr3t-pw"})
    p = FakeProducer.instances[-1]
    try:
        p.outcome = lambda m: "hold"
        assert p.conf["sasl.password"] == "s3cr3t-pw"
        with capture_logs() as logs:
            sink.send(1, line(1), rec(1))
            p.conf["error_cb"](KafkaError(KafkaError._AUTHENTICATION,
                                          "SASL authentication error: Authentication failed for s3cr3t-pw"))
            for _ in range(5):  # librdkafka repeats a failing connection's line: logged once per 30 s
                p.conf["logger"].log(40, "%s [%s] %s", "FAIL", "producer-1", "sasl.password=s3cr3t-pw rejected")
        loud = [e for e in logs if e["event"] == "sink_condition"]
        assert loud and loud[0]["condition"] == "authentication" and "sasl.password" in loud[0]["setting"]
        assert "s3cr3t-pw" not in repr(logs)
        assert "***" in loud[0]["error"]
        assert len([e for e in logs if e["event"] == "librdkafka"]) == 1
        assert metric(sink, "kee_sink_condition", condition="authentication") == 1
        assert stats.errors[("kafka", "authentication")] == 1
        assert sink.acked() == 0
        with capture_logs() as logs, pytest.raises(SinkFatal) as e:
            sink.close(0.2)
        assert "sasl.password" in str(e.value) and "s3cr3t-pw" not in str(e.value)
        assert any(x["event"] == "sink_undelivered_at_close" and x["records"] == 1 for x in logs)
        assert sink.acked() == 0
    finally:
        sink._stop = True


def test_producer_fatal_error_replaces_the_producer_and_resends_pending():
    sink, p, _ = make()
    try:
        p.outcome = lambda m: "hold"
        for i in (1, 2, 3):
            sink.send(i, line(i), rec(i))
        p.conf["error_cb"](KafkaError(KafkaError._FATAL, "idempotence broken", fatal=True))
        wait_for(lambda: len(FakeProducer.instances) == 2)
        p2 = FakeProducer.instances[-1]
        assert p.purged
        wait_for(lambda: sink.acked() == 3)
        assert [m[1] for m in p2.delivered] == [line(i)[:-1] for i in (1, 2, 3)]
        # the old producer's late reports are ignored (the records were produced again)
        p.outcome = lambda m: KafkaError(KafkaError._PURGE_QUEUE)
        p.poll(0)
        assert metric(sink, "kee_kafka_failed") == 0
        assert metric(sink, "kee_kafka_producer_resets") == 1
    finally:
        sink.close(1)


def test_close_delivers_in_flight_and_retries_without_waiting_for_backoff():
    sink, p, _ = make(retry_backoff_initial_ms=60000, retry_backoff_max_ms=60000)
    state = {"n": 0}

    def outcome(m):
        state["n"] += 1
        return KafkaError(KafkaError._TRANSPORT) if state["n"] == 1 else None
    p.outcome = outcome
    sink.send(1, line(1), rec(1))
    wait_for(lambda: state["n"] == 1)
    t0 = time.monotonic()
    sink.close(5)
    assert sink.acked() == 1 and time.monotonic() - t0 < 2


def test_many_records_out_of_order_reports():
    sink, p, _ = make(max_in_flight_records=50)
    try:
        import random
        rnd = random.Random(7)
        p.outcome = lambda m: None if rnd.random() < 0.5 else "hold"
        for i in range(1, 501):
            sink.send(i, line(i), rec(i))
            w = sink.acked()
            assert w < i + 1
        wait_for(lambda: sink.acked() == 500)
        assert sorted(m[1] for m in p.delivered) == sorted(line(i)[:-1] for i in range(1, 501))
    finally:
        sink.close(1)


def test_a_failed_record_leaves_its_group_alone():
    """Reports come per group of records; a failure report is matched to its record (by value and key): only
    that record is produced again, its neighbours are acknowledged once, without duplicates."""
    sink, p, stats = make()
    try:
        failed_once = []

        def outcome(m):
            if m[1] == line(37)[:-1] and not failed_once:
                failed_once.append(m)
                return KafkaError(KafkaError._MSG_TIMED_OUT)
            return None
        p.outcome = outcome
        for i in range(1, 101):
            sink.send(i, line(i), rec(i))
        sink.flush()
        wait_for(lambda: sink.acked() == 100)
        produced = [m[1] for m in p.produced]
        assert produced.count(line(37)[:-1]) == 2
        assert sorted(set(produced)) == sorted(line(i)[:-1] for i in range(1, 101)) and len(produced) == 101
        assert metric(sink, "kee_kafka_failed") == 1 and metric(sink, "kee_kafka_delivered") == 100
        assert metric(sink, "kee_kafka_delivery_latency_seconds") > 0
    finally:
        sink.close(1)


def record_line(i, ns="default"):
    """A record's line as the pipeline hands it over: the record's JSON and a newline."""
    return json.dumps(rec(i, ns), separators=(",", ":")).encode() + b"\n"


def test_a_record_failed_inside_a_group_goes_again_with_its_topic_key_and_headers():
    """A group keeps its records' values only: the record produced again gets the topic, key and headers
    derived from its value, the same as the first time, and is acknowledged only once delivered."""
    sink, p, _ = make(topic="events.{event.namespace}")
    try:
        state = {"failed": 0, "hold": True}

        def outcome(m):
            if m[1] == record_line(5, "ns-5")[:-1]:
                if not state["failed"]:
                    state["failed"] += 1
                    return KafkaError(KafkaError._MSG_TIMED_OUT)
                if state["hold"]:
                    return "hold"
            return None
        p.outcome = outcome
        for i in range(1, 11):
            sink.send(i, record_line(i, f"ns-{i}"), rec(i, f"ns-{i}"))
        sink.flush()
        wait_for(lambda: sink.acked() == 4 and len(p.produced) == 11)
        time.sleep(0.2)
        assert sink.acked() == 4        # 6..10 delivered, 5 retried and not yet delivered: never past it
        first, again = [m for m in p.produced if m[1] == record_line(5, "ns-5")[:-1]]
        assert again == first == ("events.ns-5", record_line(5, "ns-5")[:-1], b"uid-5", again[3])
        assert dict(again[3]) == {"type": b"Warning", "reason": b"BackOff", "namespace": b"ns-5", "cluster": b"c1"}
        state["hold"] = False
        wait_for(lambda: sink.acked() == 10)
        assert metric(sink, "kee_kafka_delivered") == 10 and sink.in_flight() == (0, 0)
    finally:
        sink.close(1)


def test_a_record_confirmed_on_its_own_before_its_group_is_sealed_counts_once():
    """A record of the open group fails and its retry is delivered before the group is sealed (counted in
    flight): the watermark still waits for the group, and the counts end at zero."""
    sink, p, _ = make(retry_backoff_initial_ms=1, retry_backoff_max_ms=1)
    try:
        state = {"failed": False}

        def outcome(m):
            if m[1] == line(1)[:-1] and not state["failed"]:
                state["failed"] = True
                return KafkaError(KafkaError._MSG_TIMED_OUT)
            return None if state["failed"] else "hold"
        p.outcome = outcome
        sink.send(1, line(1), rec(1))
        sink.send(2, line(2), rec(2))          # no flush: the group stays open until the poller seals it
        wait_for(lambda: sink.acked() == 2)
        assert [m[1] for m in p.produced].count(line(1)[:-1]) == 2
        assert metric(sink, "kee_kafka_delivered") == 2 and sink.in_flight() == (0, 0)
    finally:
        sink.close(1)


def test_a_record_refused_by_a_full_queue_keeps_its_place_in_the_order():
    """A record librdkafka's full queue refused goes on its own, between the group before it and the
    one after: the watermark never passes it before it is delivered."""
    sink, p, _ = make()
    try:
        p.outcome = lambda m: "hold" if m[1] == line(3)[:-1] else None
        sink.send(1, line(1), rec(1))
        sink.send(2, line(2), rec(2))
        p.buffer_full = 1
        sink.send(3, line(3), rec(3))          # refused once, then produced on its own
        sink.send(4, line(4), rec(4))
        sink.flush()
        wait_for(lambda: sink.acked() == 2 and len(p.delivered) == 3)
        time.sleep(0.2)
        assert sink.acked() == 2
        p.outcome = lambda m: None
        wait_for(lambda: sink.acked() == 4)
        assert sink.in_flight() == (0, 0)
    finally:
        sink.close(1)


def test_the_bound_counts_the_open_group():
    """Records of the open group are counted in flight when it is sealed, but the bound counts them at once:
    the third record waits although no group was sealed yet."""
    sink, p, _ = make(max_in_flight_records=2)
    try:
        p.outcome = lambda m: "hold"
        sink.send(1, line(1), rec(1))
        sink.send(2, line(2), rec(2))
        done = threading.Event()
        threading.Thread(target=lambda: (sink.send(3, line(3), rec(3)), done.set()), daemon=True).start()
        assert not done.wait(0.3)
        assert len(p.produced) == 2 and sink.in_flight() == (2, 16)
        p.outcome = lambda m: None
        assert done.wait(2)
        wait_for(lambda: sink.acked() == 3)
    finally:
        sink.close(1)
