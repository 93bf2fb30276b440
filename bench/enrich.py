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
E. Watches instead of GETs (the per-kind decision, docs/design.md): for Pods (full objects:
   spec.nodeName), Pods metadata-only and ReplicaSets metadata-only, what a watch-backed cache
   would cost: one paginated LIST+WATCH each (bench/probes/enrich_watch.py, keeping what enrichment keeps),
   its bytes, CPU and memory, the apiserver's CPU for the LIST, then the watch stream under
   status churn (Pod status PATCHes at the Event rate, ReplicaSet status at a tenth of it).

With --resmoio PATH, part A also runs resmoio's kubernetes-event-exporter on the same load with
its own lookups (omitLookup false, a stdout `layout` with the labels and ownerReferences).
API requests per client are counted from the apiserver's audit log (reads only; the control
plane of start_control_plane() here has it), by User-Agent.
"""
from __future__ import annotations

import bisect
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import common
from bench.common import RssSampler, log, median, proc_cpu, vmrss_kb, wait_venv
from bench.kube import _components, _die_with_parent, end, paced

ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: None
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: Metadata
"""


def start_control_plane():
    """etcd + kube-apiserver (as bench.kube's) with an audit log of read requests (one line per request)."""
    comps = _components()
    workdir = Path(tempfile.mkdtemp(prefix="kee-bench-kube-"))
    (workdir / "audit-policy.yaml").write_text(AUDIT_POLICY)
    log("starting etcd + kube-apiserver (audit log of reads)")
    cp = None
    try:
        cp = comps.ControlPlane(workdir, controller_manager=False, scheduler=False, kwok=False, apiserver_args=[
            f"--audit-policy-file={workdir / 'audit-policy.yaml'}", f"--audit-log-path={workdir / 'audit.log'}",
            "--audit-log-format=json", "--audit-log-maxsize=0", "--audit-log-mode=blocking"])
        cp.start()
    except BaseException:
        if cp is not None:
            cp.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return cp


class Audit:
    """Reads requests counted from the apiserver's audit log, by User-Agent product (before the first '/')."""

    def __init__(self, cp) -> None:
        self.path = Path(cp.dir) / "audit.log"

    def mark(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def count(self, start: int, end: int | None = None) -> dict[str, dict[str, int]]:
        if not self.path.exists():
            return {}
        with open(self.path, "rb") as f:
            f.seek(start)
            data = f.read() if end is None else f.read(end - start)
        out: dict[str, dict[str, int]] = {}
        for line in data.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            ua = (ev.get("userAgent") or "-").split("/")[0].split(" ")[0] or "-"
            ref = ev.get("objectRef") or {}
            if ref.get("resource"):
                what = f"{ev.get('verb')} {ref['resource']}"
            else:
                what = f"{ev.get('verb')} discovery/non-resource"
            d = out.setdefault(ua, {})
            d[what] = d.get(what, 0) + 1
        return out


def _apiserver_cpu(cp) -> float:
    return proc_cpu(cp.apiserver.pid) or 0.0


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

    def call(self, method: str, path: str, body: dict | None = None, accept: str = "application/json",
             content_type: str = "application/json"):
        headers = {**self.auth, "Accept": accept}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
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


def build_cluster(cp, api: Api, ns: str, pods: int, deployments: int, nodes: int = 20,
                  workers: int = 8) -> tuple[list[dict], list[str]]:
    """D Deployments -> 1 ReplicaSet each -> P/D Pods (ownerReferences, labels, nodeName).

    Pods are POSTed by `workers` threads, each on its own kept-alive connection. Returns
    (the Pods as {name, uid}, the ReplicaSet names)."""
    api.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "default"}})
    per = pods // deployments
    owners = []
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
        owners.append((dep_name, rs))
    local = threading.local()
    done = [0]
    lock = threading.Lock()

    def one(j: int) -> dict:
        if not hasattr(local, "api"):
            local.api = Api(cp)
        d, i = divmod(j, per)
        dep_name, rs = owners[d]
        body = _pod(ns, f"{dep_name}-5d8f7c9b4-{i:04d}", dep_name, rs, f"kwok-node-{j % nodes}")
        p = local.api.create(f"/api/v1/namespaces/{ns}/pods", body)
        with lock:
            done[0] += 1
            if done[0] % 2000 == 0:
                log(f"  {done[0]} pods")
        return {"name": p["metadata"]["name"], "uid": p["metadata"]["uid"]}

    with ThreadPoolExecutor(workers) as ex:
        out = list(ex.map(one, range(per * deployments)))
    return out, [rs["metadata"]["name"] for _, rs in owners]


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


