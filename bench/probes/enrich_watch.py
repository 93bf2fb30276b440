"""One LIST+WATCH of one resource, keeping what enrichment would keep; run by bench/enrich.py part E (issue 13).

    python -m bench.probes.enrich_watch SERVER CA TOKEN PATH ACCEPT SECONDS

What a watch-backed enrichment cache would do for one kind: LIST (pages of 500, as
client-go's reflector does when it paginates), keep per object only what enrichment uses (uid, labels,
the controller owner, spec.nodeName for Pods) in a dict, then WATCH from the list's
resourceVersion for SECONDS applying every ADDED/MODIFIED/DELETED. Prints "LISTED" once the
list is held (the parent measures the apiserver's CPU for the list up to that line), then
one JSON line: bytes read, objects, CPU seconds of this process for each phase, VmRSS before
the list, after it and at the end. ACCEPT "metadata" asks for PartialObjectMetadataList (no
spec: no nodeName), "full" for the objects themselves.
"""
from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time

import orjson

ACCEPT = {"metadata": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
          "full": "application/json"}
#: a watch's events carry single objects: PartialObjectMetadata, not the List type
WATCH_ACCEPT = {"metadata": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                "full": "application/json"}


def rss_kib(field: str = "VmRSS:") -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def keep(obj: dict) -> tuple:
    md = obj.get("metadata") or {}
    owner = None
    for ref in md.get("ownerReferences") or ():
        if ref.get("controller"):
            owner = (ref.get("kind"), ref.get("name"), ref.get("uid"))
    node = (obj.get("spec") or {}).get("nodeName")
    return (md.get("uid"), md.get("labels") or {}, owner, node)


def main() -> None:
    server, ca, token, path, accept, seconds = sys.argv[1:7]
    host, port = server.removeprefix("https://").split(":")
    ctx = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT[accept], "User-Agent": "kee-bench-watch-probe"}
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    store: dict[tuple, tuple] = {}
    rss0, c0, t0 = rss_kib(), cpu(), time.monotonic()
    list_bytes, cont, rv = 0, "", ""
    while True:
        q = f"{path}?limit=500" + (f"&continue={cont}" if cont else "")
        conn.request("GET", q, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            raise SystemExit(f"LIST {q}: {resp.status} {raw[:200]!r}")
        list_bytes += len(raw)
        doc = orjson.loads(raw)
        del raw
        for item in doc.get("items") or ():
            md = item.get("metadata") or {}
            store[(md.get("namespace"), md.get("name"))] = keep(item)
        meta = doc.get("metadata") or {}
        rv = meta.get("resourceVersion") or rv
        cont = meta.get("continue") or ""
        del doc
        if not cont:
            break
    list_s, c1, rss1 = time.monotonic() - t0, cpu(), rss_kib()
    print("LISTED", flush=True)
    wconn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=float(seconds) + 30)
    wconn.request("GET", f"{path}?watch=1&allowWatchBookmarks=true&resourceVersion={rv}"
                  f"&timeoutSeconds={int(float(seconds))}", headers={**headers, "Accept": WATCH_ACCEPT[accept]})
    resp = wconn.getresponse()
    if resp.status != 200:
        raise SystemExit(f"WATCH: {resp.status} {resp.read()[:200]!r}")
    watch_bytes = events = 0
    by_type: dict[str, int] = {}
    c2 = cpu()
    for line in resp:  # one JSON document per line; ends at timeoutSeconds
        watch_bytes += len(line)
        ev = orjson.loads(line)
        t = ev.get("type")
        by_type[t] = by_type.get(t, 0) + 1
        obj = ev.get("object") or {}
        md = obj.get("metadata") or {}
        if t in ("ADDED", "MODIFIED"):
            store[(md.get("namespace"), md.get("name"))] = keep(obj)
            events += 1
        elif t == "DELETED":
            store.pop((md.get("namespace"), md.get("name")), None)
            events += 1
    c3 = cpu()
    print(json.dumps({"accept": accept, "path": path, "objects": len(store), "list_bytes": list_bytes,
                      "list_s": list_s, "list_cpu_s": c1 - c0, "rss_before_kib": rss0, "rss_listed_kib": rss1,
                      "watch_events": events, "watch_by_type": by_type, "watch_bytes": watch_bytes,
                      "watch_cpu_s": c3 - c2, "rss_end_kib": rss_kib(),
                      "rss_peak_kib": rss_kib("VmHWM:")}), flush=True)


if __name__ == "__main__":
    main()
