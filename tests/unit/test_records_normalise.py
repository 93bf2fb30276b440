"""A record carries the same fields, with the same meaning, for both API shapes."""
import json
from pathlib import Path

import jsonschema
import pytest

from exporter import wire
from exporter.records import TRUNCATION_MARKER, normalise

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "record.v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

CORE = {
    "apiVersion": "v1", "kind": "Event",
    "metadata": {"name": "web-1.17a", "namespace": "shop", "uid": "u-1", "resourceVersion": "1234",
                 "creationTimestamp": "2026-11-29T10:00:00Z", "managedFields": [{"manager": "kubelet"}]},
    "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "p-1", "apiVersion": "v1",
                       "resourceVersion": "99", "fieldPath": "spec.containers{web}"},
    "reason": "BackOff", "message": "Back-off restarting failed container", "type": "Warning",
    "source": {"component": "kubelet", "host": "node-a"},
    "firstTimestamp": "2026-11-29T10:00:00Z", "lastTimestamp": "2026-11-29T10:05:00Z", "count": 7,
    "eventTime": None, "reportingComponent": "kubelet", "reportingInstance": "node-a",
}
V1 = {
    "apiVersion": "events.k8s.io/v1", "kind": "Event",
    "metadata": {"name": "web-1.17a", "namespace": "shop", "uid": "u-1", "resourceVersion": "1234",
                 "creationTimestamp": "2026-11-29T10:00:00Z"},
    "regarding": {"kind": "Pod", "name": "web-1", "namespace": "shop", "uid": "p-1", "apiVersion": "v1",
                  "resourceVersion": "99", "fieldPath": "spec.containers{web}"},
    "reason": "BackOff", "note": "Back-off restarting failed container", "type": "Warning",
    "deprecatedSource": {"component": "kubelet", "host": "node-a"},
    "deprecatedFirstTimestamp": "2026-11-29T10:00:00Z", "deprecatedLastTimestamp": "2026-11-29T10:05:00Z",
    "deprecatedCount": 7, "eventTime": None, "reportingController": "kubelet", "reportingInstance": "node-a",
}


def rec(obj, update=False, **kw):
    r = normalise(wire.event(obj), update, cluster=kw.pop("cluster", "c1"), max_message_bytes=kw.pop("limit", 8192))
    VALIDATOR.validate(r)
    return r


def test_both_shapes_give_the_same_record_but_for_the_api_version():
    a, b = rec(CORE), rec(V1)
    for r in (a, b):
        r.pop("observed_timestamp")
    assert a.pop("event")["api_version"] == "v1"
    assert b.pop("event")["api_version"] == "events.k8s.io/v1"
    assert a == b
    assert a["object"]["field_path"] == "spec.containers{web}"
    assert a["count"] == 7 and a["severity"] == "WARN" and a["source_host"] == "node-a"
    assert a["id"] == "u-1:1234"


def test_occurrence_time_prefers_series_last_observed_then_last_timestamp():
    obj = dict(V1, series={"count": 9, "lastObservedTime": "2026-11-29T10:09:00.123456Z"})
    r = rec(obj)
    assert r["timestamp"] == "2026-11-29T10:09:00.123456Z" and r["count"] == 9
    assert rec(V1)["timestamp"] == "2026-11-29T10:05:00Z"
    bare = dict(V1, deprecatedLastTimestamp=None, deprecatedFirstTimestamp=None, eventTime="2026-11-29T10:01:00.5Z")
    assert rec(bare)["timestamp"] == "2026-11-29T10:01:00.5Z"
    assert rec(bare)["first_timestamp"] == "2026-11-29T10:01:00.5Z"
    nothing = dict(V1, deprecatedLastTimestamp=None, deprecatedFirstTimestamp=None, eventTime=None)
    assert rec(nothing)["timestamp"] == "2026-11-29T10:00:00Z"  # creationTimestamp, last resort


def test_managed_fields_are_dropped():
    assert "managedFields" not in json.dumps(rec(CORE))


@pytest.mark.parametrize("etype,sev", [("Normal", "INFO"), ("warning", "WARN"), ("Error", "ERROR"),
                                       ("CRITICAL", "FATAL"), ("Odd", "UNSPECIFIED"), (None, "UNSPECIFIED")])
def test_severity_follows_type_case_insensitively(etype, sev):
    assert rec(dict(CORE, type=etype))["severity"] == sev


def test_long_message_is_truncated_on_a_character_boundary_with_a_marker():
    msg = "发布失败" * 5000  # 3 bytes per character
    r = rec(dict(CORE, message=msg), limit=1000)
    assert r["message_truncated"] is True
    assert r["message"].endswith(TRUNCATION_MARKER)
    assert len(r["message"].encode()) <= 1000
    assert r["message"].startswith("发布失败")


def test_short_message_is_untouched():
    r = rec(CORE)
    assert r["message"] == CORE["message"] and r["message_truncated"] is False


def test_odd_data_gives_nulls_not_a_crash():
    odd = {"apiVersion": "v1", "metadata": None, "involvedObject": None, "count": "seven", "message": 42,
           "type": 3, "series": None, "source": None}
    r = normalise(wire.event(odd), True, cluster=None, max_message_bytes=8192)
    assert r["count"] == 1 and r["message"] == "42" and r["object"] is None and r["severity"] == "UNSPECIFIED"
    assert r["update"] is True


def test_count_below_one_becomes_one():
    assert rec(dict(CORE, count=0))["count"] == 1
