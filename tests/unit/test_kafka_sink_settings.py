"""sinks.kafka settings: schema, cross-field checks, librdkafka passthrough, secrets and their redaction."""
import dataclasses

import pytest

from exporter import config, settings
from exporter.errors import ConfigError
from exporter.settings import KafkaSettings
from exporter.sinks.kafka import Redactor, check_settings, flat, is_secret_key, producer_config


def kafka(**kw) -> KafkaSettings:
    return KafkaSettings(enabled=True, brokers="127.0.0.1:9092", **kw)


def load(*overrides, env=None, check=True):
    base = [("sinks.kafka.enabled", True), ("sinks.kafka.brokers", "b:9092")]
    return (config.load if check else settings.parse)(None, env or {}, [*base, *overrides])


def test_defaults_give_an_idempotent_acks_all_producer():
    conf, _ = producer_config(kafka())
    assert conf["acks"] == "all"
    assert conf["enable.idempotence"] is True
    assert conf["compression.type"] == "zstd"
    assert conf["linger.ms"] == 20
    assert conf["batch.size"] == 1048576
    assert conf["message.timeout.ms"] == 300000
    assert conf["bootstrap.servers"] == "127.0.0.1:9092"
    # librdkafka's own queue must not be the bound that bites first
    assert conf["queue.buffering.max.messages"] > 10000


@pytest.mark.parametrize("acks,expected,idem", [("all", "all", True), (-1, "all", True), ("-1", "all", True),
                                                 (1, "1", False), ("0", "0", False)])
def test_acks_and_idempotence(acks, expected, idem):
    conf, _ = producer_config(kafka(acks=acks))
    assert (conf["acks"], conf["enable.idempotence"]) == (expected, idem)


def test_passthrough_config_and_nested_keys_from_flags():
    s = load(("sinks.kafka.config.security.protocol", "SASL_PLAINTEXT"),
             ("sinks.kafka.config.sasl.mechanism", "SCRAM-SHA-512"),
             ("sinks.kafka.config.enable.idempotence", False), check=False)
    conf, _ = producer_config(s.sinks.kafka)
    assert conf["security.protocol"] == "SASL_PLAINTEXT"
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["enable.idempotence"] is False


def test_flat():
    assert flat({"a": {"b": {"c": 1}}, "d.e": 2}) == {"a.b.c": 1, "d.e": 2}


@pytest.mark.parametrize("key,owner", [("bootstrap.servers", "sinks.kafka.brokers"), ("acks", "sinks.kafka.acks"),
                                       ("linger.ms", "sinks.kafka.linger_ms"),
                                       ("message.timeout.ms", "sinks.kafka.delivery_timeout_ms")])
def test_settings_owned_by_the_sink_are_refused_in_config(key, owner):
    with pytest.raises(ConfigError) as e:
        check_settings(kafka(config={key: "1"}))
    assert e.value.field == f"sinks.kafka.config.{key}"
    assert owner in e.value.fix


@pytest.mark.parametrize("override,field", [
    (("sinks.kafka.key", "name"), "sinks.kafka.key"),
    (("sinks.kafka.compression", "brotli"), "sinks.kafka.compression"),
    (("sinks.kafka.acks", "2"), "sinks.kafka.acks"),
    (("sinks.kafka.max_in_flight_records", 0), "sinks.kafka.max_in_flight_records"),
    (("sinks.kafka.topic", "events.{event.name}"), "sinks.kafka.topic"),
    (("sinks.kafka.topic", "bad topic"), "sinks.kafka.topic"),
    (("sinks.kafka.retry_backoff_max_ms", 1), "sinks.kafka.retry_backoff_max_ms"),
    (("sinks.kafka.colour", "red"), "sinks.kafka.colour"),
])
def test_bad_settings_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        load(override)
    assert e.value.field == field
    assert e.value.fix


def test_secrets_from_env_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("KAFKA_PASSWORD", "env-secret")
    f = tmp_path / "ssl-key-password"
    f.write_text("file-secret\n")
    s = load(("sinks.kafka.secrets_from_env.sasl.password", "KAFKA_PASSWORD"),
             ("sinks.kafka.secrets_from_files", {"ssl.key.password": str(f)}), check=False)
    conf, redact = producer_config(s.sinks.kafka, {"KAFKA_PASSWORD": "env-secret"})
    assert conf["sasl.password"] == "env-secret"
    assert conf["ssl.key.password"] == "file-secret"  # trailing newline of the mounted file stripped
    assert redact("auth failed for env-secret / file-secret") == "auth failed for *** / ***"


