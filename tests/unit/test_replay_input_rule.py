"""Replay follows the input rule (docs/records.md, "Input"): a bad line is reported with its line number and
skipped, every good line after it comes out, wrong-typed values are nulled, decoding stays linear, the exit
code says when input was skipped."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import orjson
import pytest

from exporter import log
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.sources import replay

ROOT = Path(__file__).parents[2]
VALIDATOR = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.v1.schema.json").read_text()))


def envelope(uid: str, rv: int, etype: str = "ADDED", **fields) -> dict:
    obj = {"kind": "Event", "apiVersion": "v1", "metadata": {"uid": uid, "resourceVersion": str(rv)},
           "reason": "X", "type": "Warning", "lastTimestamp": "2026-11-29T10:00:00Z", **fields}
    return {"type": etype, "object": obj}


def line(uid: str, rv: int, **fields) -> bytes:
    return orjson.dumps(envelope(uid, rv, **fields)) + b"\n"


class MemorySink:
    name = "mem"

    def __init__(self, validate: bool = True) -> None:
        self.records: list[dict] = []
        self.last = 0
        self.validate = validate

    def send(self, seq, data, record):
        assert len(data) <= 983040
        if self.validate:
            VALIDATOR.validate(orjson.loads(data))
        self.records.append(record)
        self.last = seq

    def flush(self):
        pass

    def acked(self):
        return self.last

    def close(self, timeout):
        pass


@pytest.fixture
def logged(monkeypatch):
    """Every warning the exporter logs, as (event, fields)."""
    seen: list[tuple[str, dict]] = []
    monkeypatch.setattr(log, "warning", lambda event, **kw: seen.append((event, kw)))
    return seen


def run(data: bytes, validate: bool = True) -> tuple[list[dict], Stats, int]:
    sink, stats = MemorySink(validate), Stats()
    skipped = replay.run(Pipeline([sink], stats=stats, live=False), io.BytesIO(data))
    return sink.records, stats, skipped


def uids(records: list[dict]) -> list[str]:
    return [r["event"]["uid"] for r in records]


def cli(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", *args], input=stdin, capture_output=True, cwd=ROOT,
                          timeout=120)


# --- the issue's repro, end to end ---------------------------------------------------------

def test_the_issue_repro_a_wrong_typed_count_no_longer_swallows_the_next_line():
    p = cli("replay", "-", stdin=(
        b'{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"uid":"a","resourceVersion":"1"},'
        b'"count":"7"}}\n'
        b'{"type":"ADDED","object":{"kind":"Event","apiVersion":"v1","metadata":{"uid":"b","resourceVersion":"2"},'
        b'"reason":"X"}}\n'))
    recs = [orjson.loads(x) for x in p.stdout.splitlines()]
    assert [r["id"] for r in recs] == ["a:1", "b:2"]
    assert recs[0]["count"] == 1  # "7" was nulled, the event kept
    assert p.returncode == 0, p.stderr  # nothing was skipped
    nulled = [json.loads(x) for x in p.stderr.splitlines() if b"replay_values_nulled" in x]
    assert nulled and nulled[0]["line"] == 1 and nulled[0]["paths"] == ["$.object.count"]


def test_a_line_that_is_not_json_is_reported_with_its_line_number_and_the_exit_code_says_so():
    data = line("a", 1) + b'{"type":"ADDED","object":{"kind":"Event"\n' + line("b", 2) + line("c", 3)
    p = cli("replay", "-", stdin=data)
    assert [orjson.loads(x)["event"]["uid"] for x in p.stdout.splitlines()] == ["a", "b", "c"]
    assert p.returncode == replay.EXIT_SKIPPED == 4
    skipped = [json.loads(x) for x in p.stderr.splitlines() if b'"replay_input_skipped"' in x]
    assert [(s["line"], s["kind"]) for s in skipped] == [(2, "document_incomplete")]
    done = [json.loads(x) for x in p.stderr.splitlines() if b"replay_done" in x][0]
    assert done["skipped"] == 1 and done["decode_errors"] == 1


# --- wrong types are nulled, the event kept ----------------------------------------------------

@pytest.mark.parametrize("field,value", [("count", "7"), ("type", 3), ("reason", ["a"]), ("count", True),
                                         ("involvedObject", "pod/web"), ("lastTimestamp", 1764410400)])
def test_a_value_of_the_wrong_type_is_nulled_and_the_event_delivered(field, value, logged):
    recs, stats, skipped = run(line("a", 1, **{field: value}) + line("b", 2))
    assert uids(recs) == ["a", "b"] and skipped == 0
    assert stats.errors[("input", "value_nulled")] == 1
    assert [kw["line"] for ev, kw in logged if ev == "replay_values_nulled"] == [1]


def test_an_integer_resource_version_gives_a_hash_id_not_none():
    env = envelope("a", 1)
    env["object"]["metadata"]["resourceVersion"] = 7
    recs, _, _ = run(orjson.dumps(env) + b"\n" + line("b", 2))
    assert recs[0]["id"].startswith("hash:") and len(recs[0]["id"]) == 37
    assert recs[0]["event"]["resource_version"] is None and recs[1]["id"] == "b:2"


def test_a_count_of_2_to_the_64_is_clamped_not_a_traceback():
    recs, _, skipped = run(b'{"type":"ADDED","object":{"kind":"Event","metadata":{"uid":"a","resourceVersion":"1"},'
                           b'"count":18446744073709551616}}\n' + line("b", 2))
    assert [r["count"] for r in recs] == [2 ** 63 - 1, 1] and skipped == 0


def test_json_nested_1000_deep_is_no_traceback():
    deep = b"[" * 1000 + b"]" * 1000
    in_note = b'{"type":"ADDED","object":{"kind":"Event","metadata":{"uid":"a","resourceVersion":"1"},"message":' \
              + deep + b"}}\n"
    in_unknown = b'{"type":"ADDED","object":{"kind":"Event","metadata":{"uid":"c","resourceVersion":"3"},"x":' \
                 + deep + b"}}\n"
    too_deep = b'{"type":"ADDED","object":{"x":' + b"[" * 5000 + b"]" * 5000 + b"}}\n"
    recs, stats, skipped = run(in_note + line("b", 2) + in_unknown + too_deep + line("d", 4))
    assert uids(recs) == ["a", "b", "c", "d"]
    assert recs[0]["message"] is None  # a free-form value nested beyond 64 levels is nulled
    assert skipped == 1 and stats.errors[("input", "not_json")] == 1


def test_an_object_that_is_not_an_event_is_reported_and_skipped(logged):
    pod = {"type": "ADDED", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"uid": "p", "name": "web"}}}
    recs, stats, skipped = run(line("a", 1) + orjson.dumps(pod) + b"\n" + line("b", 2))
    assert uids(recs) == ["a", "b"] and skipped == 1
    assert stats.errors[("input", "not_an_event")] == 1
    assert [(kw["line"], kw["kind"]) for ev, kw in logged if ev == "replay_input_skipped"] == [(2, "not_an_event")]


def test_garbage_of_every_kind_between_good_lines_costs_only_itself(logged):
    bad = [b"not json", b"[1,2]", b'"a string"', b"{}", b'{"type":"ADDED"}', b'{"type":7,"object":{}}',
           b'{"type":"ADDED","object":{"kind":"Event"', b"\xff\xfe\x00garbage", b"1e400", b"null"]
    data = b"".join(line(f"u{i}", i + 1) + b + b"\n" for i, b in enumerate(bad)) + line("last", 99)
    recs, stats, skipped = run(data)
    assert uids(recs) == [f"u{i}" for i in range(len(bad))] + ["last"]
    assert skipped == len(bad) == stats.decode_errors
    assert [kw["line"] for ev, kw in logged if ev == "replay_input_skipped"] == [2 * i + 2 for i in range(len(bad))]


def test_blank_lines_are_not_input():
    recs, stats, skipped = run(b"\n  \n" + line("a", 1) + b"\r\n\n" + line("b", 2))
    assert uids(recs) == ["a", "b"] and skipped == 0


# --- multi-line (pretty-printed) documents ------------------------------------------------------

def pretty(uid: str, rv: int) -> bytes:
    return json.dumps(envelope(uid, rv, message='a "quoted" {brace} \\ here'), indent=4).encode() + b"\n"


def test_pretty_printed_documents_one_after_another_are_each_one_record():
    recs, _, skipped = run(pretty("a", 1) + pretty("b", 2) + line("c", 3) + pretty("d", 4))
    assert uids(recs) == ["a", "b", "c", "d"] and skipped == 0
    assert recs[0]["message"] == 'a "quoted" {brace} \\ here'


def test_a_document_cut_short_is_reported_with_its_lines_and_the_next_one_is_kept(logged):
    cut = b"\n".join(pretty("a", 1).splitlines()[:5]) + b"\n"
    recs, _, skipped = run(line("z", 0) + cut + line("b", 2) + cut + pretty("c", 3))
    assert uids(recs) == ["z", "b", "c"] and skipped == 2
    where = [(kw["line"], kw.get("last_line"), kw["kind"]) for ev, kw in logged if ev == "replay_input_skipped"]
    assert where[0] == (2, 6, "document_incomplete")


def test_a_document_left_open_at_the_end_is_reported():
    recs, stats, skipped = run(line("a", 1) + b"{\n" + b'  "type": "ADDED",\n')
    assert uids(recs) == ["a"] and skipped == 1 and stats.errors[("input", "document_truncated")] == 1


def test_documents_and_lines_over_the_bound_are_skipped_and_the_rest_kept(monkeypatch):
    monkeypatch.setattr(replay, "MAX_DOCUMENT_BYTES", 2000)
    monkeypatch.setattr(replay, "CHUNK_BYTES", 1000)  # at most the bound, as in production
    big = envelope("big", 5, message="m" * 5000)
    data = (line("a", 1) + json.dumps(big, indent=2).encode() + b"\n" + line("b", 2)
            + orjson.dumps(big) + b"\n" + line("c", 3))
    recs, stats, skipped = run(data)
    assert uids(recs) == ["a", "b", "c"] and skipped == 2
    assert stats.errors[("input", "document_too_large")] == 1 and stats.errors[("input", "line_too_long")] == 1


# --- linear in the input --------------------------------------------------------------------------

def test_good_lines_after_a_bad_one_cost_what_they_cost_without_it():
    """Before: every line after a bad one was re-parsed with all the previous ones (5,000 lines: 32 s)."""
    good = b"".join(line(f"u{i}", i + 10) for i in range(20_000))
    t0 = time.process_time()
    recs, _, _ = run(good, validate=False)
    clean = time.process_time() - t0
    t0 = time.process_time()
    recs2, _, skipped = run(b'{"type":"ADDED","object":{"kind":"Event","count":"7"\n' + good, validate=False)
    after_bad = time.process_time() - t0
    assert len(recs) == len(recs2) == 20_000 and skipped == 1
    assert after_bad < 3 * clean + 0.5, (after_bad, clean)
