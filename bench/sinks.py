"""Benchmark 2: replay to the local Kafka broker, OTLP Collector (gRPC, HTTP) and OpenSearch, beside stdout.

Each run replays the same cached stream with one sink enabled; the exporter exits
only after its sinks confirmed (or gave up on) every record (close_sinks), so the
wall time covers delivery. Delivery is checked after each run: the Kafka topic's
high watermark, the log records the Collector received, the documents in the
run's OpenSearch index (`elasticsearch`: not in the default set, ask for it with
--sinks).

Two receivers for OTLP, one Collector each (tests/components/collector.py):

- ``otlp-grpc``, ``otlp-http``: the Collector's pipeline ends in its **file exporter**;
  delivery is the number of log records in the file (OTLP/JSON, read back): the content
  is verified end to end. The file exporter (JSON encoding, a write per request) costs
  the Collector about as much CPU per record as the exporter spends sending it, and
  both share the machine's cores: these figures are bounded by the Collector's writer.
- ``otlp-grpc-debug``, ``otlp-http-debug``: the pipeline ends in the **debug exporter**
  (verbosity basic: one log line per request); delivery is the Collector's own count,
  ``otelcol_receiver_accepted_log_records`` on its metrics endpoint. The Collector
  still receives and decodes every request and answers it after its pipeline took
  the records, so the sink's confirmation is the same; these figures measure the sink.
"""
from __future__ import annotations

import os
import sys
import uuid

from bench.common import (
    REPO,
    archive_commit,
    count_lines,
    exporter_argv,
    log,
    median,
    proc_cpu,
    run_measured,
    stream,
    wait_venv,
)
from bench.replay import _check, replay_done

SINKS = ("stdout", "kafka", "otlp-grpc", "otlp-http", "otlp-grpc-debug", "otlp-http-debug")
#: The Collector's exporter behind each OTLP bench sink (see the module docstring).
#: The sinks a `--sinks-before` commit runs too (elasticsearch came later than the issue-16 baseline).
BEFORE_SINKS = ("stdout", "kafka", "otlp-grpc", "otlp-http", "otlp-grpc-debug", "otlp-http-debug")
OTLP_RECEIVERS = {"otlp-grpc": "file", "otlp-http": "file", "otlp-grpc-debug": "debug", "otlp-http-debug": "debug"}
RECEIVER_NOTE = {
    "file": "Collector, file exporter: delivered = log records in its file (content verified)",
    "debug": "Collector, debug exporter (basic): delivered = otelcol_receiver_accepted_log_records",
}


def _components():
    sys.path.insert(0, str(REPO))
    from tests.components import Collector, KafkaBroker, OpenSearch
    return Collector, KafkaBroker, OpenSearch


def kafka_count(broker, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer(broker.client_config(**{"group.id": f"kee-bench-{uuid.uuid4().hex[:6]}"}))
    try:
        md = c.list_topics(topic, timeout=10).topics[topic]
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in md.partitions)
    finally:
        c.close()


def collector_count(col, start: int) -> tuple[int, int]:
    """Log records written by the Collector's file exporter after byte offset `start` (and the new end)."""
    import orjson
    n = 0
    with open(col.output_path, "rb") as f:
        f.seek(start)
        data = f.read()
    for line in data.splitlines():
        if line.strip():
            req = orjson.loads(line)
            for rl in req.get("resourceLogs", []):
                for sl in rl.get("scopeLogs", []):
                    n += len(sl.get("logRecords", []))
    return n, start + len(data)


def _sink_args(s: str, broker, col, topic: str, es=None) -> list:
    if s == "elasticsearch":
        return ["--set", "sinks.stdout.enabled=false", "--set", "sinks.elasticsearch.enabled=true",
                "--set", f"sinks.elasticsearch.url={es.url}", "--set", f"sinks.elasticsearch.index={topic}",
                "--set", "sinks.elasticsearch.manage_template=true",
                "--set", f"sinks.elasticsearch.template_patterns=['{topic}']"]
    if s == "kafka":
        return ["--set", "sinks.stdout.enabled=false", "--set", "sinks.kafka.enabled=true",
                "--set", f"sinks.kafka.brokers={broker.bootstrap_servers}", "--set", f"sinks.kafka.topic={topic}"]
    if s.startswith("otlp"):
        proto = "grpc" if s.startswith("otlp-grpc") else "http/protobuf"
        endpoint = f"http://{col.grpc_endpoint}" if proto == "grpc" else col.http_endpoint
        return ["--set", "sinks.stdout.enabled=false", "--set", "sinks.otlp.enabled=true",
                "--set", f"sinks.otlp.endpoint={endpoint}", "--set", f"sinks.otlp.protocol={proto}"]
    return []


