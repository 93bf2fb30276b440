"""bench/enrich.py helpers that need no apiserver: the audit-log count by client, and the report table."""
from __future__ import annotations

import json
from types import SimpleNamespace

from bench.enrich import Audit, enrich_table


def _line(ua: str, verb: str, resource: str | None, uri: str = "/x") -> str:
    ev = {"kind": "Event", "stage": "ResponseComplete", "verb": verb, "userAgent": ua, "requestURI": uri}
    if resource:
        ev["objectRef"] = {"resource": resource, "namespace": "ns"}
    return json.dumps(ev) + "\n"


def test_audit_counts_reads_by_user_agent_from_a_mark(tmp_path):
    log = tmp_path / "audit.log"
    log.write_text(_line("kube-event-exporter", "watch", "events"))
    audit = Audit(SimpleNamespace(dir=tmp_path))
    mark = audit.mark()
    with open(log, "a") as f:
        f.write(_line("kube-event-exporter", "get", "pods"))
        f.write(_line("kube-event-exporter", "get", "pods"))
        f.write(_line("resmoio-exporter/v0.0.0 (linux/amd64) kubernetes/$Format", "get", "pods"))
        f.write(_line("resmoio-exporter/v0.0.0 (linux/amd64) kubernetes/$Format", "get", None, "/apis"))
        f.write("not json\n")
    got = audit.count(mark)
    assert got == {"kube-event-exporter": {"get pods": 2},
                   "resmoio-exporter": {"get pods": 1, "get discovery/non-resource": 1}}
    assert audit.count(0)["kube-event-exporter"]["watch events"] == 1


def test_enrich_table_puts_the_three_exporters_side_by_side():
    side = {k: {"received": 100, "cpu_us_per_event": c, "cpu_s": c / 1e4, "rss_max_mib": 40.0, "rss_end_mib": 39.0,
                "enrichment": e}
            for k, c, e in (("off", 250.0, {"off": 100}), ("on", 500.0, {"complete": 100}),
                            ("resmoio", 900.0, {"with labels": 100, "without": 0}))}
    a = {"events": 100, "achieved_rate": 100.0, "load_s": 60.0, "side": side, "requests": 50.0,
         "requests_per_min": 50.0, "bytes_per_request": 3000.0, "distinct_pods_touched": 40, "cache_entries": 80.0,
         "cache_bytes": 1e5, "wait_s": 0.5, "apiserver_cpu_s": 3.0,
         "audit": {"resmoio-exporter": {"get pods": 120, "get discovery/non-resource": 240}}}
    text = enrich_table({"A": a, "rate": 100.0, "pods": 10000, "deployments": 200})
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("|")}
    assert "resmoio (omitLookup: false)" in rows
    assert "| 360 |" in rows["resmoio (omitLookup: false)"]  # (120 + 240) per 60 s
    assert "| 900 |" in rows["resmoio (omitLookup: false)"]
