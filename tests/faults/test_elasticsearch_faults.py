"""sinks.elasticsearch under faults, on the real control plane and a real OpenSearch node.

- OpenSearch down ~30 s mid-stream, the exporter SIGKILLed meanwhile and started
  again: every occurrence is a document exactly once (count = distinct
  occurrences), the re-delivered ones overwrote themselves (_version > 1).
- A mapping conflict rejects some documents for good: by on_rejected they go to
  the dead-letter file (and the checkpoint passes them) or are held (the
  checkpoint waits); either way the other records keep flowing.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.integration.test_elasticsearch_sink import es_args, start_exporter
from tests.support.events import Producer

pytestmark = pytest.mark.faults


def checkpoint_rv(tmp_path) -> int:
    p = tmp_path / "checkpoint.json"
    if not p.exists():
        return 0
    return int(next(iter(json.loads(p.read_text())["streams"].values()))["resource_version"])


def test_opensearch_down_30s_and_exporter_sigkilled_meanwhile_loses_nothing_and_duplicates_collapse(
        control_plane, opensearch, namespace, tmp_path):
    cp = control_plane
    prefix = f"kube-events-f{uuid.uuid4().hex[:6]}"
    index = f"{prefix}-*"
    # a 3 s checkpoint interval: the first exporter dies with documents stored but not yet checkpointed
    args = ["--namespace", namespace, *es_args(opensearch, prefix), "--set", "checkpoint.interval_seconds=3"]
    runs = []
    try:
        with Producer(cp, namespace, rate=10) as prod:
            first = start_exporter(cp, tmp_path, *args, name="first")
            runs.append(first)
            opensearch.wait_for_count(index, 30, timeout=60)
            down = time.monotonic()
            opensearch.stop()
            time.sleep(10)
            first.kill()  # SIGKILL while OpenSearch is away: its unacknowledged records are gone with it
            second = start_exporter(cp, tmp_path, *args, name="second")
            runs.append(second)
            second.wait_log("elasticsearch_template_failed", 30)  # it keeps trying while the node is down
            time.sleep(max(0.0, 30 - (time.monotonic() - down)))
            opensearch.start()
            outage = time.monotonic() - down
            time.sleep(5)
        made = {f"{m['metadata']['uid']}:{m['metadata']['resourceVersion']}" for m in prod.created}
        opensearch.wait_for_count(index, len(made), timeout=90)
        assert second.terminate() == 0
        ans = opensearch.search(index, {"query": {"match_all": {}}, "size": 10000, "version": True})
        got = [h["_id"] for h in ans["hits"]["hits"]]
        assert len(got) == len(set(got)) == opensearch.count(index)
        assert set(got) == made, f"{len(made - set(got))} lost, {len(set(got) - made)} unexpected"
        overwritten = sum(h["_version"] > 1 for h in ans["hits"]["hits"])
        resent = len({r["id"] for r in first.snapshot()} & {r["id"] for r in second.snapshot()})
        assert resent > 0 and overwritten > 0, (resent, overwritten)
        print(f"\nOpenSearch down {outage:.0f}s + SIGKILL: {len(made)} events, 0 lost, {resent} sent again, "
              f"{overwritten} documents overwritten by _id, documents = distinct occurrences")
    finally:
        for e in runs:
            e.stop()
        if not opensearch.process.alive():
            opensearch.start()


def _conflict_index(opensearch) -> str:
    """An index where source_host is an IP: the test's core/v1 Events (source host "node-a") are rejected
    with a 400 mapper_parsing_exception, the events.k8s.io ones (no source host) are stored."""
    name = f"kee-conflict-{uuid.uuid4().hex[:6]}"
    opensearch.ok("PUT", name, {"mappings": {"properties": {"source_host": {"type": "ip"}}}})
    return name


@pytest.mark.parametrize("policy", ["dead_letter", "hold"])
def test_mapping_conflict_follows_on_rejected_without_blocking_the_stream(
        control_plane, opensearch, namespace, tmp_path, policy):
    cp = control_plane
    index = _conflict_index(opensearch)
    dead = tmp_path / "dead-letter.jsonl"
    exp = start_exporter(cp, tmp_path, "--namespace", namespace, *es_args(opensearch, index),
                         "--set", f"sinks.elasticsearch.index={index}", "--set", "sinks.elasticsearch.manage_template=false",
                         "--set", f"sinks.elasticsearch.on_rejected={policy}",
                         "--set", f"sinks.elasticsearch.dead_letter={dead}")
    try:
        exp.wait_log("elasticsearch_sink_started")
        with Producer(cp, namespace, rate=10) as prod:
            time.sleep(4)
        core = {f"{m['metadata']['uid']}:{m['metadata']['resourceVersion']}": m for m in prod.created
                if m["apiVersion"] == "v1"}
        v1 = {f"{m['metadata']['uid']}:{m['metadata']['resourceVersion']}" for m in prod.created
              if m["apiVersion"] != "v1"}
        assert core and v1
        opensearch.wait_for_count(index, len(v1), timeout=30)
        exp.wait_for(lambda r: len(r) >= len(prod.created), 30)
        rejected = [e for e in exp.logs() if e.get("event") == "elasticsearch_document_rejected"]
        wait_deadline = time.monotonic() + 20
        while {e["id"] for e in rejected} < set(core) and time.monotonic() < wait_deadline:
            time.sleep(0.3)
            rejected = [e for e in exp.logs() if e.get("event") == "elasticsearch_document_rejected"]
        assert {e["id"] for e in rejected} >= set(core)
        assert all(e["status"] == 400 and e["error_type"] == "mapper_parsing_exception" and "source_host" in e["reason"]
                   and e["policy"] == policy for e in rejected)
        assert {h["_id"] for h in opensearch.hits(index)} == v1, "the stream went on around the rejected documents"
        time.sleep(1.5)  # a checkpoint save
        first_core_rv = min(int(m["metadata"]["resourceVersion"]) for m in core.values())
        last_rv = max(int(m["metadata"]["resourceVersion"]) for m in prod.created)
        if policy == "dead_letter":
            lines = [json.loads(x) for x in dead.read_text().splitlines()]
            assert {x["id"] for x in lines} == set(core)
            assert all(x["status"] == 400 and x["document"]["id"] == x["id"] for x in lines)
            assert checkpoint_rv(tmp_path) >= last_rv, "dead-lettered records are acknowledged"
        else:
            assert not dead.exists() or dead.read_text() == ""
            assert checkpoint_rv(tmp_path) < first_core_rv, "the checkpoint waits for a held record"
        assert exp.terminate() == 0
        if policy == "hold":
            assert "elasticsearch_close_held" in exp.log_events()
    finally:
        exp.stop()
        opensearch.delete_index(index)
