"""The _bulk wire format of sinks.elasticsearch: index names, items, answers, settings errors (no server)."""
from __future__ import annotations

import json

import pytest

from exporter import config, settings
from exporter.errors import ConfigError
from exporter.sinks.elasticsearch import bulk, template
from exporter.sinks.elasticsearch.transport import Transport

REC = {"id": "u-1:42", "timestamp": "2026-11-29T03:18:45Z", "observed_timestamp": "2026-12-01T00:00:01.5Z",
       "reason": "BackOff", "type": "Warning", "object": {"kind": "Pod", "namespace": "Shop"},
       "event": {"namespace": "shop"}}


def cfg(**kw):
    return config.load(None, env={}, overrides=[("sinks.stdout.enabled", False),
                                                  ("sinks.elasticsearch.enabled", True),
                                                  ("sinks.elasticsearch.url", "http://127.0.0.1:9"),
                                                  *((f"sinks.elasticsearch.{k}", v) for k, v in kw.items())])


def test_daily_index_comes_from_the_records_own_timestamp_so_a_redelivery_lands_in_the_same_index():
    name = bulk.IndexName("kube-events-{timestamp:%Y.%m.%d}")
    assert name.render(REC) == "kube-events-2026.11.29"
    assert name.render({**REC, "observed_timestamp": "2027-01-01T00:00:00Z"}) == "kube-events-2026.11.29"
    assert bulk.IndexName("ke-{object.namespace}-{timestamp:%Y.%m}").render(REC) == "ke-shop-2026.11"
    assert bulk.IndexName("ke-{object.kind}").render({"object": None}) == "ke-_"


@pytest.mark.parametrize("template_text, words", [
    ("ke-{observed_timestamp:%Y}", "observed_timestamp"),
    ("ke-{object.name}", "unbounded"),
    ("ke-{timestamp:%j}", "date format"),
    ("Ke-events", "characters"),
    ("_ke", "starts with"),
])
def test_bad_index_templates_fail_naming_the_setting(template_text, words):
    with pytest.raises(ConfigError) as e:
        bulk.IndexName(template_text)
    assert e.value.field == "sinks.elasticsearch.index" and words in str(e.value)


def test_item_is_the_action_with_id_then_the_line_with_at_timestamp_spliced_in():
    line = json.dumps(REC).encode() + b"\n"
    data = bulk.encode(bulk.action_prefix("index", "kube-events-2026.11.29", None), REC["id"], REC["timestamp"], line)
    action, doc, rest = data.split(b"\n")
    assert json.loads(action) == {"index": {"_index": "kube-events-2026.11.29", "_id": "u-1:42"}}
    assert json.loads(doc) == {"@timestamp": REC["timestamp"], **REC} and rest == b""
    with_pipeline = bulk.action_prefix("create", "x", "p1") + b'"i"}}'
    assert json.loads(with_pipeline) == {"create": {"_index": "x", "pipeline": "p1", "_id": "i"}}


