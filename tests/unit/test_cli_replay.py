"""`kube-event-exporter replay` turns watch envelopes into records, and the CLI fails clearly."""
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import orjson

from tests.support.streams import GEN_STREAM

ROOT = Path(__file__).parents[2]
GEN = GEN_STREAM
VALIDATOR = jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / "record.v1.schema.json").read_text()))


def cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "exporter", *args], input=stdin, capture_output=True, cwd=ROOT,
                          timeout=120)


def gen(tmp_path, n, api="mixed"):
    out = tmp_path / f"s-{api.replace('/', '_')}.jsonl"
    subprocess.run([sys.executable, str(GEN), "-n", str(n), "-o", str(out), "--api", api], check=True)
    return out


def test_every_occurrence_becomes_one_valid_record_and_deleted_is_not_exported(tmp_path):
    src = gen(tmp_path, 3000)
    envs = [orjson.loads(x) for x in src.read_bytes().splitlines()]
    expected = [(e["object"]["metadata"]["uid"], e["object"]["metadata"]["resourceVersion"])
                for e in envs if e["type"] in ("ADDED", "MODIFIED")]
    p = cli("replay", str(src), "--cluster-name", "test")
    assert p.returncode == 0, p.stderr
    records = [orjson.loads(x) for x in p.stdout.splitlines()]
    for r in records:
        VALIDATOR.validate(r)
    assert [(r["event"]["uid"], r["event"]["resource_version"]) for r in records] == expected
    assert all(r["cluster"] == "test" for r in records)
    assert any(e["type"] == "DELETED" for e in envs)
    done = [json.loads(x) for x in p.stderr.splitlines() if b"replay_done" in x]
    assert done and done[0]["deleted"] == sum(e["type"] == "DELETED" for e in envs)


def test_both_api_shapes_replay_to_the_same_fields(tmp_path):
    for api in ("events.k8s.io/v1", "v1"):
        p = cli("replay", str(gen(tmp_path, 500, api)))
        recs = [orjson.loads(x) for x in p.stdout.splitlines()]
        assert recs and {r["event"]["api_version"] for r in recs} == {api}
        assert all(r["object"] and r["reason"] and r["timestamp"] for r in recs)


def test_field_selector_filters_records(tmp_path):
    p = cli("replay", str(gen(tmp_path, 2000)), "--field-selector", "type!=Normal,reason=BackOff")
    recs = [orjson.loads(x) for x in p.stdout.splitlines()]
    assert recs and all(r["type"] != "Normal" and r["reason"] == "BackOff" for r in recs)


def test_garbage_lines_are_counted_and_skipped_not_fatal():
    good = (b'{"type":"ADDED","object":{"apiVersion":"v1","kind":"Event",'
            b'"metadata":{"uid":"u","resourceVersion":"1"},"reason":"X"}}\n')
    p = cli("replay", "-", stdin=b"not json\n[1,2]\n" + good + b'{"type":"ADDED"}\n')
    assert p.returncode == 4  # skipped input says so in the exit code (docs/records.md, "Input")
    assert len(p.stdout.splitlines()) == 1
    done = [json.loads(x) for x in p.stderr.splitlines() if b"replay_done" in x][0]
    assert done["decode_errors"] == 3


def test_pretty_printed_kubectl_output_is_accepted():
    obj = {"apiVersion": "v1", "kind": "Event", "metadata": {"uid": "u", "resourceVersion": "7"}, "reason": "Pulled"}
    p = cli("replay", "-", stdin=json.dumps({"type": "ADDED", "object": obj}, indent=2).encode())
    assert [orjson.loads(x)["reason"] for x in p.stdout.splitlines()] == ["Pulled"]


def test_bad_config_exits_2_naming_the_field(tmp_path):
    p = cli("replay", "/dev/null", "--set", "kubernetes.api=v2")
    assert p.returncode == 2
    assert b"kubernetes.api" in p.stderr and b"fix:" in p.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sinks:\n  stdout:\n    enabeld: true\n")
    p = cli("--check-config", "--config", str(cfg))
    assert p.returncode == 2 and b"sinks.stdout.enabeld" in p.stderr


def test_check_config_prints_the_effective_settings():
    p = cli("--check-config", "--set", "records.cluster_name=prod")
    assert p.returncode == 0
    assert json.loads(p.stdout)["records"]["cluster_name"] == "prod"


def test_check_config_never_prints_an_inline_secret():
    p = cli("--check-config", "--set", "sinks.kafka.config={sasl.password: hunter2, sasl.username: kee}",
            "--set", "sinks.otlp.headers={Authorization: Bearer abc123}")
    assert p.returncode == 0, p.stderr
    assert b"hunter2" not in p.stdout and b"abc123" not in p.stdout
    out = json.loads(p.stdout)
    assert out["sinks"]["kafka"]["config"]["sasl.username"] == "kee"
