"""Benchmark 6: the cost of enrichment (issue 13), on a real apiserver, off and on side by side.

The cluster: D Deployments, each owning one ReplicaSet owning P/D Pods bound to fake
(KWOK-style) nodes, created straight through the API with their ownerReferences, labels
and nodeName — what the controllers would have made, without the controller-manager,
scheduler and KWOK burning CPU beside the measurement (etcd + kube-apiserver only, as
benchmarks 3 and 5). Enrichment reads exactly what it would read in a real cluster.

A. Same load, two exporters at once: Events POSTed at R/s about the Pods, the Pod picked
   Zipf-like (rank k with weight 1/k^1.1), watched by one exporter with enrichment off and one
   with it on (defaults). Per exporter: CPU per Event, RSS, and from the enriched one's
   /metrics: API requests/min, bytes read, cache hits, partial records.
B. Many distinct objects: Events about N distinct Pod names (the real Pods, then names that
   do not exist: 404s, negative entries) with the rate limit lifted so every one is looked
   up; RSS over time against the documented bound (128 MiB), cache entries/bytes at the end.
C. One object, read 50 times each way: metadata-only GET vs full GET (bytes, latency), for
   a Pod and a ReplicaSet: why Pods are read whole only for spec.nodeName.
D. The cache at its bounds, in a process of its own (no apiserver): N distinct Pods' metadata
   (6 labels, an owner) parsed and cached with the default bounds; VmRSS before and after.
"""
from __future__ import annotations

import bisect
import http.client
import json
import random
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from bench import common
from bench.common import RssSampler, log, median, proc_cpu, vmrss_kb, wait_venv
from bench.kube import _die_with_parent, end, paced

ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _metrics(port: int) -> dict[str, float]:
    """Unlabelled sums of every kee_enrich_* sample (labelled ones keyed name{labels})."""
    out: dict[str, float] = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        if line.startswith("kee_enrich") or line.startswith("kee_events_received"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


class Api:
    """Admin HTTPS to the apiserver on one kept-alive connection."""

    def __init__(self, cp) -> None:
        host, port = cp.server.removeprefix("https://").split(":")
        self.conn = http.client.HTTPSConnection(host, int(port), timeout=30,
                                                context=ssl.create_default_context(cafile=str(cp.ca_path)))
        self.auth = {"Authorization": f"Bearer {cp.admin_token}"}

    def call(self, method: str, path: str, body: dict | None = None, accept: str = "application/json"):
        headers = {**self.auth, "Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(3):
            try:
                self.conn.request(method, path, data, headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                if attempt == 2:
                    raise
                self.conn.close()
        raise RuntimeError("unreachable")

    def create(self, path: str, body: dict) -> dict:
        status, raw = self.call("POST", path, body)
        if status != 201:
            raise RuntimeError(f"POST {path}: {status} {raw[:300]!r}")
        return json.loads(raw)


def _pod(ns: str, name: str, dep: str, rs: dict, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"app": dep, "app.kubernetes.io/name": dep, "app.kubernetes.io/part-of": "shop",
                                    "pod-template-hash": "5d8f7c9b4", "team": "payments", "version": "1.4.2"},
                         "annotations": {"kee.example/owner": "payments@example.com"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": rs["metadata"]["name"], "uid": rs["metadata"]["uid"],
                                              "controller": True, "blockOwnerDeletion": True}]},
            "spec": {"nodeName": node, "automountServiceAccountToken": False,
                     "containers": [{"name": "app", "image": f"registry.example/{dep}:1.4.2",
                                     "ports": [{"containerPort": 8080, "name": "http"}],
                                     "env": [{"name": "MODE", "value": "production"},
                                             {"name": "LOG_LEVEL", "value": "info"}],
                                     "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                                   "limits": {"memory": "256Mi"}},
                                     "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}}


def build_cluster(cp, api: Api, ns: str, pods: int, deployments: int, nodes: int = 20) -> list[dict]:
    """D Deployments -> 1 ReplicaSet each -> P/D Pods (ownerReferences, labels, nodeName). Returns the Pods."""
    api.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
    out = []
    per = pods // deployments
    for d in range(deployments):
        dep_name = f"svc-{d:03d}"
        sel = {"matchLabels": {"app": dep_name}}
        tmpl = {"metadata": {"labels": {"app": dep_name}},
                "spec": {"containers": [{"name": "app", "image": "registry.example/x:1"}]}}
        dep = api.create(f"/apis/apps/v1/namespaces/{ns}/deployments",
                         {"metadata": {"name": dep_name, "labels": {"app": dep_name}},
                          "spec": {"replicas": per, "selector": sel, "template": tmpl}})
        rs = api.create(f"/apis/apps/v1/namespaces/{ns}/replicasets", {
            "metadata": {"name": f"{dep_name}-5d8f7c9b4", "labels": {"app": dep_name},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": dep_name,
                                              "uid": dep["metadata"]["uid"], "controller": True}]},
            "spec": {"replicas": per, "selector": sel, "template": tmpl}})
        for i in range(per):
            node = f"kwok-node-{(d * per + i) % nodes}"
            body = _pod(ns, f"{dep_name}-5d8f7c9b4-{i:04d}", dep_name, rs, node)
            p = api.create(f"/api/v1/namespaces/{ns}/pods", body)
            out.append({"name": p["metadata"]["name"], "uid": p["metadata"]["uid"]})
        if d % 10 == 9:
            log(f"  {len(out)} pods under {d + 1} deployments")
    return out


def _event(ns: str, i: int, pod: dict) -> dict:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"bench-{uuid.uuid4().hex[:12]}", "namespace": ns},
            "involvedObject": {"kind": "Pod", "name": pod["name"], "namespace": ns, "uid": pod["uid"],
                               "apiVersion": "v1", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff" if i % 3 else "Unhealthy", "type": "Warning", "count": 1,
            "message": f"Back-off restarting failed container app in pod {pod['name']} ({i})",
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "kee-bench"}}


