"""A record never carries an impossible value: UTC times with Z or null, counts within Elasticsearch's long,
ids never built from missing values, every string and the whole record bounded (docs/records.md, "Input")."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from exporter import config, wire
from exporter.errors import ConfigError
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.records import FIELD_MAX_BYTES, TRUNCATION_MARKER, normalise, utc

ROOT = Path(__file__).parents[2]
VALIDATOR = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.v1.schema.json").read_text()))
BASE = {"apiVersion": "v1", "kind": "Event", "metadata": {"uid": "u-1", "resourceVersion": "10", "name": "e",
                                                          "namespace": "ns"},
        "reason": "BackOff", "type": "Warning", "message": "m"}


def rec(**fields) -> dict:
    r = normalise(wire.event({**BASE, **fields}), False, cluster="c", max_message_bytes=8192)
    VALIDATOR.validate(r)
    return r


# --- times ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("sent,expected", [
    ("2026-11-29T10:00:00Z", "2026-11-29T10:00:00Z"),
    ("2026-11-29T10:00:00.123456Z", "2026-11-29T10:00:00.123456Z"),
    ("2026-11-29T10:00:00.1234567891Z", "2026-11-29T10:00:00.123456789Z"),  # at most 9 sub-second digits
    ("2026-11-29T10:00:00+05:30", "2026-11-29T04:30:00Z"),
    ("2026-11-29T01:00:00.5-02:00", "2026-11-29T03:00:00.5Z"),
    ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00Z"),
    ("2026-11-29 10:00:00Z", "2026-11-29T10:00:00Z"),
    ("2026-11-29t10:00:00z", "2026-11-29T10:00:00Z"),
    ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"),
    ("2026-13-45T99:00:00Z", None), ("yesterday", None), ("1764410400", None), ("2026-11-29 10:00:00", None),
    ("2026-02-29T00:00:00Z", None), ("2026-11-29T23:59:60Z", None), ("0000-01-01T00:00:00Z", None),
    ("0001-01-01T00:00:00+01:00", None), ("2026-11-29T10:00Z", None), ("2026-W48-1T03:18:45Z", None),
    ("２０２６-11-29T10:00:00Z", None), ("", None), ("2026-11-29T10:00:00+24:00", None), ("x" * 5000, None),
])
def test_a_time_is_utc_rfc3339_with_z_or_null(sent, expected):
    assert utc(sent) == expected
    assert utc(sent) == expected  # the second answer comes from the cache: the same


def test_an_invalid_time_gives_way_to_the_next_candidate_and_is_kept_as_sent():
    r = rec(lastTimestamp="yesterday", firstTimestamp="2026-11-29T09:00:00+01:00",
            metadata={**BASE["metadata"], "creationTimestamp": "2026-13-45T99:00:00Z"})
    assert r["timestamp"] == r["first_timestamp"] == "2026-11-29T08:00:00Z"
    assert r["event"]["creation_timestamp"] is None
    assert r["invalid_timestamps"] == {"timestamp": "yesterday", "creation_timestamp": "2026-13-45T99:00:00Z"}


def test_valid_times_add_no_invalid_timestamps_field():
    assert "invalid_timestamps" not in rec(lastTimestamp="2026-11-29T10:00:00Z")


def test_a_huge_invalid_time_is_kept_cut_to_128_bytes():
    r = rec(lastTimestamp="9" * 100_000)
    assert r["timestamp"] is None and len(r["invalid_timestamps"]["timestamp"].encode()) <= 128


# --- integers and ids ------------------------------------------------------------------------------

@pytest.mark.parametrize("count,expected", [(2 ** 64, 2 ** 63 - 1), (2 ** 200, 2 ** 63 - 1), (-(2 ** 70), 1),
                                            (0, 1), (7, 7), (7.0, 7), (7.5, 1)])
def test_count_is_within_elasticsearch_long(count, expected):
    assert rec(count=count)["count"] == expected


def test_missing_uid_or_metadata_never_gives_none_none_and_the_id_is_stable():
    bare = {"apiVersion": "v1", "kind": "Event", "reason": "X"}
    a = normalise(wire.event(bare), False, cluster=None, max_message_bytes=8192)
    b = normalise(wire.event(bare), False, cluster=None, max_message_bytes=8192)
    other = normalise(wire.event({**bare, "reason": "Y"}), False, cluster=None, max_message_bytes=8192)
    no_rv = rec(metadata={"uid": "u-1"})
    for r in (a, other, no_rv):
        VALIDATOR.validate(r)
        assert "None" not in r["id"] and r["id"].startswith("hash:") and len(r["id"]) == 37
    assert a["id"] == b["id"] != other["id"]


def test_an_oversized_uid_gives_a_bounded_hash_id():
    r = rec(metadata={"uid": "u" * 10_000, "resourceVersion": "1"})
    assert r["id"].startswith("hash:")


# --- strings and the record's size ------------------------------------------------------------------

class Keep:
    name = "keep"

    def __init__(self):
        self.lines: list[bytes] = []
        self.records: list[dict] = []

    def send(self, seq, line, record):
        self.lines.append(line)
        self.records.append(record)

    def flush(self):
        pass

    def acked(self):
        return len(self.lines)

    def close(self, timeout):
        pass


def through_pipeline(obj: dict, **kw) -> tuple[bytes, dict, Stats]:
    sink, stats = Keep(), Stats()
    p = Pipeline([sink], stats=stats, live=False, **kw)
    p.handle(p.stream("k", None), "ADDED", wire.event(obj))
    assert len(sink.lines) == 1  # never dropped
    return sink.lines[0], sink.records[0], stats


MIB = "x" * (1 << 20)
BIG = {**BASE, "reason": MIB, "action": MIB, "reportingInstance": MIB, "reportingComponent": MIB,
       "source": {"component": MIB, "host": MIB},
       "metadata": {"uid": "u", "resourceVersion": "1", "name": MIB, "namespace": MIB},
       "involvedObject": {"kind": MIB, "name": MIB, "fieldPath": MIB, "uid": MIB},
       "related": {"kind": MIB, "name": MIB, "fieldPath": MIB}}


def test_one_mebibyte_strings_are_cut_with_the_marker_never_dropped_and_the_record_fits():
    line, r, stats = through_pipeline(BIG)
    assert len(line) <= 983040
    VALIDATOR.validate(orjson.loads(line))
    for v in (r["reason"], r["action"], r["reporting_instance"], r["object"]["field_path"], r["event"]["name"],
              r["related"]["name"], r["source_host"]):
        assert v.endswith(TRUNCATION_MARKER) and v.startswith("xxx") and len(v.encode()) <= FIELD_MAX_BYTES
    assert stats.errors[("records", "string_truncated")] == 1


@pytest.mark.parametrize("limit", [16384, 65536])
def test_the_record_fits_the_configured_maximum_even_when_escaping_inflates_it(limit):
    nasty = "\x01\"\\" * 300_000  # each character is 2 to 6 bytes once JSON-escaped
    obj = {**BIG, "message": nasty, "reason": nasty}
    line, r, _ = through_pipeline(obj, max_record_bytes=limit, max_message_bytes=limit)
    assert len(line) <= limit
    assert r["message_truncated"] is True and r["message"].endswith(TRUNCATION_MARKER)
    VALIDATOR.validate(orjson.loads(line))


def test_an_ordinary_record_is_not_touched():
    line, r, stats = through_pipeline(BASE)
    assert r["reason"] == "BackOff" and r["message"] == "m" and not stats.errors


def test_max_record_bytes_is_checked_on_load():
    with pytest.raises(ConfigError, match="records.max_record_bytes"):
        config.load(None, env={}, overrides=[("records.max_record_bytes", 1000)])
    with pytest.raises(ConfigError, match="records.max_message_bytes"):
        config.load(None, env={}, overrides=[("records.max_record_bytes", 20000),
                                             ("records.max_message_bytes", 30000)])
    assert config.load(None, env={}).records.max_record_bytes == 983040
