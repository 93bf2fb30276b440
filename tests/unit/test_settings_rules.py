"""Every rule start-up depends on is checked when settings load (exporter.config.load), naming the setting.

Each refused case here was accepted before, and then crashed the start (listen address),
looped on a 400 from the apiserver (selectors), or failed inside librdkafka (key typos).
"""
from __future__ import annotations

import pytest

from exporter import config, redact
from exporter.errors import ConfigError

KAFKA = [("sinks.kafka.enabled", True), ("sinks.kafka.brokers", "kafka-0.kafka:9092")]
OTLP = [("sinks.otlp.enabled", True)]


@pytest.fixture(autouse=True)
def _forget_secrets():
    """config.load registers secret values process-wide (for log masking): none leak into other tests."""
    yield
    redact.forget_secrets()


def load(*overrides, env=None):
    return config.load(None, env or {}, list(overrides))


@pytest.mark.parametrize("overrides,field,says", [
    ([("server.listen", "bogus")], "server.listen", "no port"),
    ([("server.listen", "127.0.0.1:99999")], "server.listen", "0 to 65535"),
    ([("server.listen", "127.0.0.1:http")], "server.listen", "0 to 65535"),
    ([("server.listen", "[::1]:8080")], "server.listen", "IPv4"),
    ([("server.listen", "not a host:8080")], "server.listen", "host name"),
    ([("kubernetes.connect_timeout_seconds", 0)], "kubernetes.connect_timeout_seconds", "greater than 0"),
    ([("kubernetes.inactivity_timeout_seconds", 0)], "kubernetes.inactivity_timeout_seconds", "greater than 0"),
    ([("kubernetes.backoff_initial_seconds", 0)], "kubernetes.backoff_initial_seconds", "greater than 0"),
    ([("checkpoint.interval_seconds", 0)], "checkpoint.interval_seconds", "greater than 0"),
    ([("server.stale_after_seconds", 0)], "server.stale_after_seconds", "greater than 0"),
    ([("leader_election.retry_period_seconds", 0)], "leader_election.retry_period_seconds", "greater than 0"),
    ([("kubernetes.connect_timeout_seconds", float("nan"))], "kubernetes.connect_timeout_seconds", "finite"),
    ([("kubernetes.backoff_max_seconds", float("inf"))], "kubernetes.backoff_max_seconds", "finite"),
    ([("kubernetes.watch_timeout_seconds", 10**12)], "kubernetes.watch_timeout_seconds", "maximum"),
    ([("kubernetes.backoff_initial_seconds", 60)], "kubernetes.backoff_initial_seconds", "backoff_max_seconds"),
    ([("kubernetes.field_selector", "type!!=Normal")], "kubernetes.field_selector", "'type!'"),
    ([("kubernetes.field_selector", "type")], "kubernetes.field_selector", "no '='"),
    ([("kubernetes.field_selector", "type = Normal")], "kubernetes.field_selector", "'type '"),
    ([("kubernetes.field_selector", "reason=a=b")], "kubernetes.field_selector", "unescaped"),
    ([("kubernetes.field_selector", "involvedObject.kind=Pod")], "kubernetes.field_selector", "regarding.kind"),
    ([("kubernetes.api", "v1"), ("kubernetes.field_selector", "regarding.kind=Pod")], "kubernetes.field_selector",
     "involvedObject.kind"),
    ([("kubernetes.label_selector", "app in (a")], "kubernetes.label_selector", "cannot read"),
    ([("kubernetes.label_selector", "app=a b")], "kubernetes.label_selector", "cannot read"),
    ([("kubernetes.label_selector", "-app=web")], "kubernetes.label_selector", "label key"),
    ([("kubernetes.label_selector", "tier>high")], "kubernetes.label_selector", "integer"),
    ([("kubernetes.namespaces", ["a,b"])], "kubernetes.namespaces.0", "one name per entry"),
    ([("kubernetes.namespaces", ["ok", "Payments"])], "kubernetes.namespaces.1", "not a namespace name"),
    ([("kubernetes.namespaces", ["a", "a"])], "kubernetes.namespaces", "twice"),
    ([("checkpoint.store", "kubernetes"), ("checkpoint.name", "My_Checkpoint")], "checkpoint.name", "ConfigMap"),
    ([("leader_election.enabled", True), ("leader_election.lease_name", "a/b")], "leader_election.lease_name",
     "Lease"),
    ([*KAFKA, ("sinks.kafka.config", {"sasl.pasword": "x"})], "sinks.kafka.config.sasl.pasword",
     "No such configuration property"),
    ([*KAFKA, ("sinks.kafka.config", {"socket.timeout.ms": "soon"})], "sinks.kafka.config.socket.timeout.ms",
     "Invalid value"),
    ([*KAFKA, ("sinks.kafka.config", {"security.protocol": "SASL_SSLX"})], "sinks.kafka.config.security.protocol",
     "SASL_SSLX"),
    ([*KAFKA, ("sinks.kafka.config", {"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"})],
     "sinks.kafka.config", "ssl.ca.location"),
    ([("sinks.kafka.enabled", True), ("sinks.kafka.brokers", "kafka:99999")], "sinks.kafka.brokers", "port"),
    ([("sinks.kafka.enabled", True), ("sinks.kafka.brokers", "a:9092,,b:9092")], "sinks.kafka.brokers", "empty"),
    ([*KAFKA, ("sinks.kafka.retry_backoff_initial_ms", 0)], "sinks.kafka.retry_backoff_initial_ms", "minimum"),
    ([*OTLP, ("sinks.otlp.endpoint", "http://collector:99999")], "sinks.otlp.endpoint", "port"),
    ([*OTLP, ("sinks.otlp.retry_backoff_initial_seconds", 60), ("sinks.otlp.retry_backoff_max_seconds", 1)],
     "sinks.otlp.retry_backoff_initial_seconds", "retry_backoff_max_seconds"),
])
def test_refused_naming_the_setting(overrides, field, says):
    with pytest.raises(ConfigError) as e:
        load(*overrides)
    assert e.value.field == field, e.value
    assert says in e.value.problem, e.value
    assert e.value.fix


