"""The OTLP sink writes the same bytes from a record's struct as from its dict (issue 16, goal 4).

With no filter, enrichment or count_delta, the pipeline hands the OTLP sink the record's struct
(wire.Record, Sink.reads_struct) and builds no dict; otherwise the dict. Generated Events, odd
values and all, must come out as the same protobuf bytes either way, through the encoder and
through a whole pipeline (with a line-only sink beside it, which still gets the line and no dict).

Fixed budget: derandomized, a bounded number of examples, no per-example deadline (noisy CI machine).
"""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from exporter import wire
from exporter.metrics import Stats
from exporter.pipeline import NO_RECORD, Pipeline
from exporter.records import normalise, record
from exporter.settings import OtlpSettings
from exporter.sinks.otlp import Answer, Encoder, OtlpSink, static_resource
from tests.unit.test_records_struct_encoding import BUDGET, _Lines, event

OBSERVED = "2026-12-02T04:00:00.000001Z"


@BUDGET
@given(event, st.booleans(), st.none() | st.text(max_size=8), st.sampled_from([8, 64, 8192]))
def test_the_struct_encodes_to_the_protobuf_of_the_dict(obj, update, cluster, max_message_bytes):
    ev = wire.event(obj)
    as_dict = normalise(ev, update, cluster=cluster, max_message_bytes=max_message_bytes, observed=OBSERVED)
    rec = record(ev, update, cluster, max_message_bytes, OBSERVED)
    enc = Encoder(static_resource(cluster, {"env": "prod"}, {}))
    want = enc.encode_general(as_dict)
    assert enc.fast(as_dict) == want
    assert enc.struct(rec) == want


def test_long_values_take_the_computed_prefixes_from_the_struct_too():
    obj = {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e" * 700, "uid": "u" * 200,
                                                      "resourceVersion": "9"},
           "involvedObject": {"kind": "Pod", "name": "n" * 5000, "namespace": "ns"},
           "reason": "R", "message": "m" * 5000 + "\ud800", "count": 3, "reportingInstance": "i" * 513}
    for o in (obj, {**obj, "message": "m" * 5000}):
        ev = wire.event(o)
        rec = record(ev, False, "c", 8192, OBSERVED)
        enc = Encoder(static_resource("c", None, {}))
        assert enc.struct(rec) == enc.encode_general(normalise(ev, False, cluster="c", max_message_bytes=8192,
                                                               observed=OBSERVED))


class _Requests:
    """A transport that keeps every request body and answers success."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def export(self, payload: bytes) -> Answer:
        self.bodies.append(payload)
        return Answer(True)

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        pass


def _run(objs: list, *, predicate=None, beside: _Lines | None = None) -> tuple[bytes, Pipeline]:
    transport = _Requests()
    sink = OtlpSink(OtlpSettings(enabled=True, endpoint="http://127.0.0.1:1"), cluster="c", stats=Stats(), env={},
                    transport=transport)
    p = Pipeline([sink] + ([beside] if beside else []), stats=Stats(), live=False, predicate=predicate,
                 cluster="c")
    p.observed = OBSERVED
    s = p.stream("k", None)
    for o in objs:
        p.handle(s, "ADDED", wire.event(o))
    sink.close(10)
    assert sink.acked() == len(objs)
    return b"".join(transport.bodies), p


@BUDGET
@given(st.lists(event, min_size=1, max_size=4))
def test_the_pipeline_sends_the_same_requests_with_the_struct_and_with_the_dict(objs):
    by_struct, p = _run(objs)
    assert p._struct_sends is not None  # the plain path: the OTLP sink is handed structs
    by_dict, p = _run(objs, predicate=lambda rec: True)  # a filter: the dict is built
    assert p._struct_sends is None
    assert by_struct == by_dict
    lines = _Lines(reads=False)
    beside, p = _run(objs, beside=lines)
    assert p._struct_sends is not None and beside == by_dict
    assert len(lines.got) == len(objs) and all(rec is NO_RECORD for _, rec in lines.got)
