"""Message keys (event_uid | object_uid | none) and headers (type, reason, namespace, cluster)."""
import pytest

from exporter.errors import ConfigError
from exporter.sinks.kafka import build_headers, message_key

REC = {"type": "Normal", "reason": "Pulled", "cluster": "c1",
       "event": {"uid": "ev-1", "namespace": "default"}, "object": {"uid": "pod-1"}}


def test_event_uid_key():
    assert message_key("event_uid")(REC) == b"ev-1"


def test_object_uid_key():
    assert message_key("object_uid")(REC) == b"pod-1"


def test_none_key():
    assert message_key("none")(REC) is None


def test_missing_uid_gives_null_key():
    assert message_key("object_uid")({"object": None}) is None
    assert message_key("event_uid")({"event": {"uid": None}}) is None


def test_unknown_key_mode():
    with pytest.raises(ConfigError) as e:
        message_key("name")
    assert e.value.field == "sinks.kafka.key"


def test_headers():
    assert build_headers(REC) == [("type", b"Normal"), ("reason", b"Pulled"), ("namespace", b"default"),
                                  ("cluster", b"c1")]


def test_null_fields_have_no_header():
    assert build_headers({"type": "Warning", "reason": None, "event": {"namespace": None}, "cluster": None}) == \
        [("type", b"Warning")]


def test_non_ascii_header_is_utf8():
    assert build_headers({"reason": "Über"}) == [("reason", "Über".encode())]
