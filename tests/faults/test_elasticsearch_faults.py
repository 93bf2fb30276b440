"""sinks.elasticsearch under faults, on the real control plane and a real OpenSearch node.

- OpenSearch down ~30 s mid-stream, the exporter SIGKILLed meanwhile and started
  again: every occurrence is a document exactly once (count = distinct
  occurrences), the re-delivered ones overwrote themselves (_version > 1).
- A mapping conflict rejects some documents for good: by on_rejected they go to
  the dead-letter file (the checkpoint passes them, the stream keeps flowing),
  or they are held as a condition (the checkpoint waits) until a person fixes the
  mapping, and then everything arrives, nothing lost.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.components import wait_until
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
    args = ["--namespace", namespace, *es_args(opensearch, prefix)]
    # the first exporter saves no checkpoint before it dies: every document it stored is delivered again
    # by the second (the worst case of the at-least-once window), and must overwrite itself
    runs = []
    try:
        with Producer(cp, namespace, rate=10) as prod:
            first = start_exporter(cp, tmp_path, *args, "--set", "checkpoint.interval_seconds=100000",
                                   "--set", "checkpoint.file_interval_seconds=100000", name="first")
            runs.append(first)
            opensearch.wait_for_count(index, 30, timeout=60)
            down = time.monotonic()
            opensearch.stop()
            time.sleep(10)
            first.kill()  # SIGKILL while OpenSearch is away: its unacknowledged records are gone with it
            second = start_exporter(cp, tmp_path, *args, name="second")
            runs.append(second)
            second.wait_log("sink_delivery_failed_retrying", 30)  # it keeps trying while the node is down
            time.sleep(max(0.0, 30 - (time.monotonic() - down)))
            down_for = time.monotonic() - down
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
        assert overwritten >= 30 and resent >= overwritten, (resent, overwritten)
        print(f"\nOpenSearch stopped {down_for:.0f}s (answering again after {outage:.0f}s) + SIGKILL: "
              f"{len(made)} events, 0 lost, {resent} sent again, "
              f"{overwritten} documents overwritten by _id, documents = distinct occurrences")
    finally:
        for e in runs:
            e.stop()
        if not opensearch.process.alive():
            opensearch.start()


def _conflict_index(opensearch) -> str:
    """An alias whose write index maps source_host as an IP: the test's core/v1 Events (source host
    "node-a") are rejected with a 400 mapper_parsing_exception, the events.k8s.io ones (no source host)
    are stored. The sink writes to the alias, so a person can fix the mapping the usual way: roll over."""
    name = f"kee-conflict-{uuid.uuid4().hex[:6]}"
    opensearch.ok("PUT", f"{name}-000001", {"mappings": {"properties": {"source_host": {"type": "ip"}}},
                                           "aliases": {name: {"is_write_index": True}}})
    return name


def _roll_over_to_a_fixed_mapping(opensearch, name: str) -> None:
    opensearch.ok("PUT", f"{name}-000002", {"mappings": {"properties": {"source_host": {"type": "keyword"}}}})
    opensearch.ok("POST", "_aliases", {"actions": [
        {"add": {"index": f"{name}-000002", "alias": name, "is_write_index": True}},
        {"add": {"index": f"{name}-000001", "alias": name, "is_write_index": False}}]})


def test_mapping_conflict_goes_to_the_dead_letter_file_without_blocking_the_stream(
        control_plane, opensearch, namespace, tmp_path):
    cp = control_plane
    index = _conflict_index(opensearch)
    dead = tmp_path / "dead-letter.jsonl"
    exp = start_exporter(cp, tmp_path, "--namespace", namespace, *es_args(opensearch, index),
                         "--set", f"sinks.elasticsearch.index={index}",
                         "--set", "sinks.elasticsearch.manage_template=false",
                         "--set", "sinks.elasticsearch.on_rejected=dead_letter",
                         "--set", f"sinks.elasticsearch.dead_letter={dead}")
    try:
        exp.wait_log("elasticsearch_sink_started")
        with Producer(cp, namespace, rate=10) as prod:
            time.sleep(4)
        core, v1 = _split(prod.created)
        opensearch.wait_for_count(index, len(v1), timeout=30)
        exp.wait_for(lambda r: len(r) >= len(prod.created), 30)
        rejected = _wait_rejected(exp, set(core))
        assert all(e["status"] == 400 and e["error_type"] == "mapper_parsing_exception" and "source_host" in e["reason"]
                   and e["policy"] == "dead_letter" for e in rejected)
        assert {h["_id"] for h in opensearch.hits(index)} == v1, "the stream went on around the rejected documents"
        lines = [json.loads(x) for x in dead.read_text().splitlines()]
        assert {x["id"] for x in lines} == set(core)
        assert all(x["status"] == 400 and x["document"]["id"] == x["id"] for x in lines)
        last_rv = max(int(m["metadata"]["resourceVersion"]) for m in prod.created)
        wait_until(lambda: checkpoint_rv(tmp_path) >= last_rv, 10, "the checkpoint past the dead-lettered records")
        assert exp.terminate() == 0
    finally:
        exp.stop()
        opensearch.delete_index(f"{index}-*")


def test_mapping_conflict_with_on_rejected_hold_is_a_condition_until_the_mapping_is_fixed(
        control_plane, opensearch, namespace, tmp_path):
    cp = control_plane
    index = _conflict_index(opensearch)
    exp = start_exporter(cp, tmp_path, "--namespace", namespace, *es_args(opensearch, index),
                         "--set", f"sinks.elasticsearch.index={index}",
                         "--set", "sinks.elasticsearch.manage_template=false",
                         "--set", "sinks.elasticsearch.on_rejected=hold")
    try:
        exp.wait_log("elasticsearch_sink_started")
        with Producer(cp, namespace, rate=10) as prod:
            time.sleep(4)
        core, v1 = _split(prod.created)
        exp.wait_for(lambda r: len(r) >= len(prod.created), 30)
        rejected = _wait_rejected(exp, {min(core, key=lambda k: int(core[k]["metadata"]["resourceVersion"]))})
        assert all(e["policy"] == "hold" for e in rejected)
        cond = exp.wait_log("sink_condition")
        assert cond["condition"] == "rejected" and cond["setting"] == "sinks.elasticsearch.on_rejected"
        first_core_rv = min(int(m["metadata"]["resourceVersion"]) for m in core.values())
        time.sleep(1.5)  # checkpoint saves
        assert checkpoint_rv(tmp_path) < first_core_rv, "the checkpoint waits for a held record"
        assert not set(core) & {h["_id"] for h in opensearch.hits(index)}
        # a person fixes the mapping: a new write index with source_host as a keyword behind the alias
        _roll_over_to_a_fixed_mapping(opensearch, index)
        made = set(core) | v1
        opensearch.wait_for_count(index, len(made), timeout=60)
        assert {h["_id"] for h in opensearch.hits(index)} == made, "held, then delivered: nothing lost"
        last_rv = max(int(m["metadata"]["resourceVersion"]) for m in prod.created)
        wait_until(lambda: checkpoint_rv(tmp_path) >= last_rv, 15, "the checkpoint past the held records")
        assert exp.terminate() == 0
    finally:
        exp.stop()
        opensearch.delete_index(f"{index}-*")


def _split(created: list[dict]) -> tuple[dict[str, dict], set[str]]:
    """(core/v1 Events by record id: rejected, events.k8s.io ids: stored) of what the Producer made."""
    core = {f"{m['metadata']['uid']}:{m['metadata']['resourceVersion']}": m for m in created if m["apiVersion"] == "v1"}
    v1 = {f"{m['metadata']['uid']}:{m['metadata']['resourceVersion']}" for m in created if m["apiVersion"] != "v1"}
    assert core and v1
    return core, v1


def _wait_rejected(exp, ids: set[str], timeout: float = 20) -> list[dict]:
    def logged():
        got = [e for e in exp.logs() if e.get("event") == "elasticsearch_document_rejected"]
        return got if {e["id"] for e in got} >= ids else None
    return wait_until(logged, timeout, "elasticsearch_document_rejected for each conflicting record")
