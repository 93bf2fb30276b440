"""Properties of the input path over generated input (hypothesis): whatever the bytes, no exception escapes
the decoder, the normaliser or replay; every valid watch line comes out exactly once; every record validates
against schemas/record.v1.schema.json and stays within records.max_record_bytes.

Fixed budget: derandomized (the same examples on every run, so CI is reproducible), a bounded number
of examples each, no per-example deadline (the shared CI machine is noisy).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import wire
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.records import MIN_RECORD_BYTES
from exporter.sources import replay

ROOT = Path(__file__).parents[2]
VALIDATOR = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.v1.schema.json").read_text()))
LIMIT = MIN_RECORD_BYTES  # the smallest allowed maximum: the bounds work hardest here

BUDGET = settings(max_examples=120, deadline=None, derandomize=True, print_blob=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

def dumps(value: object) -> bytes:
    """JSON text of a generated value (the stdlib: integers beyond 64 bits too)."""
    return json.dumps(value, ensure_ascii=False).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 80), max_value=2 ** 80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
long_text = st.builds(lambda piece, n: piece * n, st.text(min_size=1, max_size=4), st.integers(0, 6000))
times = st.sampled_from(["2026-11-29T10:00:00Z", "2026-11-29T10:00:00.123456Z", "2026-11-29T10:00:00+05:30",
                         "yesterday", "1764410400", "2026-13-45T99:00:00Z", "2026-11-29 10:00:00", ""])
text_fields = ["reason", "action", "message", "note", "type", "reportingComponent", "reportingController",
               "reportingInstance"]
odd_fields = text_fields + ["count", "deprecatedCount", "series", "involvedObject", "regarding", "related",
                            "source", "deprecatedSource", "lastTimestamp", "firstTimestamp", "eventTime",
                            "deprecatedLastTimestamp", "apiVersion", "eventTime"]


@st.composite
def valid_line(draw, i: int) -> bytes:
    """A watch line that must come out as exactly one record (uid valid-<i>), odd values and all."""
    api = draw(st.sampled_from(["v1", "events.k8s.io/v1"]))
    obj: dict = {"kind": "Event", "apiVersion": api,
                 "metadata": {"uid": f"valid-{i}", "resourceVersion": str(1000 + i),
                              "name": draw(st.text(max_size=20) | long_text),
                              "creationTimestamp": draw(times)},
                 "reason": draw(st.text(max_size=20)), "lastTimestamp": draw(times)}
    for field in draw(st.lists(st.sampled_from(text_fields), max_size=3)):
        obj[field] = draw(long_text)
    for field in draw(st.lists(st.sampled_from(odd_fields), max_size=3)):
        obj[field] = draw(json_values)  # a value of any type: nulled where the type is wrong, never lost
    if draw(st.booleans()):
        obj["metadata"]["resourceVersion"] = draw(json_values)
    etype = draw(st.sampled_from(["ADDED", "MODIFIED"]))
    indent = draw(st.sampled_from([None, None, None, 2, 4]))  # some pretty-printed over many lines, as kubectl does
    return json.dumps({"type": etype, "object": obj}, ensure_ascii=False, indent=indent).encode()


junk = (st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))
        | json_values.map(dumps)
        | st.sampled_from([b"{", b"  {", b"}", b"[", b'{"type":"ADDED","object":{"kind":"Event"', b"{}",
                           b'{"type":"ADDED","object":{"kind":"Pod"}}', b'"', b"\\", b"\xff\xfe",
                           b"[" * 3000 + b"]" * 3000, b'{"a":' + b"[" * 1100 + b"]" * 1100 + b"}"]))


@st.composite
def stream(draw) -> tuple[list[bytes], int]:
    """Valid lines with junk between them (one junk item may hold several lines); returns (lines, n_valid)."""
    n = draw(st.integers(1, 6))
    out: list[bytes] = []
    for i in range(n):
        out.extend(draw(st.lists(junk, max_size=2)))
        out.append(draw(valid_line(i)))
    out.extend(draw(st.lists(junk, max_size=2)))
    return out, n


class Sink:
    name = "check"

    def __init__(self) -> None:
        self.uids: list[str | None] = []
        self.last = 0

    def send(self, seq, line, record):
        assert len(line) <= LIMIT, len(line)
        VALIDATOR.validate(orjson.loads(line))
        self.uids.append(record["event"]["uid"])
        self.last = seq

    def flush(self):
        pass

    def acked(self):
        return self.last

    def close(self, timeout):
        pass


@settings(BUDGET, max_examples=200)
@given(stream())
def test_replay_of_valid_lines_among_junk_emits_each_valid_line_exactly_once(data):
    lines, n = data
    sink = Sink()
    replay.run(Pipeline([sink], stats=Stats(), live=False, max_record_bytes=LIMIT, max_message_bytes=8192),
               io.BytesIO(b"\n".join(lines) + b"\n"))
    valid = [u for u in sink.uids if u and u.startswith("valid-")]
    assert valid == [f"valid-{i}" for i in range(n)]


@BUDGET
@given(st.binary(max_size=300) | json_values.map(dumps))
def test_the_decoder_answers_an_envelope_or_bad_input_and_nothing_else(raw):
    try:
        env, nulled = wire.decode_line(raw)
    except wire.BadInput as exc:
        assert exc.kind and exc.detail is not None
        return
    assert isinstance(env.type, str) and isinstance(nulled, tuple)


@BUDGET
@given(st.dictionaries(st.sampled_from(odd_fields + ["metadata", "kind"]), json_values | long_text, max_size=8))
def test_any_object_normalises_to_a_valid_bounded_record(obj):
    sink = Sink()
    p = Pipeline([sink], stats=Stats(), live=False, max_record_bytes=LIMIT)
    p.handle(p.stream("k", None), "ADDED", wire.event(obj))
    assert len(sink.uids) == 1