def _post_load(cp, ns: str, rate: float, seconds: float, pick, conns: int = 1) -> tuple[int, float]:
    """POST Events at `rate` for `seconds` (open loop, `conns` connections each at rate/conns).

    `pick()` is called under a lock; it may raise StopIteration to end early. Returns (count, achieved rate)."""
    lock = threading.Lock()
    counts = [0] * conns
    t0 = time.monotonic()

    def worker(w: int) -> None:
        api = Api(cp)
        for i in paced(rate / conns, duration=seconds):
            with lock:
                try:
                    target = pick()
                except StopIteration:
                    return
            api.create(f"/api/v1/namespaces/{ns}/events", _event(ns, i * conns + w, target))
            counts[w] += 1

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    n = sum(counts)
    return n, n / (time.monotonic() - t0)


def _wait_lines(exps: list[Exp], n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(e.lines() < n for e in exps):
        time.sleep(0.5)


def _get_sizes(cp, ns: str, pod: str, rs: str, reps: int = 200) -> dict:
    """Each way `reps` GETs of one object on one connection: bytes, ms p50, the apiserver's CPU per GET."""
    api = Api(cp)
    out = {}
    for what, path in (("Pod", f"/api/v1/namespaces/{ns}/pods/{pod}"),
                       ("ReplicaSet", f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs}")):
        for mode, accept in (("metadata", ACCEPT_METADATA), ("full", "application/json")):
            times, size = [], 0
            c0 = _apiserver_cpu(cp)
            for _ in range(reps):
                t0 = time.perf_counter()
                status, raw = api.call("GET", path, accept=accept)
                times.append((time.perf_counter() - t0) * 1000)
                assert status == 200, raw[:200]
                size = len(raw)
            out[f"{what} {mode}"] = {"bytes": size, "ms_p50": median(times),
                                     "apiserver_cpu_us": (_apiserver_cpu(cp) - c0) / reps * 1e6}
    return out


class Resmoio:
    """resmoio's kubernetes-event-exporter with its lookups on (omitLookup false), a layout with labels/owners."""

    def __init__(self, cp, ns: str, workdir: Path, binary: str) -> None:
        self.metrics_port = _free_port()
        cfg = workdir / "resmoio.yaml"
        layout = {"uid": "{{ .UID }}", "reason": "{{ .Reason }}", "message": "{{ .Message }}",
                  "kind": "{{ .InvolvedObject.Kind }}", "name": "{{ .InvolvedObject.Name }}",
                  "namespace": "{{ .InvolvedObject.Namespace }}",
                  "labels": "{{ toJson .InvolvedObject.Labels }}",
                  "owners": "{{ toJson .InvolvedObject.OwnerReferences }}"}
        # kubeQPS/kubeBurst as its README advises against client-side throttling (defaults 5/10)
        cfg.write_text(json.dumps({"logLevel": "error", "logFormat": "json", "namespace": ns,
                                   "maxEventAgeSeconds": 60, "omitLookup": False, "kubeQPS": 100, "kubeBurst": 500,
                                   "route": {"routes": [{"match": [{"receiver": "dump"}]}]},
                                   "receivers": [{"name": "dump", "stdout": {"layout": layout}}]}))
        self.out = workdir / "resmoio.jsonl"
        f = open(self.out, "wb")
        err = open(workdir / "resmoio.stderr", "wb")
        self.p = subprocess.Popen([binary, f"-conf={cfg}", f"-metrics-address=127.0.0.1:{self.metrics_port}"],
                                  stdout=f, stderr=err, env={**os.environ, "KUBECONFIG": str(cp.kubeconfig)},
                                  stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        f.close()
        err.close()
        self.rss = RssSampler(self.p.pid, 0.5)

    def ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError(f"resmoio exited {self.p.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2).read()
                time.sleep(2)  # its informer lists and watches after the metrics listener is up
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("resmoio's metrics endpoint never answered")

    def lines(self) -> int:
        return self.out.read_bytes().count(b'"uid"') if self.out.exists() else 0

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith(("kube_api_read", "events_sent", "events_discarded")) or "kube_api_read" in line:
                key, _, value = line.rpartition(" ")
                try:
                    out[key] = float(value)
                except ValueError:
                    pass
        return out

    def enriched(self) -> dict[str, int]:
        out = {"with labels": 0, "without": 0}
        for line in self.out.read_bytes().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "uid" not in r:
                continue
            out["with labels" if r.get("labels") not in (None, "", "null", "{}") else "without"] += 1
        return out


def _watch_probes(cp, ns: str, cluster: list[dict], rs_names: list[str], rate: float, seconds: float) -> dict:
    """Part E: what a watch-backed cache would cost per kind (bench/probes/enrich_watch.py), under churn."""
    variants = [("Pod full", f"/api/v1/namespaces/{ns}/pods", "full"),
                ("Pod metadata", f"/api/v1/namespaces/{ns}/pods", "metadata"),
                ("ReplicaSet metadata", f"/apis/apps/v1/namespaces/{ns}/replicasets", "metadata")]
    probes, out = [], {}
    total = len(variants) * 25 + seconds + 10
    for name, path, accept in variants:
        a0, t0 = _apiserver_cpu(cp), time.monotonic()
        pr = subprocess.Popen([common.python(), "-m", "bench.probes.enrich_watch", cp.server, str(cp.ca_path),
                               cp.admin_token, path, accept, str(int(total))], cwd=common.EXPORTER_ROOT,
                              stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
        first = pr.stdout.readline().strip() if pr.stdout else ""
        if first != "LISTED":
            raise RuntimeError(f"watch probe {name}: {first!r}")
        out[name] = {"apiserver_list_cpu_s": _apiserver_cpu(cp) - a0, "list_wall_s": time.monotonic() - t0}
        probes.append((name, pr))
    # churn: Pod status PATCHes at `rate`, ReplicaSet status at rate/10, over `seconds`
    lock = threading.Lock()
    k = [0]

    def churn(w: int, conns: int) -> None:
        api = Api(cp)
        for _i in paced(rate / conns, duration=seconds):
            with lock:
                k[0] += 1
                j = k[0]
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            pod = cluster[(j * 7919) % len(cluster)]["name"]
            st, raw = api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{pod}/status", {"status": {
                "phase": "Running", "containerStatuses": [{
                    "name": "app", "ready": bool(j % 2), "restartCount": j, "image": "registry.example/x:1",
                    "imageID": "", "started": True, "state": {"running": {"startedAt": now}}}]}},
                content_type="application/merge-patch+json")
            assert st == 200, raw[:300]
            if j % 10 == 0:
                rs = rs_names[(j // 10) % len(rs_names)]
                st, raw = api.call("PATCH", f"/apis/apps/v1/namespaces/{ns}/replicasets/{rs}/status",
                                   {"status": {"replicas": 50, "readyReplicas": j % 50, "availableReplicas": j % 50,
                                               "observedGeneration": 1}},
                                   content_type="application/merge-patch+json")
                assert st == 200, raw[:300]

    a0, t0 = _apiserver_cpu(cp), time.monotonic()
    threads = [threading.Thread(target=churn, args=(w, 4), daemon=True) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    churn_s = time.monotonic() - t0
    apiserver_churn = _apiserver_cpu(cp) - a0
    for name, pr in probes:
        res, _ = pr.communicate(timeout=total + 60)
        out[name].update(json.loads(res.strip().splitlines()[-1]))
    return {"variants": out, "pod_patches": k[0], "rs_patches": k[0] // 10, "churn_s": churn_s,
            "apiserver_cpu_churn_s": apiserver_churn}


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


def _side_by_side(cp, ns: str, workdir: Path, cluster: list[dict], rate: float, seconds: float, audit: Audit,
                  resmoio: str | None, tag: str) -> dict:
    """Ours with enrichment off and on (and resmoio's) watching the same Zipf load at the same time."""
    log(f"enrich A: {rate:.0f} Events/s for {seconds:.0f} s, Zipf over {len(cluster)} pods, off vs on"
        + (" vs resmoio" if resmoio else ""))
    exps: dict = {"off": Exp(cp, ns, workdir, f"{tag}-off", []),
                  "on": Exp(cp, ns, workdir, f"{tag}-on", ["--set", "enrich.enabled=true"])}
    if resmoio:
        exps["resmoio"] = Resmoio(cp, ns, workdir, resmoio)
    for e in exps.values():
        e.ready()
        e.rss.start()
    time.sleep(2)
    pick = zipf_picker(len(cluster))
    cpu0 = {k: proc_cpu(e.p.pid) or 0.0 for k, e in exps.items()}
    m0 = _metrics(exps["on"].port)
    r0 = exps["resmoio"].metrics() if resmoio else {}
    a_api0, mark0 = _apiserver_cpu(cp), audit.mark()
    t_load = time.monotonic()
    n, achieved = _post_load(cp, ns, rate, seconds, lambda: cluster[pick()], conns=4)
    _wait_lines(list(exps.values()), n)
    load_s = time.monotonic() - t_load
    cpu1 = {k: proc_cpu(e.p.pid) or 0.0 for k, e in exps.items()}
    a_api1 = _apiserver_cpu(cp)
    m1 = _metrics(exps["on"].port)
    r1 = exps["resmoio"].metrics() if resmoio else {}
    time.sleep(1)
    a: dict = {"events": n, "achieved_rate": achieved, "load_s": load_s, "side": {},
               "apiserver_cpu_s": a_api1 - a_api0, "audit": audit.count(mark0)}
    for k, e in exps.items():
        samples = e.rss.stop()
        a["side"][k] = {"received": e.lines(), "cpu_us_per_event": (cpu1[k] - cpu0[k]) / max(n, 1) * 1e6,
                        "cpu_s": cpu1[k] - cpu0[k], "rss_max_mib": max(samples) / 1024 if samples else None,
                        "rss_end_mib": samples[-1] / 1024 if samples else None,
                        "enrichment": e.enrichment_counts() if k != "resmoio" else e.enriched()}
    if resmoio:
        a["resmoio_metrics"] = {key: r1.get(key, 0) - r0.get(key, 0) for key in r1}
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
    for e in exps.values():
        end(e.p)
    return a


def bench_enrich(cp, pods: int = 2000, deployments: int = 40, rate: float = 100.0, seconds: float = 60.0,
                 distinct: int = 20000, distinct_rate: float = 150.0, resmoio: str | None = None,
                 watch_seconds: float = 30.0) -> dict:
    wait_venv()
    ns = cp.create_namespace(f"bench-enrich-{uuid.uuid4().hex[:5]}", wait_default_sa=False)
    workdir = Path(cp.dir) / "bench-enrich"
    workdir.mkdir(exist_ok=True)
    api = Api(cp)
    audit = Audit(cp)
    log(f"enrich: creating {pods} pods under {deployments} deployments (8 connections)")
    t0 = time.monotonic()
    cluster, rs_names = build_cluster(cp, api, ns, pods, deployments)
    out: dict = {"pods": len(cluster), "deployments": deployments, "rate": rate, "load_seconds": seconds,
                 "build_s": time.monotonic() - t0, "audited": audit.path.exists()}
    log(f"  built in {out['build_s']:.0f} s")
    out["get_sizes"] = _get_sizes(cp, ns, cluster[0]["name"], rs_names[0])

    # --- A: off and on side by side, same Zipf load; then again with resmoio's beside them ----
    out["A"] = _side_by_side(cp, ns, workdir, cluster, rate, seconds, audit, None, "a")
    if resmoio:
        out["A_resmoio"] = _side_by_side(cp, ns, workdir, cluster, rate, seconds, audit, resmoio, "r")

    # --- E: watches instead of GETs -------------------------------------------------------------
    if watch_seconds:
        log(f"enrich E: LIST+WATCH per kind, {watch_seconds:.0f} s of status churn at {rate:.0f} Pod PATCHes/s")
        out["E"] = _watch_probes(cp, ns, cluster, rs_names, rate, watch_seconds)

    # --- B: many distinct objects, every one looked up ----------------------------------------
    if distinct:
        log(f"enrich B: {distinct} distinct objects at {distinct_rate:.0f} Events/s, rate limit lifted")
        e = Exp(cp, ns, workdir, "distinct", ["--set", "enrich.enabled=true",
                                              "--set", "enrich.requests_per_second=100000",
                                              "--set", "enrich.burst=100000"])
        e.ready()
        e.rss.start()
        rss_start = vmrss_kb(e.p.pid)
        cpu_b0 = proc_cpu(e.p.pid) or 0.0
        fake = ({"name": f"gone-{i:06d}", "uid": str(uuid.UUID(int=i))} for i in range(distinct))
        targets = iter([*cluster, *fake][:distinct])
        n_b, achieved_b = _post_load(cp, ns, distinct_rate, distinct / distinct_rate * 3, lambda: next(targets),
                                     conns=4)
        _wait_lines([e], n_b, 300)
        time.sleep(1)
        cpu_b1 = proc_cpu(e.p.pid) or 0.0
        m = _metrics(e.port)
        samples = e.rss.stop()
        out["B"] = {"events": n_b, "achieved_rate": achieved_b, "received": e.lines(),
                    "cpu_us_per_event": (cpu_b1 - cpu_b0) / max(n_b, 1) * 1e6,
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


def _per_min(audit: dict, ua: str, load_s: float, verbs: tuple = ("get",)) -> float:
    return sum(n for k, n in (audit.get(ua) or {}).items() if k.split(" ")[0] in verbs) / load_s * 60


def _ua_summary(audit: dict) -> str:
    parts = []
    for ua, d in sorted(audit.items()):
        if ua == "kube-apiserver":  # its own loopback requests (informers ending, discovery)
            continue
        parts.append(f"`{ua}`: " + ", ".join(f"{n} {k}" for k, n in sorted(d.items(), key=lambda x: -x[1])))
    return "; ".join(parts)


def _a_text(r: dict, a: dict) -> str:
    from bench.report import table
    audit = a.get("audit") or {}
    rows = []
    names = {"off": "ours, enrichment off", "on": "ours, enrichment on", "resmoio": "resmoio (omitLookup: false)"}
    for k in ("off", "on", "resmoio"):
        s = a["side"].get(k)
        if s is None:
            continue
        if k == "on":
            reqs = f"{a['requests_per_min']:.0f}"
        elif k == "resmoio":
            rpm = _per_min(audit, "resmoio-exporter", a["load_s"], ("get", "list", "watch"))
            reqs = f"{rpm:.0f}" if audit else "-"
        else:
            reqs = "0"
        rows.append([names[k], f"{s['received']}/{a['events']}", _f(s["cpu_us_per_event"], "{:.0f}"),
                     _f(s["rss_max_mib"]), _f(s["rss_end_mib"]), reqs,
                     ", ".join(f"{n} {c}" for c, n in sorted(s["enrichment"].items()))])
    text = table(["exporter", "records", "CPU us/Event", "max RSS MiB", "end RSS MiB", "API requests/min",
                  "records by enrichment"], rows)
    text += (f"\n\n{a['events']} Events POSTed at {r['rate']:.0f}/s (achieved {a['achieved_rate']:.0f}/s) about "
             f"{r['pods']} Pods under {r['deployments']} Deployments (one ReplicaSet each), the Pod picked "
             f"Zipf-like (s=1.1); the exporters watched the same namespace at the same time, ours enriched "
             f"with the defaults (rate limit 20 req/s, burst 100, TTL 300 s, cold cache at the start). "
             f"{a['distinct_pods_touched']} distinct "
             f"Pods were touched; enrichment made {a['requests']:.0f} API requests "
             f"({a['bytes_per_request']:.0f} bytes each on average), cache {a['cache_entries']:.0f} entries / "
             f"{(a['cache_bytes'] or 0) / 1024:.0f} KiB, the watch waited {a['wait_s'] or 0:.2f} s in all for "
             f"lookups. The apiserver used {a.get('apiserver_cpu_s', 0):.1f} s CPU from the load's start until "
             f"the last record (all clients and the POSTs).")
    if audit:
        text += ("\n\nRead requests in that time by client (the apiserver's audit log, by User-Agent; "
                 "both of our exporters say `kube-event-exporter`, only the enriched one GETs objects; the "
                 "apiserver's own loopback requests left out): "
                 + _ua_summary(audit) + ".")
    rm = a.get("resmoio_metrics")
    if rm:
        text += ("\n\nresmoio's own counters over the load: "
                 + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rm.items()) if v) + ".")
    return text


def enrich_table(r: dict) -> str:
    from bench.report import table
    a = r["A"]
    text = _a_text(r, a)
    if r.get("A_resmoio"):
        text += ("\n\nThe same load again, resmoio's kubernetes-event-exporter watching beside ours (kubeQPS 100, "
                 "kubeBurst 500 as its README advises; stdout `layout` with the labels and ownerReferences; "
                 "its requests share the apiserver with ours):\n\n" + _a_text(r, r["A_resmoio"]))
    g = r.get("get_sizes") or {}
    if g:
        rows = [[k, str(v["bytes"]), _f(v["ms_p50"], "{:.2f}"), _f(v.get("apiserver_cpu_us"), "{:.0f}")]
                for k, v in g.items()]
        text += "\n\nOne object read 200 times each way (the Pod as this benchmark makes it):\n\n"
        text += table(["GET", "bytes", "ms p50", "apiserver CPU us/GET"], rows)
    e = r.get("E")
    if e:
        rows = []
        for name, v in e["variants"].items():
            ev = max(v["watch_events"], 1)
            rows.append([name, f"{v['objects']:,}", f"{v['list_bytes'] / 1048576:.2f}",
                         f"{v['apiserver_list_cpu_s'] * 1000:.0f}", f"{v['list_cpu_s'] * 1000:.0f}",
                         f"{(v['rss_listed_kib'] - v['rss_before_kib']) / 1024:.1f}",
                         f"{v.get('rss_peak_kib', 0) / 1024:.1f}",
                         f"{v['watch_events']:,}", f"{v['watch_bytes'] / ev:.0f}",
                         f"{v['watch_bytes'] / e['churn_s'] * 60 / 1048576:.1f}",
                         f"{v['watch_cpu_s'] / ev * 1e6:.0f}"])
        text += (f"\n\nWatches instead of GETs (part E, bench/probes/enrich_watch.py): each variant LISTs "
                 f"(pages of 500) and WATCHes the namespace, keeping only what enrichment "
                 f"keeps; then {e['pod_patches']:,} Pod status PATCHes and {e['rs_patches']:,} ReplicaSet status "
                 f"PATCHes over {e['churn_s']:.0f} s (the Event rate of part A as Pod churn):\n\n")
        text += table(["LIST+WATCH", "objects", "LIST MiB", "apiserver CPU ms (LIST)", "client CPU ms (LIST)",
                       "client RSS held MiB", "client peak RSS MiB", "watch events", "bytes/event", "watch MiB/min",
                       "client CPU us/event"], rows)
        on, off = a["side"]["on"], a["side"]["off"]
        text += (f"\n\nThe GETs of part A for comparison: {a['requests_per_min']:.0f} requests/min, "
                 f"{a['requests_per_min'] * a['bytes_per_request'] / 1048576:.2f} MiB/min read, enrichment's "
                 f"whole CPU cost {(on['cpu_s'] - off['cpu_s']) / a['load_s'] * 60:.1f} s per min "
                 f"({on['cpu_us_per_event'] - off['cpu_us_per_event']:.0f} us/Event over off).")
    b = r.get("B")
    if b:
        text += (f"\n\nMany distinct objects, every one looked up (rate limit lifted): {b['events']:,} Events about "
                 f"{b['events']:,} distinct Pods ({r['pods']:,} real, the rest deleted: 404s), at "
                 f"{b['achieved_rate']:.0f}/s ({b.get('cpu_us_per_event', 0):.0f} us CPU/Event): "
                 f"RSS {b['rss_start_mib']:.1f} MiB at start, "
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
    p.add_argument("--distinct-rate", type=float, default=150.0)
    p.add_argument("--watch-seconds", type=float, default=30.0)
    p.add_argument("--resmoio", help="path of resmoio's kubernetes-event-exporter binary (run beside ours in A)")
    p.add_argument("--json")
    args = p.parse_args()
    from bench import kube
    cp = start_control_plane()
    try:
        r = bench_enrich(cp, args.pods, args.deployments, args.rate, args.seconds, args.distinct,
                         args.distinct_rate, args.resmoio, args.watch_seconds)
    finally:
        kube.stop(cp)
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1, default=str))
    print(enrich_table(r))


if __name__ == "__main__":
    main()
