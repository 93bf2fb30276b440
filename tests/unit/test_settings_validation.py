"""Bad configuration names the field and the fix; good configuration becomes typed settings.

exporter.config.load is the one entry (--check-config and start-up); settings.load is its
schema-only first half, settings.parse.
"""
import dataclasses
import json
from pathlib import Path

import pytest

from exporter import config, redact, settings
from exporter.errors import ConfigError


@pytest.fixture(autouse=True)
def _forget_secrets():
    """config.load registers secret values process-wide (for log masking): none leak into other tests."""
    yield
    redact.forget_secrets()


def test_defaults_load_and_layer_file_env_flags(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("records:\n  cluster_name: from-file\nkubernetes:\n  page_size: 100\n")
    s = config.load(str(f), {"KEE__KUBERNETES__PAGE_SIZE": "200"}, [("records.cluster_name", "from-flag")])
    assert s.records.cluster_name == "from-flag"
    assert s.kubernetes.page_size == 200
    assert s.kubernetes.api == "events.k8s.io/v1"


@pytest.mark.parametrize("override,field", [
    (("kubernetes.api", "v2"), "kubernetes.api"),
    (("kubernetes.page_size", "many"), "kubernetes.page_size"),
    (("sinks.kafka.colour", "red"), "sinks.kafka.colour"),
    (("kubernetes.namespaces", ["a", 1]), "kubernetes.namespaces.1"),
    (("records.max_message_bytes", 10), "records.max_message_bytes"),
    (("filters.field_selector", "colour=red"), "filters.field_selector"),
])
def test_errors_name_the_field(override, field):
    with pytest.raises(ConfigError) as e:
        config.load(None, {}, [override])
    assert e.value.field == field
    assert e.value.fix


def test_file_store_without_path_is_refused():
    with pytest.raises(ConfigError, match="checkpoint.path"):
        config.load(None, {}, [("checkpoint.store", "file")])


def test_unreadable_or_invalid_yaml_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(str(tmp_path / "missing.yaml"), {}, [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("kubernetes: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(str(bad), {}, [])


def test_schema_and_dataclasses_describe_the_same_settings():
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "config.schema.json").read_text())

    def walk(cls, node, path):
        props = node["properties"]
        names = {f.name for f in dataclasses.fields(cls)}
        assert names == set(props), f"{path or 'top'}: dataclass {sorted(names ^ set(props))} differ from schema"
        for f in dataclasses.fields(cls):
            if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
                walk(f.default_factory, props[f.name], f"{path}{f.name}.")
    walk(settings.Settings, schema, "")


@pytest.mark.parametrize("doc", [
    {}, {"kubernetes": {"api": "v2"}}, {"kubernetes": {"page_size": "x"}}, {"kubernetes": {"page_size": -1}},
    {"sinks": {"kafka": {"config": {"a": 1}}}}, {"sinks": {"otlp": {"headers": {"a": 1}}}},
    {"filters": {"types": ["Warning", 3]}}, {"nope": 1}, {"records": {"cluster_name": None}},
    {"server": {"listen": ""}}, {"kubernetes": {"backoff_max_seconds": 1}}, {"kubernetes": {"watch_list": True}},
    {"kubernetes": {"connect_timeout_seconds": 0}}, {"kubernetes": {"connect_timeout_seconds": 0.001}},
    {"kubernetes": {"watch_timeout_seconds": 31536001}}, {"kubernetes": {"page_size": 2**31}},
    {"sinks": {"kafka": {"topic": ""}}}, {"sinks": {"kafka": {"topic": "t" * 250}}},
    {"sinks": {"otlp": {"timeout_seconds": 0}}}, {"sinks": {"otlp": {"timeout_seconds": None}}},
    {"sinks": {"kafka": {"retry_backoff_initial_ms": 0}}}, {"checkpoint": {"interval_seconds": -1}},
])
def test_built_in_validator_agrees_with_jsonschema(doc):
    import jsonschema
    schema = settings.config_schema()
    expected_ok = jsonschema.Draft202012Validator(schema).is_valid(doc)
    try:
        settings.validate(doc)
        ok = True
    except ConfigError:
        ok = False
    assert ok == expected_ok


def test_configuration_doc_is_current():
    import subprocess
    import sys
    root = Path(__file__).parents[2]
    rc = subprocess.run([sys.executable, str(root / "scripts" / "gen_config_doc.py"), "--check"]).returncode
    assert rc == 0, "docs/configuration.md is stale: run python scripts/gen_config_doc.py"