@pytest.mark.parametrize("overrides", [
    [("server.listen", "")], [("server.listen", ":8080")], [("server.listen", "localhost:0")],
    [("server.listen", "0.0.0.0:65535")],
    [("kubernetes.field_selector", "type!=Normal,reason==BackOff,regarding.name=web\\,1")],
    [("kubernetes.api", "v1"), ("kubernetes.field_selector", "involvedObject.kind=Pod,source=kubelet")],
    [("kubernetes.label_selector", "app=web, tier in (a, b),!canary,release notin (x),env,app.kubernetes.io/name!=x")],
    [("kubernetes.label_selector", "priority>3")],
    [("kubernetes.namespaces", ["payments", "checkout-2"])],
    [("log.level", "DEBUG")],
    [*KAFKA, ("sinks.kafka.config", {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                     "sasl.username": "kee", "socket.timeout.ms": 30000}),
     ("sinks.kafka.secrets_from_env", {"sasl.password": "KAFKA_PASSWORD"})],
    [("sinks.kafka.enabled", True), ("sinks.kafka.brokers", "SASL_SSL://a:9093, b ,[::1]:9092")],
    [*OTLP, ("sinks.otlp.endpoint", "collector.observability:4317")],
])
def test_accepted(overrides):
    load(*overrides, env={"KAFKA_PASSWORD": "s3cret-pw"})


def test_otlp_endpoint_from_the_environment_is_checked_too():
    with pytest.raises(ConfigError) as e:
        load(*OTLP, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:70000"})
    assert e.value.field == "OTEL_EXPORTER_OTLP_ENDPOINT"
    load(*OTLP, ("sinks.otlp.endpoint", "http://collector:4317"), env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:0"})


def test_log_level_is_case_insensitive():
    assert load(("log.level", "WARNING")).log.level == "warning"


def test_librdkafka_is_asked_without_connecting_to_the_brokers():
    """A broker that accepts a connection sees none while the configuration is checked."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(1.0)
    try:
        load(("sinks.kafka.enabled", True), ("sinks.kafka.brokers", f"127.0.0.1:{srv.getsockname()[1]}"))
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_every_librdkafka_problem_is_found_not_only_the_first():
    from exporter.sinks.kafka.client import check_kafka_config
    found = check_kafka_config({"sasl.pasword": "x", "socket.timeout.ms": "soon", "client.id": "ok"})
    assert [p.split(":")[0] for p in found] == ["sasl.pasword", "socket.timeout.ms"]
    assert check_kafka_config({"acks": "1", "enable.idempotence": True})  # a conflict between two keys
    assert "sasl.password must be set" in check_kafka_config({"security.protocol": "SASL_SSL",
                                                              "sasl.mechanism": "SCRAM-SHA-512"})[0]
    assert check_kafka_config({"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                               "sasl.username": "kee", "sasl.password": "pw"}) == []


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True))


@pytest.mark.parametrize("text,field,says", [
    ('sinks: {kafka: {enabled: true, brokers: "a:1", config: &a {x: *a}}}', "sinks.kafka.config.x", "itself"),
    (BOMB, None, "more than 100000 values"),
    ("kubernetes: {namespaces: " + "[" * 50 + "]" * 50 + "}", None, "nested deeper"),
    ("kubernetes: {namespaces: " + "[" * 5000 + "]" * 5000 + "}", None, "YAML"),
    ('sinks: {otlp: {enabled: true, endpoint: "http://[::1"}}', "sinks.otlp.endpoint", "not a URL"),
    ('sinks: {otlp: {enabled: true, headers: {x-team: "a\\nb"}}}', "sinks.otlp.headers.x-team", "control"),
    ('sinks: {otlp: {enabled: true, headers: {"bad header": "v"}}}', "sinks.otlp.headers.bad header", "name"),
    ('sinks: {kafka: {enabled: true, brokers: "a:1", secrets_from_files: {sasl.password: /dev/zero}}}',
     "sinks.kafka.secrets_from_files.sasl.password", "not a regular file"),
    ("kubernetes: {page_size: !!python/object:os.system x}", None, "not valid YAML"),
])
def test_hostile_documents_are_refused_not_crashed_on(tmp_path, text, field, says):
    f = tmp_path / "config.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        config.load(str(f), {}, [])
    assert says in e.value.problem, e.value
    if field:
        assert e.value.field == field


@pytest.mark.parametrize("overrides,field", [
    ([("sinks.kafka.config", {"sasl.password": ["hunter2-pw"]})], "sinks.kafka.config.sasl.password"),
    ([("sinks.otlp.headers", {"x-honeycomb-team": 1234567890})], "sinks.otlp.headers.x-honeycomb-team"),
    ([*OTLP, ("sinks.otlp.endpoint", "http://kee:hunter2-pw@collector:99999")], "sinks.otlp.endpoint"),
])
def test_errors_never_quote_a_secret_back(overrides, field):
    with pytest.raises(ConfigError) as e:
        load(*overrides)
    assert e.value.field == field
    assert "hunter2-pw" not in str(e.value) and "1234567890" not in str(e.value)