def bench_sinks(lines: int = 100_000, runs: int = 3, sinks=SINKS, before: str | None = None) -> dict:
    """Each sink in turn, alternating; ``before`` (a commit): its exporter too, same runs (not for elasticsearch:
    older commits have no such sink)."""
    wait_venv()
    Collector, KafkaBroker, OpenSearch = _components()
    src = stream(lines)
    n = count_lines(src)
    broker = es = None
    cols: dict = {}  # the Collector's exporter ("file", "debug") -> the Collector
    res: dict = {"lines": n, "runs": runs, "sinks": {}}
    try:
        if "kafka" in sinks:
            log("starting the Kafka broker")
            broker = KafkaBroker().start()
        for exp in sorted({OTLP_RECEIVERS[s] for s in sinks if s in OTLP_RECEIVERS}):
            log(f"starting the OTLP Collector ({exp} exporter)")
            cols[exp] = Collector(exporter=exp, name=f"otelcol-{exp}").start()
        if "elasticsearch" in sinks:
            log("starting OpenSearch")
            es = OpenSearch().start()
        runs_by: dict[str, list] = {s: [] for s in sinks}
        other_cpu: dict[str, list] = {s: [] for s in sinks}
        old_by: dict[str, list] = {s: [] for s in sinks}
        before_sha = before_root = None
        if before:
            before_sha, before_root = archive_commit(before)

        def one(s: str, devnull, root=None) -> tuple[dict, float | None]:
            """One replay of the stream to sink ``s`` (``root``: another commit's exporter); delivery checked."""
            args = ["replay", src]
            comp_pid = None
            check = None
            if s == "kafka":
                topic = broker.create_topic(f"bench-{uuid.uuid4().hex[:8]}")
                args += _sink_args(s, broker, None, topic)
                comp_pid = broker.process.pid
                check = lambda topic=topic: kafka_count(broker, topic)  # noqa: E731
            elif s == "elasticsearch":
                index = f"bench-{uuid.uuid4().hex[:8]}"
                args += _sink_args(s, broker, None, index, es)
                comp_pid = es.process.pid
                check = lambda index=index: es.count(index)  # noqa: E731
            elif s in OTLP_RECEIVERS:
                col = cols[OTLP_RECEIVERS[s]]
                args += _sink_args(s, broker, col, "")
                comp_pid = col.process.pid
                if col.exporter == "file":
                    start = col.output_path.stat().st_size if col.output_path.exists() else 0
                    check = lambda col=col, start=start: collector_count(col, start)[0]  # noqa: E731
                else:
                    before_n = col.accepted_log_records()
                    check = lambda col=col, b=before_n: col.accepted_log_records() - b  # noqa: E731
            c0 = proc_cpu(comp_pid) if comp_pid else None
            r = run_measured(exporter_argv(*args), stdout=devnull, timeout=600, cwd=root)
            _check(r, f"replay to {s}" + (f" ({before_sha})" if root else ""))
            delivered = None
            if check:
                import time
                time.sleep(0.3 if s == "kafka" else 0.6)  # the file exporter flushes every 100 ms
                delivered = check()
            c1 = proc_cpu(comp_pid) if comp_pid else None
            recs = replay_done(r.stderr).get("occurrences") or 0
            run = {"cpu": r.cpu, "wall": r.wall, "records": recs, "delivered": delivered, "maxrss_kb": r.maxrss_kb}
            return run, (c1 - c0 if c0 is not None and c1 is not None else None)

        with open(os.devnull, "wb") as devnull:
            for i in range(runs):
                order = list(sinks) if i % 2 == 0 else list(reversed(sinks))
                for s in order:
                    sides = ["after"] + (["before"] if before_root and s in BEFORE_SINKS else [])
                    for side in sides if i % 2 == 0 else sides[::-1]:
                        run, other = one(s, devnull, before_root if side == "before" else None)
                        if side == "before":
                            old_by[s].append(run)
                        else:
                            runs_by[s].append(run)
                            if other is not None:
                                other_cpu[s].append(other)
                        log(f"sinks run {i + 1}/{runs} {s}{f' before ({before_sha})' if side == 'before' else ''}: "
                            f"{run['records']} records in {run['wall']:.2f}s wall, {run['cpu']:.2f}s CPU"
                            + (f", delivered {run['delivered']}" if run["delivered"] is not None else ""))
        # fixed cost (interpreter start, imports, sink set-up and close) on an empty input, per sink
        fixed: dict[str, float] = {}
        with open(os.devnull, "wb") as devnull:
            for s in sinks:
                topic = broker.create_topic(f"bench-empty-{uuid.uuid4().hex[:6]}") if s == "kafka" else ""
                if s == "elasticsearch":
                    topic = f"bench-empty-{uuid.uuid4().hex[:6]}"
                args = ["replay", os.devnull] + _sink_args(s, broker, cols.get(OTLP_RECEIVERS.get(s, "")), topic, es)
                fixed[s] = median(run_measured(exporter_argv(*args), stdout=devnull, timeout=120).cpu for _ in range(2))
        for s in sinks:
            rs = runs_by[s]
            recs = rs[-1]["records"]
            wall = median(x["wall"] for x in rs)
            cpu = median(x["cpu"] for x in rs)
            res["sinks"][s] = {
                "records": recs, "wall_median_s": wall, "cpu_median_s": cpu,
                "records_per_s": recs / wall if wall else 0.0,
                "cpu_us_per_record": cpu / recs * 1e6 if recs else 0.0,
                "fixed_cpu_s": fixed[s],
                "marginal_cpu_us_per_record": (cpu - fixed[s]) / recs * 1e6 if recs else 0.0,
                "maxrss_mib": max(x["maxrss_kb"] for x in rs) / 1024,
                "delivered": [x["delivered"] for x in rs],
                "receiver_cpu_median_s": median(other_cpu[s]) if other_cpu[s] else None,
                "walls": [round(x["wall"], 3) for x in rs], "cpus": [round(x["cpu"], 3) for x in rs],
            }
            olds = old_by[s]
            if olds:
                ow, oc, orecs = median(x["wall"] for x in olds), median(x["cpu"] for x in olds), olds[-1]["records"]
                res["sinks"][s]["before"] = {
                    "commit": before_sha, "records_per_s": orecs / ow if ow else 0.0,
                    "cpu_us_per_record": oc / orecs * 1e6 if orecs else 0.0, "cpus": [round(x["cpu"], 3) for x in olds],
                    "walls": [round(x["wall"], 3) for x in olds], "delivered": [x["delivered"] for x in olds],
                    "after_vs_before_cpu": median(a["cpu"] / b["cpu"] for a, b in zip(rs, olds, strict=False)),
                }
            if s in OTLP_RECEIVERS:
                rc = res["sinks"][s]["receiver_cpu_median_s"]
                res["sinks"][s]["receiver"] = RECEIVER_NOTE[OTLP_RECEIVERS[s]]
                res["sinks"][s]["receiver_cpu_us_per_record"] = rc / recs * 1e6 if rc is not None and recs else None
        base = res["sinks"].get("stdout")
        if base:
            for v in res["sinks"].values():
                v["cpu_vs_stdout"] = v["cpu_median_s"] / base["cpu_median_s"]
        return res
    finally:
        for comp in (es, *cols.values(), broker):
            if comp is not None:
                try:
                    comp.stop()
                except Exception as e:  # noqa: BLE001
                    log(f"stopping {comp!r}: {e}")
                if not os.environ.get("KEE_KEEP_TMP"):
                    import shutil
                    shutil.rmtree(comp.dir, ignore_errors=True)
