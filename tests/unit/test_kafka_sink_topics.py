"""Topic templates: validated at start, rendered from low-cardinality record fields."""
import pytest

from exporter.errors import ConfigError
from exporter.sinks.kafka import MISSING, TopicTemplate

REC = {"type": "Warning", "reason": "BackOff", "cluster": "prod-eu",
       "event": {"namespace": "kube-system", "api_version": "v1"},
       "object": {"kind": "Pod", "namespace": "kube-system"}}


def test_fixed_topic_is_returned_as_is():
    t = TopicTemplate("kube-events")
    assert t.fixed == "kube-events"
    assert t.render(REC) == "kube-events"
    assert t.fields == []


@pytest.mark.parametrize("template,expected", [
    ("events.{event.namespace}", "events.kube-system"),
    ("{type}", "Warning"),
    ("k8s.{cluster}.{type}", "k8s.prod-eu.Warning"),
    ("{object.kind}-{reason}", "Pod-BackOff"),
    ("a{{b", None),  # an escaped brace is still a character Kafka rejects
])
def test_template_renders_record_fields(template, expected):
    if expected is None:
        with pytest.raises(ConfigError):
            TopicTemplate(template)
        return
    assert TopicTemplate(template).render(REC) == expected


def test_null_or_missing_fields_render_as_placeholder():
    t = TopicTemplate("events.{event.namespace}.{object.kind}")
    assert t.render({"event": {"namespace": None}, "object": None}) == f"events.{MISSING}.{MISSING}"
    assert t.render({}) == f"events.{MISSING}.{MISSING}"
    assert t.render({"event": {"namespace": ""}, "object": {"kind": "Node"}}) == f"events.{MISSING}.Node"


def test_characters_kafka_rejects_are_replaced():
    t = TopicTemplate("r.{reason}")
    assert t.render({"reason": "Failed Mount/ä"}) == "r.Failed_Mount__"


def test_rendered_topic_is_cut_to_kafka_limit():
    t = TopicTemplate("{reason}")
    assert len(t.render({"reason": "x" * 400})) == 249


@pytest.mark.parametrize("template,needle", [
    ("events.{event.name}", "unknown or unbounded"),     # per-name topics: unbounded
    ("events.{object.uid}", "unknown or unbounded"),
    ("events.{nope}", "unknown or unbounded"),
    ("events.{}", "unknown or unbounded"),
    ("events.{type!r}", "format spec"),
    ("events.{type:>10}", "format spec"),
    ("events.{type", "bad topic template"),
    ("events/{type}", "not allow"),
    ("", "empty"),
    ("..", "not a valid topic"),
])
def test_bad_templates_name_the_setting(template, needle):
    with pytest.raises(ConfigError) as e:
        TopicTemplate(template)
    assert e.value.field == "sinks.kafka.topic"
    assert needle in str(e.value)


def test_render_cache_is_bounded():
    t = TopicTemplate("{reason}")
    for i in range(10000):
        t.render({"reason": f"r{i}"})
    assert len(t._cache) <= 4097
