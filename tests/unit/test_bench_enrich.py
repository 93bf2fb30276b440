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


def test_enrich_table_renders_every_part():
    side = {k: {"received": 10, "cpu_us_per_event": 300.0, "cpu_s": 1.0 + (k == "on"), "rss_max_mib": 40.0,
                "rss_end_mib": 39.0, "enrichment": {"complete": 10}} for k in ("off", "on")}
    a = {"events": 10, "achieved_rate": 100.0, "load_s": 60.0, "side": side, "requests": 5.0, "requests_per_min": 5.0,
         "bytes_per_request": 3000.0, "distinct_pods_touched": 4, "cache_entries": 8.0, "cache_bytes": 1e4,
         "wait_s": None, "apiserver_cpu_s": 3.0, "audit": {}}
    variant = {"objects": 10000, "list_bytes": 3e7, "apiserver_list_cpu_s": 1.5, "list_cpu_s": 2.0,
               "rss_before_kib": 20000, "rss_listed_kib": 40000, "rss_peak_kib": 60000, "watch_events": 3000,
               "watch_bytes": 9e6, "watch_cpu_s": 0.3}
    r = {"A": a, "rate": 100.0, "pods": 10000, "deployments": 200,
         "get_sizes": {"Pod metadata": {"bytes": 2000, "ms_p50": 2.0, "apiserver_cpu_us": 900.0}},
         "E": {"variants": {"Pod full": variant}, "pod_patches": 3000, "rs_patches": 300, "churn_s": 30.0,
               "apiserver_cpu_churn_s": 9.0},
         "B": {"events": 100000, "achieved_rate": 300.0, "received": 100000, "cpu_us_per_event": 700.0,
               "rss_start_mib": 30.0, "rss_max_mib": 70.0, "rss_end_mib": 69.0, "cache_entries": 50000.0,
               "cache_bytes": 3e7, "evictions": 50000.0, "requests": 100000.0, "enrichment": {"complete": 10000}},
         "D": {"n": 100000, "rss_before_kib": 20000, "rss_after_kib": 54000, "entries": 17000, "bytes": 3e7,
               "evictions": 83000}}
    text = enrich_table(r)
    pod_full = next(line for line in text.splitlines() if line.startswith("| Pod full"))
    assert "| 3000 |" in pod_full  # bytes per watch event: 9e6 / 3000
    assert "| 100 |" in pod_full    # client CPU us per watch event: 0.3 s / 3000
    assert "100,000 distinct Pods" in text and "+33.2 MiB" in text
