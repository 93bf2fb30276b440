"""Property-based: whatever the configuration holds, loading gives Settings or a ConfigError naming a setting.

Arbitrary YAML text, arbitrary documents shaped like the schema with arbitrary values,
and arbitrary environment variables go through exporter.config.load (the entry both
--check-config and start-up use). Never another exception: no traceback for any input.
The budget is fixed (max_examples per property, no example database) so CI time is too.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exporter import config, redact
from exporter.errors import ConfigError
from exporter.settings import Settings

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "config.schema.json").read_text())
BUDGET = settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def leaves(node: dict, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if "properties" in node:
        return [p for k, v in node["properties"].items() for p in leaves(v, (*path, k))]
    return [path]


SETTINGS = leaves(SCHEMA)
SECTIONS = set(SCHEMA["properties"])

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=-5, max_value=100_000),
                    st.floats(), st.text(max_size=20),
                    st.sampled_from(["", "0", "-1", "1e309", "nan", ":8080", "a,b", "type!!=Normal", "all", "grpc",
                                     "http://u:p@h:99999", "127.0.0.1:0", "kubernetes", "file", "debug", "DEBUG",
                                     "events.k8s.io/v1", "v1", "true", "zstd", "b:9092", "{event.namespace}"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def outcome(load) -> Settings | ConfigError:
    """Settings, or the ConfigError; anything else fails the property (re-raised)."""
    try:
        return load()
    except ConfigError as exc:
        assert exc.field and exc.problem and exc.fix, exc
        return exc
    finally:
        redact.forget_secrets()  # each example starts with none registered


def names_a_setting(exc: ConfigError) -> bool:
    """A setting of the schema, the unknown key itself, the file, or the whole document."""
    head = exc.field.split(".")[0]
    return (head in SECTIONS or exc.problem == "unknown setting" or exc.field in ("--config", "(top level)")
            or exc.field.startswith(("KEE__", "/")))


def nest(path: tuple[str, ...], value: object) -> dict:
    doc: object = value
    for part in reversed(path):
        doc = {part: doc}
    assert isinstance(doc, dict)
    return doc


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


documents = st.lists(st.tuples(st.sampled_from(SETTINGS), values), max_size=8).map(
    lambda pairs: __import__("functools").reduce(merge, (nest(p, v) for p, v in pairs), {}))


@BUDGET
@given(st.text(max_size=300))
def test_arbitrary_yaml_text(tmp_path_factory, text):
    f = tmp_path_factory.mktemp("cfg") / "config.yaml"
    f.write_text(text)
    got = outcome(lambda: config.load(str(f), {}, []))
    assert isinstance(got, Settings) or names_a_setting(got), got


@BUDGET
@given(documents)
def test_arbitrary_values_for_every_setting_in_a_file(tmp_path_factory, doc):
    f = tmp_path_factory.mktemp("cfg") / "config.yaml"
    try:
        f.write_text(yaml.safe_dump(doc))
    except yaml.YAMLError:
        return
    got = outcome(lambda: config.load(str(f), {}, []))
    assert isinstance(got, Settings) or names_a_setting(got), got


@BUDGET
@given(st.lists(st.tuples(st.sampled_from(SETTINGS), values), max_size=6))
def test_arbitrary_values_from_flags(pairs):
    got = outcome(lambda: config.load(None, {}, [(".".join(p), v) for p, v in pairs]))
    assert isinstance(got, Settings) or names_a_setting(got), got
    if isinstance(got, Settings):  # what loaded is what the schema allows
        for d in (got.kubernetes.connect_timeout_seconds, got.checkpoint.interval_seconds,
                  got.kubernetes.backoff_initial_seconds):
            assert math.isfinite(d) and d > 0
        assert got.kubernetes.backoff_initial_seconds <= got.kubernetes.backoff_max_seconds


@BUDGET
@given(st.dictionaries(st.sampled_from(SETTINGS).map(lambda p: "KEE__" + "__".join(x.upper() for x in p)),
                       st.text(max_size=30), max_size=6))
def test_arbitrary_environment_variables(env):
    got = outcome(lambda: config.load(None, env, []))
    assert isinstance(got, Settings) or names_a_setting(got), got


@BUDGET
@given(st.sampled_from(SETTINGS), values)
def test_one_bad_value_is_blamed_on_its_setting(path, value):
    """A refusal caused by one value names that setting (or, for a rule between settings, its section)."""
    got = outcome(lambda: config.load(None, {}, [(".".join(path), value)]))
    if isinstance(got, ConfigError):
        assert got.field.split(".")[0] == path[0] or got.field == "sinks", (path, value, got)