def test_answers_are_classified_per_item():
    body = json.dumps({"errors": True, "items": [
        {"index": {"status": 201}},
        {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception", "reason": "queue full"}}},
        {"index": {"status": 400, "error": {"type": "mapper_parsing_exception", "reason": "bad count"}}},
        {"create": {"status": 409, "error": {"type": "version_conflict_engine_exception", "reason": "exists"}}},
        {"index": {"status": 503, "error": {"type": "unavailable_shards_exception", "reason": "x"}}},
    ]}).encode()
    out = bulk.parse_items(body, 5)
    assert [bulk.classify(o, "index") for o in out] == ["ok", "retry", "reject", "reject", "retry"]
    assert bulk.classify(out[3], "create") == "ok"  # data streams: already there
    assert out[2].error_type == "mapper_parsing_exception" and out[2].reason == "bad count"
    assert bulk.parse_items(b'{"errors":false,"items":[{"index":{"status":201}}]}', 1) is None


@pytest.mark.parametrize("body", [b"<html>502</html>", b'{"items":[]}', b'{"errors":true,"items":[]}'])
def test_an_answer_that_is_not_a_bulk_answer_is_retried_not_trusted(body):
    with pytest.raises(bulk.BadResponse):
        bulk.parse_items(body, 1)


def test_template_swaps_flat_object_for_flattened_on_elasticsearch():
    doc = template.load()
    es = template.fitted(doc, "elasticsearch", ["ke-*"])
    os_ = template.fitted(doc, "opensearch", ["ke-*"])
    assert es["index_patterns"] == ["ke-*"]
    assert es["template"]["mappings"]["properties"]["labels"]["type"] == "flattened"
    assert os_["template"]["mappings"]["properties"]["labels"]["type"] == "flat_object"
    assert "flat_object" not in json.dumps(es)
    assert template.distribution({"version": {"distribution": "opensearch"}}) == "opensearch"
    assert template.distribution({"version": {"number": "8.15.0"}}) == "elasticsearch"


def test_secrets_come_from_env_or_files_and_are_masked(tmp_path):
    key = tmp_path / "key"
    key.write_text("abc:def\n")
    t = Transport(cfg(secrets_from_files={"api_key": str(key)}).sinks.elasticsearch)
    assert t.headers["Authorization"] == "ApiKey YWJjOmRlZg=="
    assert t.describe()["api_key"] == "***" and "abc" not in json.dumps(t.describe())
    es = settings.ElasticsearchSinkSettings(enabled=True, url="https://127.0.0.1:9", username="kee",
                                            secrets_from_env={"password": "ES_PW"})
    t = Transport(es, env={"ES_PW": "s3cret"})
    assert t.headers["Authorization"] == "Basic a2VlOnMzY3JldA=="
    assert "s3cret" not in json.dumps(t.describe())


@pytest.mark.parametrize("kw, field", [
    ({"url": ""}, "sinks.elasticsearch.url"),
    ({"url": "ftp://x"}, "sinks.elasticsearch.url"),
    ({"url": "http://u:p@x:9200"}, "sinks.elasticsearch.url"),
    ({"username": "kee"}, "sinks.elasticsearch.password"),
    ({"secrets_from_env": {"password": "NOPE_NOT_SET"}, "username": "kee"},
     "sinks.elasticsearch.secrets_from_env.password"),
    ({"secrets_from_files": {"token": "/x"}}, "sinks.elasticsearch.secrets_from_files.token"),
    ({"dead_letter": "/nonexistent-dir/dead.jsonl"}, "sinks.elasticsearch.dead_letter"),
    ({"request_timeout_seconds": 0}, "sinks.elasticsearch.request_timeout_seconds"),
    ({"url": "http://x:9200", "ca_file": "/ca.pem"}, "sinks.elasticsearch.ca_file"),
])
def test_bad_settings_fail_at_load_naming_the_field(kw, field):
    with pytest.raises(ConfigError) as e:
        cfg(**kw)
    assert e.value.field == field, str(e.value)


def test_check_config_masks_an_inline_password():
    from exporter.redact import redact
    doc = redact({"sinks": {"elasticsearch": {"password": "hunter2", "api_key": "k", "username": "kee"}}})
    assert doc["sinks"]["elasticsearch"] == {"password": "***", "api_key": "***", "username": "kee"}


# --- the sink's settlement, on a scripted transport (the real-server proofs are in tests/integration
# --- and tests/faults; this pins which items a retry re-sends) --------------------------------------

class ScriptedTransport:
    """Answers _bulk requests from a script; records each request's items (decompressed)."""

    url = "http://scripted"
    secrets: dict[str, str] = {}
    headers: dict[str, str] = {}

    def __init__(self, answers: list) -> None:
        self.answers = answers
        self.sent: list[list[str]] = []

    def request(self, method, path, body=None, headers=None):
        import gzip
        raw = gzip.decompress(body) if headers and headers.get("Content-Encoding") == "gzip" else body
        lines = raw.splitlines()
        self.sent.append([json.loads(a)["index"]["_id"] for a in lines[0::2]])
        items = self.answers.pop(0)(self.sent[-1])
        return 200, json.dumps({"errors": any(s >= 300 for s, _ in items),
                                "items": [{"index": {"status": s, **({"error": e} if e else {})}}
                                          for s, e in items]}).encode()

    def close(self) -> None:
        pass

    def describe(self):
        return {"url": self.url}


def _sink(tmp_path, transport, **kw):
    from exporter.sinks.elasticsearch import ElasticsearchSink
    es = settings.ElasticsearchSinkSettings(enabled=True, url="http://127.0.0.1:9", batch_timeout_seconds=0,
                                            retry_backoff_initial_seconds=0.01, retry_backoff_max_seconds=0.02,
                                            dead_letter=str(tmp_path / "dead.jsonl"), **kw)
    return ElasticsearchSink(es, env={}, transport=transport)


def _send(sink, n: int) -> None:
    for i in range(1, n + 1):
        rec = {**REC, "id": f"u:{i}"}
        sink.send(i, json.dumps(rec).encode() + b"\n", rec)
    sink.flush()


def test_a_retry_resends_only_the_items_not_yet_settled_and_dead_letters_the_rejected(tmp_path):
    mapping = {"type": "mapper_parsing_exception", "reason": "failed to parse field [count]"}
    busy = {"type": "es_rejected_execution_exception", "reason": "queue full"}
    t = ScriptedTransport([
        lambda ids: [(201, None), (429, busy), (400, mapping), (201, None)],
        lambda ids: [(201, None)],
    ])
    sink = _sink(tmp_path, t, batch_max_records=4)
    _send(sink, 4)
    sink.close(5)
    assert t.sent == [["u:1", "u:2", "u:3", "u:4"], ["u:2"]]
    assert sink.acked() == 4
    dead = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["id"], d["status"], d["error_type"]) for d in dead] == [("u:3", 400, "mapper_parsing_exception")]
    assert dead[0]["document"]["id"] == "u:3" and dead[0]["document"]["@timestamp"] == REC["timestamp"]
    assert sink.rejected == 1


def test_on_rejected_hold_keeps_the_batch_unacknowledged_until_the_cluster_takes_it(tmp_path):
    mapping = {"type": "mapper_parsing_exception", "reason": "failed to parse field [count]"}
    t = ScriptedTransport([
        lambda ids: [(201, None), (400, mapping)],
        lambda ids: [(400, mapping)],
        lambda ids: [(201, None)],  # the mapping was fixed
    ])
    sink = _sink(tmp_path, t, batch_max_records=2, on_rejected="hold")
    _send(sink, 2)
    sink.close(5)
    assert t.sent == [["u:1", "u:2"], ["u:2"], ["u:2"]]
    assert sink.acked() == 2 and sink.rejected == 2
    assert not (tmp_path / "dead.jsonl").exists() or (tmp_path / "dead.jsonl").read_text() == ""
