"""The Kafka sink against the REAL broker (tests/components/kafka.py, session fixture kafka_broker).

- replay (the CLI) of both API shapes: every record arrives with the expected key, headers and a value that
  is schema-valid and equal to what the stdout sink writes; topic templates route by record field;
- broker stopped while records keep coming, then started: every record arrives, the pipeline's checkpoint
  and the sink's watermark never pass an undelivered record, and what is held stays within the bounds;
- SASL SCRAM (plaintext and TLS) delivers; a wrong password is a clear error naming the setting (never the
  password), holds every record unacknowledged, and a restart with the right password delivers them all;
- a missing topic (auto-create off) is a clear error, and delivery resumes once the topic exists.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.settings import KafkaSettings
from exporter.sinks.kafka import KafkaSink
from exporter.sinks.stdout import StdoutSink
from tests.support.events import core_event, create, v1_event
from tests.support.exporter_proc import Exporter

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
from tests.support.streams import GEN_STREAM as GEN  # noqa: E402

RECORD_SCHEMA = REPO / "schemas" / "record.v1.schema.json"


# --- helpers -----------------------------------------------------------------------------

def stream_file(tmp_path: Path, n: int, api: str, seed: int = 1) -> Path:
    out = tmp_path / f"stream-{api.replace('/', '_')}-{n}.jsonl"
    subprocess.run([sys.executable, str(GEN), "-n", str(n), "--api", api, "--seed", str(seed), "-o", str(out)],
                   check=True)
    return out


def envelopes(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def occurrences(path: Path) -> list[dict]:
    return [e["object"] for e in envelopes(path) if e.get("type") in ("ADDED", "MODIFIED")]


def replay(path: Path, *sets: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "exporter", "replay", str(path)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, cwd=REPO, capture_output=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def kafka_sets(broker, topic: str, *extra: str, listener: str = "PLAINTEXT") -> list[str]:
    return ["sinks.kafka.enabled=true", f"sinks.kafka.brokers={broker.bootstrap[listener]}",
            f"sinks.kafka.topic={topic}", "sinks.stdout.enabled=false", *extra]


def validator():
    if not RECORD_SCHEMA.exists():
        return None
    import jsonschema
    return jsonschema.Draft202012Validator(json.loads(RECORD_SCHEMA.read_text()),
                                           format_checker=jsonschema.FormatChecker())


def topic_name(prefix: str) -> str:
    return f"kee-{prefix}-{uuid.uuid4().hex[:8]}"


def rec_for(i: int) -> tuple[bytes, dict]:
    rec = {"type": "Normal", "reason": "Test", "cluster": "it", "event": {"uid": f"uid-{i}", "namespace": "ns"},
           "object": {"uid": f"obj-{i % 7}"}, "n": i}
    return orjson.dumps(rec, option=orjson.OPT_APPEND_NEWLINE), rec


def metric(sink, name, **labels):
    for n, _k, _d, lab, v in sink.metrics():
        if n == name and all(lab.get(k) == x for k, x in labels.items()):
            return v
    raise KeyError(name)


def wait_for(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- records, keys, headers, values ----------------------------------------------------------

@pytest.mark.parametrize("api", ["events.k8s.io/v1", "v1"])
def test_replay_delivers_every_record_with_key_headers_and_schema_valid_value(kafka_broker, tmp_path, api):
    topic = kafka_broker.create_topic(topic_name("replay"), partitions=3)
    src = stream_file(tmp_path, 400, api)
    expected = occurrences(src)

    p = replay(src, *kafka_sets(kafka_broker, topic, "records.cluster_name=it-cluster"))
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    got = kafka_broker.consume(topic, n=len(expected), timeout=60)
    assert len(got) == len(expected)

    v = validator()
    by_id = {}
    for r in got:
        value = orjson.loads(r.value)
        if v is not None:
            errors = sorted(v.iter_errors(value), key=lambda e: list(e.absolute_path))
            assert not errors, f"{errors[0].message} at {list(errors[0].absolute_path)}"
        assert value["event"]["api_version"] == api
        assert value["cluster"] == "it-cluster"
        assert r.key == value["event"]["uid"].encode()
        hdr = dict(r.headers)
        assert hdr["type"] == value["type"].encode()
        assert hdr.get("reason") == (value["reason"].encode() if value["reason"] is not None else None)
        assert hdr["namespace"] == value["event"]["namespace"].encode()
        assert hdr["cluster"] == b"it-cluster"
        by_id[value["id"]] = value
    # every occurrence, none twice (no failure happened, so no retry duplicate either)
    assert sorted(by_id) == sorted(f"{o['metadata']['uid']}:{o['metadata']['resourceVersion']}" for o in expected)
    # per key, records keep the watch order (same key -> same partition)
    order = {f"{o['metadata']['uid']}:{o['metadata']['resourceVersion']}": i for i, o in enumerate(expected)}
    last: dict[bytes, int] = {}
    for r in sorted(got, key=lambda r: (r.partition, r.offset)):
        i = order[orjson.loads(r.value)["id"]]
        assert i > last.get(r.key, -1)
        last[r.key] = i

    # the value is the very record the stdout sink writes (same schema), observed_timestamp aside
    p = replay(src, "records.cluster_name=it-cluster")
    assert p.returncode == 0
    stdout_records = {}
    for line in p.stdout.splitlines():
        d = orjson.loads(line)
        d.pop("observed_timestamp")
        stdout_records[d["id"]] = d
    for d in by_id.values():
        d.pop("observed_timestamp")
    assert by_id == stdout_records


def test_topic_template_and_object_uid_key(kafka_broker, tmp_path):
    base = topic_name("tmpl")
    for t in ("Normal", "Warning"):
        kafka_broker.create_topic(f"{base}.{t}")
    src = stream_file(tmp_path, 200, "v1", seed=3)
    expected = occurrences(src)
    p = replay(src, *kafka_sets(kafka_broker, base + ".{type}", "sinks.kafka.key=object_uid",
                                "sinks.kafka.compression=lz4"))
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    n = sum(1 for o in expected if o.get("type") == "Normal")
    normal = kafka_broker.consume(f"{base}.Normal", n=n, timeout=30)
    warning = kafka_broker.consume(f"{base}.Warning", n=len(expected) - n, timeout=30)
    assert len(normal) + len(warning) == len(expected)
    assert {orjson.loads(r.value)["type"] for r in normal} == {"Normal"}
    assert {orjson.loads(r.value)["type"] for r in warning} == {"Warning"}
    for r in normal + warning:
        obj = orjson.loads(r.value)["object"]
        assert r.key == (obj["uid"].encode() if obj and obj["uid"] else None)


def test_bad_topic_template_is_refused_at_start(kafka_broker, tmp_path):
    src = stream_file(tmp_path, 5, "v1")
    p = replay(src, *kafka_sets(kafka_broker, "events.{event.name}"))
    assert p.returncode == 2
    assert b"sinks.kafka.topic" in p.stderr


# --- broker outage: held, bounded, then all delivered; checkpoint never passes a hole -------------

def test_broker_outage_holds_records_bounded_and_delivers_all_after(kafka_broker, tmp_path):
    topic = kafka_broker.create_topic(topic_name("outage"), partitions=2)
    envs = envelopes(stream_file(tmp_path, 1500, "events.k8s.io/v1", seed=5))
    cfg = KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap_servers, topic=topic,
                        max_in_flight_records=300, max_in_flight_bytes=4 << 20,
                        delivery_timeout_ms=4000,            # librdkafka gives up quickly: our own retry path runs
                        retry_backoff_initial_ms=200, retry_backoff_max_ms=1000, linger_ms=5)
    stats = Stats()
    kafka = KafkaSink(cfg, cluster="it", stats=stats)
    out = open(tmp_path / "stdout.jsonl", "wb")
    stdout = StdoutSink(out)
    pipe = Pipeline([stdout, kafka], stats=stats, cluster="it", live=False)
    stream = pipe.stream("it", None)
    feed_done = threading.Event()
    first = 200
    fed = {"n": 0}

    from exporter import wire

    def feed(items):
        for e in items:
            pipe.handle(stream, e["type"], wire.event(e["object"]))
            fed["n"] += 1
        pipe.flush()

    try:
        feed(envs[:first])
        wait_for(lambda: kafka.acked() == pipe.seq, 30, "the first records delivered")
        rv_before = pipe.commit()["it"]
        seq_before = pipe.seq
        assert rv_before is not None

        kafka_broker.stop()
        t = threading.Thread(target=lambda: (feed(envs[first:]), feed_done.set()), daemon=True)
        t.start()
        peak_records = peak_bytes = 0
        t_down = time.monotonic()
        while time.monotonic() - t_down < 10:                     # records keep coming, the broker is down
            n, b = kafka.in_flight()
            peak_records, peak_bytes = max(peak_records, n), max(peak_bytes, b)
            assert kafka.acked() == seq_before                 # nothing new confirmed
            # the checkpoint does not move: Pipeline.commit() without its lock, which the feeding thread holds
            # while it waits in KafkaSink.send (backpressure)
            assert stream.ledger.advance(pipe.watermark()) == rv_before
            time.sleep(0.2)
        assert not feed_done.is_set(), "the watch should be held back (backpressure)"
        assert pipe.seq > seq_before + 250                    # records were accepted up to the bound
        assert peak_records <= cfg.max_in_flight_records and peak_bytes <= cfg.max_in_flight_bytes
        assert metric(kafka, "kee_sink_backpressure_seconds") > 1
        assert metric(kafka, "kee_sink_retries") > 0          # delivery timed out (4 s) and was re-produced
    finally:
        kafka_broker.start()
    try:
        assert feed_done.wait(120), "the feed never completed after the broker came back"
        wait_for(lambda: kafka.acked() == pipe.seq, 120, "every record delivered after the outage")
        assert pipe.commit()["it"] == stream.last_seen
        kafka.close(30)
    finally:
        out.close()
    total = pipe.seq
    got = kafka_broker.consume(topic, timeout=90, idle=5)
    ids = [orjson.loads(r.value)["id"] for r in got]
    expected = {f"{e['object']['metadata']['uid']}:{e['object']['metadata']['resourceVersion']}"
                for e in envs if e["type"] in ("ADDED", "MODIFIED")}
    assert total == len(expected)
    assert expected <= set(ids), f"{len(expected - set(ids))} records lost"
    # at-least-once: a re-produced record may arrive twice; say how often it did
    print(f"outage: {total} records, {len(ids)} consumed, {len(ids) - len(set(ids))} duplicates, "
          f"retried={metric(kafka, 'kee_sink_retries')}, peak in flight {peak_records} records / {peak_bytes} B")


# --- SASL SCRAM ------------------------------------------------------------------------------

@pytest.mark.parametrize("listener", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_scram_delivers_with_password_from_env(kafka_broker, tmp_path, listener):
    topic = kafka_broker.create_topic(topic_name("sasl"))
    src = stream_file(tmp_path, 60, "v1", seed=7)
    expected = occurrences(src)
    sets = [f"sinks.kafka.config.security.protocol={listener}",
            f"sinks.kafka.config.sasl.mechanism={kafka_broker.mechanism}",
            f"sinks.kafka.config.sasl.username={kafka_broker.username}",
            "sinks.kafka.secrets_from_env.sasl.password=KEE_TEST_KAFKA_PASSWORD"]
    if listener == "SASL_SSL":
        sets.append(f"sinks.kafka.config.ssl.ca.location={kafka_broker.ca_path}")
    p = replay(src, *kafka_sets(kafka_broker, topic, *sets, listener=listener),
               env={"KEE_TEST_KAFKA_PASSWORD": kafka_broker.password})
    assert p.returncode == 0, p.stderr.decode()[-3000:]
    assert kafka_broker.password.encode() not in p.stderr
    got = kafka_broker.consume(topic, n=len(expected), timeout=30)
    assert len(got) == len(expected)


def test_sasl_wrong_password_is_a_clear_error_and_loses_nothing(kafka_broker, tmp_path):
    topic = kafka_broker.create_topic(topic_name("saslbad"))
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]

    def cfg(secret_file):
        return KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap["SASL_PLAINTEXT"], topic=topic,
                             config={"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": kafka_broker.mechanism,
                                     "sasl.username": kafka_broker.username},
                             secrets_from_files={"sasl.password": str(secret_file)})
    secret = tmp_path / "password"
    secret.write_text(wrong + "\n")
    stats = Stats()
    records = [rec_for(i) for i in range(1, 31)]
    with capture_logs() as logs:
        sink = KafkaSink(cfg(secret), stats=stats)
        for i, (line, rec) in enumerate(records, 1):
            sink.send(i, line, rec)
        wait_for(lambda: sink.condition is not None, 30, "the authentication failure to be reported")
        time.sleep(1)
        assert sink.acked() == 0                                   # nothing acknowledged: checkpoint stays
        assert sink.condition.kind == "authentication"
        assert metric(sink, "kee_sink_condition", condition="authentication") == 1
        assert stats.errors[("kafka", "authentication")] >= 1
        with pytest.raises(SinkFatal) as e:
            sink.close(2)
        assert sink.acked() == 0
    loud = [x for x in logs if x["event"] == "sink_condition"]
    assert loud and loud[0]["log_level"] == "error"
    assert "sasl.password" in loud[0]["setting"] and "sasl.username" in loud[0]["setting"]
    assert "sasl.password" in str(e.value)
    assert wrong not in repr(logs) and wrong not in str(e.value)

    # the process is restarted with the right credentials and resumes from its checkpoint (nothing was
    # acknowledged, so every record is handed to the sink again): all arrive
    secret.write_text(kafka_broker.password + "\n")
    sink = KafkaSink(cfg(secret), stats=Stats())
    for i, (line, rec) in enumerate(records, 1):
        sink.send(i, line, rec)
    sink.close(30)
    assert sink.acked() == len(records)
    got = kafka_broker.consume(topic, n=len(records), timeout=30)
    assert sorted(orjson.loads(r.value)["n"] for r in got) == list(range(1, 31))


def test_sasl_wrong_password_cli_reports_a_clear_error(kafka_broker, tmp_path):
    """The replay CLI with a wrong password: a clear error naming the setting, never the password."""
    topic = kafka_broker.create_topic(topic_name("saslcli"))
    src = stream_file(tmp_path, 10, "v1")
    p = replay(src, *kafka_sets(kafka_broker, topic, "sinks.kafka.config.security.protocol=SASL_PLAINTEXT",
                                f"sinks.kafka.config.sasl.mechanism={kafka_broker.mechanism}",
                                f"sinks.kafka.config.sasl.username={kafka_broker.username}",
                                "sinks.kafka.secrets_from_env.sasl.password=KEE_TEST_KAFKA_PASSWORD",
                                listener="SASL_PLAINTEXT"),
               env={"KEE_TEST_KAFKA_PASSWORD": "wrong-wrong-wrong"}, timeout=90)
    err = p.stderr.decode()
    assert p.returncode == 1, err[-2000:]              # records were not delivered: the replay failed
    assert "sink_condition" in err and "sasl.password" in err
    assert "sink_undelivered_at_close" in err
    assert "wrong-wrong-wrong" not in err
    assert kafka_broker.consume(topic, timeout=5, idle=2) == []


# --- unknown topic ---------------------------------------------------------------------------

def test_unknown_topic_is_a_clear_error_then_resumes_when_created(kafka_broker):
    topic = topic_name("missing")
    stats = Stats()
    sink = KafkaSink(KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap_servers, topic=topic,
                                   retry_backoff_initial_ms=200, retry_backoff_max_ms=1000,
                                   config={"topic.metadata.propagation.max.ms": 1000}), stats=stats)
    try:
        with capture_logs() as logs:
            for i in range(1, 11):
                line, rec = rec_for(i)
                sink.send(i, line, rec)
            wait_for(lambda: sink.condition is not None, 30, "the unknown topic to be reported")
        assert sink.condition.kind == "unknown_topic"
        loud = [x for x in logs if x["event"] == "sink_condition"]
        assert loud[0]["setting"] == "sinks.kafka.topic"
        assert metric(sink, "kee_sink_condition", condition="unknown_topic") == 1
        assert sink.acked() == 0
        kafka_broker.create_topic(topic)
        wait_for(lambda: sink.acked() == 10, 60, "delivery once the topic exists")
    finally:
        sink.close(10)
    got = kafka_broker.consume(topic, timeout=20, idle=2)
    assert {orjson.loads(r.value)["n"] for r in got} == set(range(1, 11))


# --- compacted topic without a key -------------------------------------------------------------

def test_compacted_topic_refuses_null_keys_clear_error_then_key_fixes_it(kafka_broker):
    """key=none into a cleanup.policy=compact topic: the broker refuses every record; nothing is acknowledged and
    the error names sinks.kafka.key. With key=event_uid the same records go through (compaction keeps the last
    occurrence of each Event: docs/kafka.md)."""
    topic = kafka_broker.create_topic(topic_name("compact"), config={"cleanup.policy": "compact"})
    records = [rec_for(i) for i in range(1, 6)]
    sink = KafkaSink(KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap_servers, topic=topic, key="none",
                                   retry_backoff_initial_ms=200, retry_backoff_max_ms=500), stats=Stats())
    with capture_logs() as logs:
        for i, (line, rec) in enumerate(records, 1):
            sink.send(i, line, rec)
        wait_for(lambda: sink.condition is not None, 30, "the refusal to be reported")
    assert sink.condition.kind == "invalid_record"
    assert [x for x in logs if x["event"] == "sink_condition"][0]["setting"] == "sinks.kafka.key"
    assert sink.acked() == 0
    with pytest.raises(SinkFatal):
        sink.close(1)
    sink = KafkaSink(KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap_servers, topic=topic), stats=Stats())
    for i, (line, rec) in enumerate(records, 1):
        sink.send(i, line, rec)
    sink.close(30)
    assert sink.acked() == 5
    got = kafka_broker.consume(topic, n=5, timeout=20)
    assert [r.key for r in got] == [f"uid-{i}".encode() for i in range(1, 6)]


# --- the live exporter killed while the broker is down ------------------------------------------

def test_live_exporter_killed_while_broker_down_delivers_everything_after_restart(control_plane, kafka_broker,
                                                                                   namespace, tmp_path):
    """stdout + Kafka on a real apiserver. The broker stops; Events keep coming (stdout has them, Kafka cannot):
    the checkpoint stays before the first undelivered one (the minimum over sinks). The exporter is SIGKILLed, the
    broker started, the exporter started again: it resumes from the checkpoint and every Event reaches Kafka."""
    cp = control_plane
    topic = kafka_broker.create_topic(topic_name("live"), partitions=2)
    ckpt = tmp_path / "checkpoint.json"

    def start(n):
        exp = Exporter(["run", "--kubeconfig", str(cp.kubeconfig), "--namespace", namespace, "--listen", "127.0.0.1:0",
                        "--checkpoint-file", str(ckpt), "--set", "checkpoint.interval_seconds=0.5",
                        "--set", "kubernetes.backoff_max_seconds=2",
                        "--set", "sinks.kafka.enabled=true",
                        "--set", f"sinks.kafka.brokers={kafka_broker.bootstrap_servers}",
                        "--set", f"sinks.kafka.topic={topic}", "--set", "sinks.kafka.linger_ms=5",
                        "--set", "sinks.kafka.delivery_timeout_ms=3000",
                        "--set", "sinks.kafka.retry_backoff_max_ms=1000"],
                       tmp_path / f"run{n}.log")
        exp.wait_log("stream_resuming" if n else "stream_starting", timeout=60)
        return exp

    def saved_rv():
        if not ckpt.exists():
            return None
        return next(iter(json.loads(ckpt.read_text())["streams"].values()))["resource_version"]

    def kafka_uids():
        return {orjson.loads(r.value)["event"]["uid"] for r in kafka_broker.consume(topic, timeout=30, idle=2)}

    exp = start(0)
    try:
        time.sleep(1)
        before = [create(cp, core_event(namespace, message=f"before {i}")) for i in range(3)]
        before += [create(cp, v1_event(namespace, note=f"before v1 {i}")) for i in range(2)]
        uids_before = {m["metadata"]["uid"] for m in before}
        wait_for(lambda: uids_before <= kafka_uids(), 60, "the first Events in Kafka")

        kafka_broker.stop()
        try:
            during = [create(cp, core_event(namespace, message=f"during {i}")) for i in range(10)]
            uids_during = {m["metadata"]["uid"] for m in during}
            first_rv = min((m["metadata"]["resourceVersion"] for m in during), key=lambda rv: (len(rv), rv))
            exp.wait_for(lambda r: uids_during <= {x["event"]["uid"] for x in r}, 30, "stdout to have them")
            time.sleep(3)                                           # several checkpoint intervals
            rv = saved_rv()
            assert rv is not None and (len(rv), rv) < (len(first_rv), first_rv), \
                f"checkpoint {rv} passed undelivered {first_rv}"
            exp.kill()
        finally:
            kafka_broker.start()
        assert saved_rv() == rv
        exp = start(1)
        wait_for(lambda: (uids_before | uids_during) <= kafka_uids(), 90, "every Event in Kafka after the restart")
        assert exp.terminate() == 0
    finally:
        exp.stop()


# --- a record the broker refuses as too large -------------------------------------------------------

def test_record_too_large_for_the_topic_is_held_named_and_never_acknowledged(kafka_broker):
    """A topic with max.message.bytes below a record (a 1 MiB field would do the same against the defaults): the
    broker refuses it. It is held and retried (never dropped, never acknowledged), the log names the record's id
    and a fix that can work, a metric counts it; the records around it are delivered; the checkpoint (the
    pipeline's committed resourceVersion) stays before it."""
    from exporter import wire
    topic = kafka_broker.create_topic(topic_name("small"), config={"max.message.bytes": "4096"})
    stats = Stats()
    sink = KafkaSink(KafkaSettings(enabled=True, brokers=kafka_broker.bootstrap_servers, topic=topic,
                                   compression="none",  # the broker's limit applies to the (compressed) batch
                                   retry_backoff_initial_ms=200, retry_backoff_max_ms=500), stats=stats)
    p = Pipeline([sink], stats=stats, live=False)
    s = p.stream("k", "100")
    huge = os.urandom(10_000).hex()  # 20,000 characters

    def ev(rv: int, reason: str, message: str = "m") -> wire.Event:
        return wire.event({"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": reason,
                           "message": message,
                           "metadata": {"uid": f"u{rv}", "resourceVersion": str(rv), "namespace": "ns"}})
    with capture_logs() as logs:
        p.handle(s, "ADDED", ev(101, "Small"))
        # a huge message: cut to records.max_message_bytes (8 KiB), still over the topic's 4 KiB
        p.handle(s, "ADDED", ev(102, "Huge", huge))
        p.handle(s, "ADDED", ev(103, "Small"))
        wait_for(lambda: sink.condition is not None and stats.errors.get(("kafka", "message_too_large"), 0) >= 2,
                 30, "the refusal to be reported and retried")
        wait_for(lambda: p.commit() == {"k": "101"} and sink.in_flight()[0] == 1, 30,
                 "the records before and after it to be confirmed (refused with it while batched together)")
    assert sink.condition.kind == "message_too_large"
    loud = [x for x in logs if x["event"] == "sink_condition"]
    assert loud[0]["record_id"] == "u102:102" and loud[0]["record_bytes"] > 8_000
    assert "max.message.bytes" in loud[0]["fix"] and "records.max_record_bytes" in loud[0]["fix"]
    assert "max_message_bytes" not in loud[0]["fix"]   # the old hint (the message field only) could not help
    assert metric(sink, "kee_sink_condition", condition="message_too_large") == 1
    assert p.commit() == {"k": "101"}                   # 103 was delivered, but the checkpoint waits for 102
    with pytest.raises(SinkFatal):
        sink.close(1)
    assert p.commit() == {"k": "101"}
    got = kafka_broker.consume(topic, timeout=10, idle=2)
    assert sorted(orjson.loads(r.value)["reason"] for r in got) == ["Small", "Small"]