def zipf_picker(n: int, s: float = 1.1, seed: int = 13):
    cum, acc = [], 0.0
    for k in range(1, n + 1):
        acc += 1.0 / k ** s
        cum.append(acc)
    rnd = random.Random(seed)
    order = list(range(n))
    rnd.shuffle(order)  # the hot pods are spread over the Deployments
    return lambda: order[bisect.bisect_left(cum, rnd.random() * acc)]


class Exp:
    def __init__(self, cp, ns: str, workdir: Path, name: str, extra: list[str]) -> None:
        self.port = _free_port()
        self.out = workdir / f"{name}.jsonl"
        f = open(self.out, "wb")
        err = open(workdir / f"{name}.stderr", "wb")
        self.p = subprocess.Popen(common.exporter_argv(
            "run", "--kubeconfig", cp.kubeconfig, "--namespace", ns, "--listen", f"127.0.0.1:{self.port}",
            "--log-level", "warning", "--set", "kubernetes.initial=now", *extra),
            stdout=f, stderr=err, stdin=subprocess.DEVNULL, cwd=common.EXPORTER_ROOT, preexec_fn=_die_with_parent)
        f.close()
        err.close()
        self.rss = RssSampler(self.p.pid, 0.5)

    def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"exporter on :{self.port} never became ready")

    def lines(self) -> int:
        return self.out.read_bytes().count(b"\n") if self.out.exists() else 0

    def enrichment_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for line in self.out.read_bytes().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            k = r.get("enrichment") or "off"
            if k == "partial":
                k = "partial:" + str(r.get("enrichment_reason"))
            out[k] = out.get(k, 0) + 1
        return out


def _post_load(cp, ns: str, rate: float, seconds: float, pick) -> tuple[int, float]:
    """POST Events at `rate` for `seconds` (open loop, one connection); returns (count, achieved rate)."""
    api = Api(cp)
    t0 = time.monotonic()
    n = 0
    for i in paced(rate, duration=seconds):
        api.create(f"/api/v1/namespaces/{ns}/events", _event(ns, i, pick()))
        n += 1
    return n, n / (time.monotonic() - t0)


