"""The pipeline's two encodings of a record write the same bytes (issue 16, goal 5).

With no filter, enrichment or count_delta and only sinks that ship the line (stdout), the
pipeline encodes the record struct (wire.Record) with msgspec and builds no dict; otherwise it
builds the dict (records.normalise) and encodes it with orjson. Generated Events, odd values and
all, must come out byte for byte the same either way, and the dict must be the same as the struct.

Fixed budget: derandomized, a bounded number of examples, no per-example deadline (noisy CI machine).
"""
from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import wire
from exporter.metrics import Stats
from exporter.pipeline import NO_RECORD, Pipeline
from exporter.records import MIN_RECORD_BYTES, normalise, record
from exporter.sinks.stdout import StdoutSink

BUDGET = settings(max_examples=300, deadline=None, derandomize=True, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

text = st.text(max_size=12) | st.sampled_from(["\x00\x1f\u2028\u00e9\"\\/\t\n", "\U0001f600" * 3])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
times = st.none() | st.sampled_from(["2026-11-29T10:00:00Z", "2026-11-29T10:00:00.123456789Z",
                                     "2026-11-29T10:00:00+05:30", "2026-11-29t10:00:00z", "yesterday",
                                     "2026-13-45T99:00:00Z", ""])
ref = st.fixed_dictionaries({}, optional={k: text | st.none() for k in
                                          ("kind", "name", "namespace", "uid", "apiVersion", "resourceVersion",
                                           "fieldPath")})
event = st.fixed_dictionaries({"kind": st.just("Event")}, optional={
    "apiVersion": st.sampled_from(["v1", "events.k8s.io/v1", "other"]),
    "metadata": st.fixed_dictionaries({}, optional={"uid": text, "resourceVersion": text, "name": text,
                                                    "namespace": text, "creationTimestamp": times}),
    "type": st.sampled_from(["Normal", "Warning", "error", "CRITICAL", "", "Odd"]) | text,
    "reason": text, "action": text, "message": json_values, "note": json_values,
    "involvedObject": ref, "regarding": ref, "related": ref,
    "source": st.fixed_dictionaries({}, optional={"component": text, "host": text}),
    "deprecatedSource": st.fixed_dictionaries({}, optional={"component": text, "host": text}),
    "firstTimestamp": times, "lastTimestamp": times, "eventTime": times, "deprecatedFirstTimestamp": times,
    "deprecatedLastTimestamp": times, "count": st.integers(-5, 2 ** 64), "deprecatedCount": st.integers(-5, 9),
    "series": st.fixed_dictionaries({}, optional={"count": st.integers(0, 9), "lastObservedTime": times}),
    "reportingComponent": text, "reportingController": text, "reportingInstance": text,
})


@BUDGET
@given(event, st.booleans(), st.none() | text, st.sampled_from([8, 64, 8192]))
def test_the_struct_encodes_to_the_bytes_of_the_dict(obj, update, cluster, max_message_bytes):
    ev = wire.event(obj)
    observed = "2026-12-02T04:00:00.000001Z"
    as_dict = normalise(ev, update, cluster=cluster, max_message_bytes=max_message_bytes, observed=observed)
    rec = record(ev, update, cluster, max_message_bytes, observed)
    assert wire.record_dict(rec) == as_dict
    assert list(wire.record_dict(rec)) == list(as_dict)  # the key order too
    assert wire.encode_record(rec) + b"\n" == orjson.dumps(as_dict, option=orjson.OPT_APPEND_NEWLINE)


class _Lines(StdoutSink):
    """A stdout sink that keeps what it was handed (line and record) instead of writing it."""

    def __init__(self, reads: bool) -> None:
        super().__init__(buffer_bytes=1 << 30)
        self.reads_record = reads  # type: ignore[misc]
        self.got: list[tuple[bytes, dict]] = []

    def send(self, seq: int, line: bytes, record: dict) -> None:
        self.got.append((line, record))


@BUDGET
@given(st.lists(event, min_size=1, max_size=4), st.sampled_from([MIN_RECORD_BYTES, 983040]))
def test_the_pipeline_writes_the_same_lines_with_and_without_the_dict(objs, max_record_bytes):
    out = []
    for reads in (False, True):
        sink = _Lines(reads)
        p = Pipeline([sink], stats=Stats(), live=False, max_record_bytes=max_record_bytes)
        p.observed = "2026-12-02T04:00:00.000001Z"
        s = p.stream("k", None)
        for o in objs:
            p.handle(s, "ADDED", wire.event(o))
        out.append(sink.got)
        assert all((rec is NO_RECORD) != reads or len(line) > 16000 for line, rec in sink.got)
    assert [line for line, _ in out[0]] == [line for line, _ in out[1]]
    assert len(out[0]) == len(objs)


class _Recorded:
    """A producer that keeps what it is handed and reports every record delivered at the next poll."""

    def __init__(self, conf: dict) -> None:
        self.got: list[tuple] = []
        self._reports: list = []

    def produce(self, topic, value=None, key=None, partition=-1, callback=None, on_delivery=None, timestamp=0,
                headers=None):
        self.got.append((topic, value, key, headers))
        self._reports.append(callback or on_delivery)

    def poll(self, timeout=0):
        reports, self._reports = self._reports, []
        for cb in reports:
            cb(None, None)
        return len(reports)

    def purge(self, **kw):
        pass

    def flush(self, timeout=None):
        return 0

    def __len__(self):
        return 0


@settings(max_examples=60, deadline=None, derandomize=True, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(event, min_size=1, max_size=4), st.sampled_from(["event_uid", "object_uid"]))
def test_the_kafka_sink_produces_the_same_messages_from_the_struct_as_from_the_dict(objs, key):
    """The Kafka sink takes the record as its struct (Sink.reads_struct: no dict built): topic (a template
    over nested fields), value, key and headers are those it derives from the dict."""
    from exporter.settings import KafkaSettings
    from exporter.sinks.kafka import KafkaSink
    out = []
    for with_dict, beside in ((False, None), (False, False), (True, True)):
        producers: list[_Recorded] = []
        sink = KafkaSink(KafkaSettings(enabled=True, brokers="fake:9092", key=key,
                                       topic="k8s.{event.namespace}.{object.kind}.{type}"), cluster="c1",
                         producer_factory=lambda conf, made=producers: made.append(_Recorded(conf)) or made[-1])
        # beside it: nothing, a sink that reads no record (stdout: the struct path too) or one that reads the
        # dict (the dict path)
        other = _Lines(beside) if beside is not None else None
        sinks = [sink] if other is None else [sink, other]
        p = Pipeline(sinks, stats=Stats(), live=False, cluster="c1")
        assert p._plain is not with_dict
        p.observed = "2026-12-02T04:00:00.000001Z"
        s = p.stream("k", None)
        for o in objs:
            p.handle(s, "ADDED", wire.event(o))
        sink.close(2)
        out.append(producers[0].got)
        if other is not None and not beside:  # the sink beside that reads no record still gets none
            assert all(rec is NO_RECORD or len(line) > 16000 for line, rec in other.got)
    assert out[0] == out[1] == out[2] and len(out[0]) == len(objs)