def test_missing_secret_names_the_setting_not_the_value(tmp_path):
    with pytest.raises(ConfigError) as e:
        check_settings(kafka(secrets_from_env={"sasl.password": "NOPE"}), {})
    assert e.value.field == "sinks.kafka.secrets_from_env.sasl.password"
    assert "NOPE" in str(e.value)
    with pytest.raises(ConfigError) as e:
        check_settings(kafka(secrets_from_files={"sasl.password": str(tmp_path / "missing")}), {})
    assert e.value.field == "sinks.kafka.secrets_from_files.sasl.password"


def test_secret_in_both_places_is_refused(tmp_path):
    f = tmp_path / "p"
    f.write_text("x")
    with pytest.raises(ConfigError, match="one place"):
        check_settings(kafka(secrets_from_env={"sasl.password": "P"}, secrets_from_files={"sasl.password": str(f)}),
                       {"P": "y"})


@pytest.mark.parametrize("key,secret", [("sasl.password", True), ("ssl.key.password", True),
                                        ("ssl.keystore.password", True), ("sasl.oauthbearer.client.secret", True),
                                        ("sasl.oauthbearer.config", True), ("ssl.key.pem", True),
                                        ("sasl.username", False), ("ssl.ca.location", False),
                                        ("security.protocol", False)])
def test_secret_keys(key, secret):
    assert is_secret_key(key) is secret


def test_redacted_config_for_logs():
    conf, redact = producer_config(kafka(config={"sasl.username": "kee", "sasl.password": "hunter22"}))
    shown = redact.config(conf)
    assert shown["sasl.password"] == "***"
    assert shown["sasl.username"] == "kee"
    assert "hunter22" not in repr(shown)
    assert redact("SASL authentication error: bad password hunter22") == "SASL authentication error: bad password ***"


def test_redactor_replaces_longest_first_and_ignores_tiny_values():
    r = Redactor(["abcdef", "abc", "x"])
    assert r("abcdef abc x") == "*** *** x"


def test_secret_in_plain_config_is_warned_about():
    from structlog.testing import capture_logs
    with capture_logs() as logs:
        check_settings(kafka(config={"sasl.password": "plain"}))
    w = [e for e in logs if e["event"] == "kafka_secret_in_config"]
    assert w and w[0]["setting"] == "sinks.kafka.config.sasl.password"
    assert "plain" not in repr(logs)


def test_every_field_is_in_the_schema():
    import json
    schema = json.loads((settings.SCHEMA_DIR / "config.schema.json").read_text())
    props = schema["properties"]["sinks"]["properties"]["kafka"]["properties"]
    assert set(props) == {f.name for f in dataclasses.fields(KafkaSettings)}


# --- check(): librdkafka itself parses the configuration, without connecting (--check-config) ---------

def _listener():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(5)
    s.settimeout(1.0)
    return s


def test_check_accepts_a_valid_configuration_without_connecting():
    from exporter.sinks.kafka import check
    s = _listener()
    try:
        cfg = KafkaSettings(enabled=True, brokers=f"127.0.0.1:{s.getsockname()[1]}",
                            config={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "SCRAM-SHA-512",
                                    "sasl.username": "kee"}, secrets_from_env={"sasl.password": "PW"})
        assert check(cfg, env={"PW": "pw"}) == []
        with pytest.raises(OSError):  # socket.timeout: nobody connected to the "broker"
            s.accept()
    finally:
        s.close()


@pytest.mark.parametrize("config,field,words", [
    ({"sasl.pasword": "x"}, "sinks.kafka.config.sasl.pasword", "No such configuration property"),
    ({"queue.buffering.max.messages": "many"}, "sinks.kafka.config.queue.buffering.max.messages", "Invalid value"),
    ({"security.protocol": "SASL_SSL", "sasl.mechanism": "GSSAPI"}, "sinks.kafka.config", "GSSAPI"),
])
def test_check_reports_what_librdkafka_refuses_naming_the_property(config, field, words):
    from exporter.sinks.kafka import check
    problems = check(KafkaSettings(enabled=True, brokers="127.0.0.1:1", config=config))
    assert len(problems) == 1
    assert problems[0].field == field and words in str(problems[0]) and problems[0].fix


def test_check_reports_the_sinks_own_rules_and_never_prints_a_secret():
    from exporter.sinks.kafka import check
    [p] = check(KafkaSettings(enabled=True, brokers="b:1", secrets_from_env={"sasl.password": "NOPE"}), env={})
    assert p.field == "sinks.kafka.secrets_from_env.sasl.password"
    [p] = check(KafkaSettings(enabled=True, brokers="b:1", config={"sasl.password": "s3cr3t-value",
                                                                   "queue.buffering.max.kbytes": "s3cr3t-value"}))
    assert "s3cr3t-value" not in str(p)