def _wait_lines(exps: list[Exp], n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(e.lines() < n for e in exps):
        time.sleep(0.5)


def _get_sizes(cp, ns: str, pod: str, rs: str, reps: int = 50) -> dict:
    api = Api(cp)
    out = {}
    for what, path in (("Pod", f"/api/v1/namespaces/{ns}/pods/{pod}"),
                       ("ReplicaSet", f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs}")):
        for mode, accept in (("metadata", ACCEPT_METADATA), ("full", "application/json")):
            times, size = [], 0
            for _ in range(reps):
                t0 = time.perf_counter()
                status, raw = api.call("GET", path, accept=accept)
                times.append((time.perf_counter() - t0) * 1000)
                assert status == 200, raw[:200]
                size = len(raw)
            out[f"{what} {mode}"] = {"bytes": size, "ms_p50": median(times)}
    return out


CACHE_FILL = """
import sys, uuid, orjson
from exporter.kube.metadata import MetadataReader, Selector
from exporter.settings import EnrichSettings
from exporter.transforms.metacache import MetaCache

def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

n = int(sys.argv[1])
d = EnrichSettings()
r = MetadataReader(None, labels=Selector(d.labels), annotations=Selector(d.annotations), pod_node=True, timeout=1)
c = MetaCache(max_entries=d.cache_max_entries, max_bytes=d.cache_max_bytes, ttl=300, negative_ttl=30)
labels = {"app": "svc", "app.kubernetes.io/name": "svc", "app.kubernetes.io/part-of": "shop",
          "pod-template-hash": "5d8f7c9b4", "team": "payments", "version": "1.4.2"}
before = rss()
for i in range(n):
    name = "svc-%03d-5d8f7c9b4-%06d" % (i % 200, i)
    raw = orjson.dumps({"metadata": {"name": name, "namespace": "shop-%d" % (i % 20), "uid": str(uuid.uuid4()),
        "labels": labels, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": name[:17], "uid": str(uuid.uuid4()), "controller": True}]},
        "spec": {"nodeName": "node-%d" % (i % 100)}})
    m = r.parse(raw, "shop-%d" % (i % 20), name)
    c.put(("", "Pod", "shop-%d" % (i % 20), name), m, m.size)
print(orjson.dumps({"n": n, "rss_before_kib": before, "rss_after_kib": rss(), "entries": len(c),
                    "bytes": c.bytes, "evictions": c.evictions}).decode())
"""


def cache_fill(n: int = 100_000) -> dict:
    out = subprocess.run([common.python(), "-c", CACHE_FILL, str(n)], cwd=common.EXPORTER_ROOT,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_enrich(cp, pods: int = 2000, deployments: int = 40, rate: float = 100.0, seconds: float = 60.0,
                 distinct: int = 20000, distinct_rate: float = 150.0) -> dict:
    wait_venv()
    ns = cp.create_namespace(f"bench-enrich-{uuid.uuid4().hex[:5]}", wait_default_sa=False)
    workdir = Path(cp.dir) / "bench-enrich"
    workdir.mkdir(exist_ok=True)
    api = Api(cp)
    log(f"enrich: creating {pods} pods under {deployments} deployments")
    t0 = time.monotonic()
    cluster = build_cluster(cp, api, ns, pods, deployments)
    out: dict = {"pods": len(cluster), "deployments": deployments, "rate": rate, "seconds": seconds,
                 "build_s": time.monotonic() - t0}
    out["get_sizes"] = _get_sizes(cp, ns, cluster[0]["name"], cluster[0]["name"].rsplit("-", 1)[0])

    # --- A: off and on, side by side, same Zipf load ---------------------------------------
    log(f"enrich A: {rate:.0f} Events/s for {seconds:.0f} s, Zipf over {len(cluster)} pods, off vs on")
    exps = {"off": Exp(cp, ns, workdir, "off", []),
            "on": Exp(cp, ns, workdir, "on", ["--set", "enrich.enabled=true"])}
    for e in exps.values():
        e.ready()
        e.rss.start()
    time.sleep(2)
    pick = zipf_picker(len(cluster))
    cpu0 = {k: proc_cpu(e.p.pid) or 0.0 for k, e in exps.items()}
    m0 = _metrics(exps["on"].port)
    t_load = time.monotonic()
    n, achieved = _post_load(cp, ns, rate, seconds, lambda: cluster[pick()])
    _wait_lines(list(exps.values()), n)
    load_s = time.monotonic() - t_load
    cpu1 = {k: proc_cpu(e.p.pid) or 0.0 for k, e in exps.items()}
    m1 = _metrics(exps["on"].port)
    a: dict = {"events": n, "achieved_rate": achieved, "load_s": load_s, "side": {}}
    for k, e in exps.items():
        samples = e.rss.stop()
        a["side"][k] = {"received": e.lines(), "cpu_us_per_event": (cpu1[k] - cpu0[k]) / max(n, 1) * 1e6,
                        "cpu_s": cpu1[k] - cpu0[k], "rss_max_mib": max(samples) / 1024 if samples else None,
                        "rss_end_mib": samples[-1] / 1024 if samples else None,
                        "enrichment": e.enrichment_counts()}
    reqs = m1.get("kee_enrich_api_requests_total", 0) - m0.get("kee_enrich_api_requests_total", 0)
    a["requests"] = reqs
    a["requests_per_min"] = reqs / load_s * 60
    a["bytes_per_request"] = ((m1.get("kee_enrich_api_bytes_total", 0) - m0.get("kee_enrich_api_bytes_total", 0))
                              / max(reqs, 1))
    a["distinct_pods_touched"] = len({json.loads(line)["object"]["uid"]
                                      for line in exps["on"].out.read_bytes().splitlines()})
    a["cache_entries"] = m1.get("kee_enrich_cache_entries")
    a["cache_bytes"] = m1.get("kee_enrich_cache_bytes")
    a["wait_s"] = m1.get("kee_enrich_wait_seconds_total")
    out["A"] = a
    for e in exps.values():
        end(e.p)

    # --- B: many distinct objects, every one looked up ----------------------------------------
    if distinct:
        log(f"enrich B: {distinct} distinct objects at {distinct_rate:.0f} Events/s, rate limit lifted")
        e = Exp(cp, ns, workdir, "distinct", ["--set", "enrich.enabled=true",
                                              "--set", "enrich.requests_per_second=100000",
                                              "--set", "enrich.burst=100000"])
        e.ready()
        e.rss.start()
        rss_start = vmrss_kb(e.p.pid)
        fake = ({"name": f"gone-{i:06d}", "uid": str(uuid.UUID(int=i))} for i in range(distinct))
        targets = iter([*cluster, *fake])
        total = min(distinct, len(cluster) + distinct)
        n_b, achieved_b = _post_load(cp, ns, distinct_rate, total / distinct_rate, lambda: next(targets))
        _wait_lines([e], n_b, 180)
        time.sleep(1)
        m = _metrics(e.port)
        samples = e.rss.stop()
        out["B"] = {"events": n_b, "achieved_rate": achieved_b, "received": e.lines(),
                    "rss_start_mib": (rss_start or 0) / 1024, "rss_max_mib": max(samples) / 1024,
                    "rss_end_mib": samples[-1] / 1024, "cache_entries": m.get("kee_enrich_cache_entries"),
                    "cache_bytes": m.get("kee_enrich_cache_bytes"),
                    "evictions": m.get("kee_enrich_cache_evictions_total"),
                    "requests": m.get("kee_enrich_api_requests_total"), "enrichment": e.enrichment_counts()}
        end(e.p)
    log("enrich D: 100000 distinct Pods through the cache at its default bounds")
    out["D"] = cache_fill(100_000)
    return out


def _f(x, fmt="{:.1f}"):
    return "-" if x is None else fmt.format(x)


def enrich_table(r: dict) -> str:
    from bench.report import table
    a = r["A"]
    rows = []
    for k in ("off", "on"):
        s = a["side"][k]
        rows.append([f"enrichment {k}", f"{s['received']}/{a['events']}", _f(s["cpu_us_per_event"], "{:.0f}"),
                     _f(s["rss_max_mib"]), _f(s["rss_end_mib"]),
                     _f(a["requests_per_min"], "{:.0f}") if k == "on" else "0",
                     ", ".join(f"{n} {c}" for c, n in sorted(s["enrichment"].items()))])
    text = table(["exporter", "records", "CPU us/Event", "max RSS MiB", "end RSS MiB", "API requests/min",
                  "records by enrichment"], rows)
    text += (f"\n\n{a['events']} Events POSTed at {r['rate']:.0f}/s (achieved {a['achieved_rate']:.0f}/s) about "
             f"{r['pods']} Pods under {r['deployments']} Deployments (one ReplicaSet each), the Pod picked "
             f"Zipf-like (s=1.1); both exporters watched the same namespace at the same time, the enriched one "
             f"with the defaults (rate limit 20 req/s, burst 100). {a['distinct_pods_touched']} distinct Pods were "
             f"touched; enrichment made {a['requests']:.0f} API requests ({a['bytes_per_request']:.0f} bytes each "
             f"on average), cache {a['cache_entries']:.0f} entries / {(a['cache_bytes'] or 0) / 1024:.0f} KiB, "
             f"the watch waited {a['wait_s'] or 0:.2f} s in all for lookups.")
    g = r.get("get_sizes") or {}
    if g:
        rows = [[k, str(v["bytes"]), _f(v["ms_p50"], "{:.2f}")] for k, v in g.items()]
        text += "\n\nOne object read 50 times each way (the Pod as this benchmark makes it):\n\n"
        text += table(["GET", "bytes", "ms p50"], rows)
    b = r.get("B")
    if b:
        text += (f"\n\nMany distinct objects, every one looked up (rate limit lifted): {b['events']} Events about "
                 f"{b['events']} distinct Pods ({r['pods']} real, the rest deleted: 404s), at "
                 f"{b['achieved_rate']:.0f}/s: RSS {b['rss_start_mib']:.1f} MiB at start, "
                 f"max {b['rss_max_mib']:.1f}, end {b['rss_end_mib']:.1f} MiB (bound: 128 MiB); cache "
                 f"{b['cache_entries']:.0f} entries / {(b['cache_bytes'] or 0) / 1048576:.1f} MiB "
                 f"(bounds 50000 / 32 MiB), {b['evictions']:.0f} evicted; "
                 + ", ".join(f"{n} {c}" for c, n in sorted(b["enrichment"].items())) + ".")
    d = r.get("D")
    if d:
        text += (f"\n\nThe cache at its bounds (in a process of its own): {d['n']:,} distinct Pods "
                 f"(6 labels and an owner each) cached with the default bounds: {d['entries']:,} kept, "
                 f"{d['evictions']:,} evicted, "
                 f"{d['bytes'] / 1048576:.1f} MiB counted; VmRSS {d['rss_before_kib'] / 1024:.1f} -> "
                 f"{d['rss_after_kib'] / 1024:.1f} MiB (+{(d['rss_after_kib'] - d['rss_before_kib']) / 1024:.1f} MiB).")
    return text


def main() -> None:
    import argparse
    p = argparse.ArgumentParser(prog="python -m bench.enrich")
    p.add_argument("--pods", type=int, default=2000)
    p.add_argument("--deployments", type=int, default=40)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--distinct", type=int, default=20000)
    p.add_argument("--json")
    args = p.parse_args()
    from bench import kube
    cp = kube.start_control_plane()
    try:
        r = bench_enrich(cp, args.pods, args.deployments, args.rate, args.seconds, args.distinct)
    finally:
        kube.stop(cp)
    print(enrich_table(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1, default=str))


if __name__ == "__main__":
    main()
