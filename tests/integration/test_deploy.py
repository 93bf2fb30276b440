"""deploy/kustomize on the REAL apiserver, and leader election between real exporter processes.

- every overlay builds with `kubectl kustomize`, applies with --dry-run=server, then for real,
  NetworkPolicies included: the apiserver stores them selecting the exporter's pods, admitting
  only the metrics port and reaching only DNS, the apiserver and the overlay's sink;
- the base, used as a remote base (a kustomization elsewhere with its own namespace and
  namePrefix), grants its ServiceAccount exactly: read Events cluster-wide, its Lease and
  its checkpoint ConfigMap in its own namespace; `kubectl auth can-i` proves the denials;
- the exporter run with that ServiceAccount's token (TokenRequest) exports events, saves
  its ConfigMap checkpoint and holds its Lease: the RBAC is enough;
- the namespaced overlay (Roles only) is enough for watching its namespaces, and nothing more;
- two exporters with leader election: one emits; SIGKILL the leader, the standby takes over
  within the lease duration from the shared checkpoint, nothing lost, duplicates bounded by
  what the dead leader emitted past its last checkpoint; SIGTERM hands over with none.
"""
from __future__ import annotations

import collections
import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.components.proc import wait_until
from tests.support.events import Producer, core_event, create, v1_event
from tests.support.exporter_proc import Exporter, ids

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base"
OVERLAYS = ["stdout", "kafka", "otlp", "ha", "namespaced"]
#: egress ports each overlay's NetworkPolicies open beyond the base's (DNS, the apiserver)
BASE_EGRESS = {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}
SINK_EGRESS = {"kafka": {(9092, "TCP"), (9093, "TCP")}, "otlp": {(4317, "TCP"), (4318, "TCP")}}
SA = "kube-event-exporter"
LEASE_NAME = "kube-event-exporter"
CHECKPOINT_NAME = "kube-event-exporter-checkpoint"

# Short timings for the tests: lease 6 s, renew deadline 4 s, retry 1 s.
LEASE, RENEW, RETRY = 6.0, 4.0, 1.0
LEADER_ARGS = ["--set", "leader_election.enabled=true",
               "--set", f"leader_election.lease_duration_seconds={LEASE}",
               "--set", f"leader_election.renew_deadline_seconds={RENEW}",
               "--set", f"leader_election.retry_period_seconds={RETRY}"]


# --- helpers ---------------------------------------------------------------------------

def can_i(cp, kubeconfig, *args: str) -> bool:
    r = cp.kubectl("auth", "can-i", *args, kubeconfig=kubeconfig, check=False)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode == 0


def install_as_remote_base(cp, tmp_path: Path, namespace: str) -> str:
    """Use deploy/kustomize/base from another directory, as a remote-base user would.

    A namePrefix unique to the namespace keeps the cluster-scoped ClusterRole(Binding)
    of one test from rebinding another's. Returns the ServiceAccount's name."""
    prefix = f"t{namespace[-5:]}-"
    d = tmp_path / "kust"
    d.mkdir(exist_ok=True)
    (d / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "namePrefix": prefix,
        "resources": [os.path.relpath(BASE, d)],
        # no kubelets here: keep the Deployment but run no pod
        "patches": [{"target": {"kind": "Deployment"},
                     "patch": json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 0}])}],
    }))
    cp.kubectl("apply", "-k", str(d))
    return prefix + SA


def sa_kubeconfig(cp, namespace: str, sa: str) -> Path:
    token = cp.service_account_token(namespace, sa, create=False)
    return cp.kubeconfig_for_token(token, user=f"system:serviceaccount:{namespace}:{sa}", namespace=namespace)


def exporter(cp_kubeconfig, tmp_path: Path, namespace: str, name: str, *extra: str,
             config: Path = BASE / "config.yaml") -> Exporter:
    """The real exporter, configured by a shipped config.yaml, in `namespace` (POD_NAMESPACE)."""
    args = ["run", "--config", str(config), "--kubeconfig", str(cp_kubeconfig), "--listen", "127.0.0.1:0",
            "--set", "checkpoint.interval_seconds=0.5", "--set", "kubernetes.backoff_max_seconds=2",
            "--set", f"leader_election.identity={name}", *extra]
    return Exporter(args, tmp_path / f"{name}.log", env={"POD_NAMESPACE": namespace, "POD_NAME": name})


def checkpoint_rv(cp, namespace: str) -> str | None:
    status, raw = cp.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{CHECKPOINT_NAME}")
    if status == 404:
        return None
    assert status == 200, raw[:300]
    streams = json.loads(json.loads(raw)["data"]["checkpoint.json"])["streams"]
    assert len(streams) == 1, streams
    return next(iter(streams.values()))["resource_version"]


def lease(cp, namespace: str) -> dict:
    return cp.get_json(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE_NAME}")["spec"]


def rv_gt(a: str, b: str | None) -> bool:
    return b is None or (len(a), a) > (len(b), b)


def log_time(exp: Exporter, event: str) -> float | None:
    for entry in exp.logs():
        if entry.get("event") == event:
            return datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")).timestamp()
    return None


def test_every_overlay_builds_and_applies_server_side_then_for_real(control_plane):
    cp = control_plane
    for ns in ("team-a", "team-b"):  # the namespaced overlay's example namespaces must exist
        if cp.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cp.create_namespace(ns, wait_default_sa=False)
    # the overlays install into kube-event-exporter: a dry run cannot create the namespace
    # the rest of the dry run needs, so it is applied first (docs/deploying.md says so too)
    cp.kubectl("apply", "-k", str(KUSTOMIZE / "namespace"))
    for overlay in OVERLAYS:
        path = KUSTOMIZE / "overlays" / overlay
        built = cp.kubectl("kustomize", str(path)).stdout
        kinds = collections.Counter(d.split("\n", 1)[0] for d in built.split("\nkind: ")[1:])
        assert kinds["Deployment"] == 1 and kinds["ServiceAccount"] == 1, (overlay, kinds)
        assert kinds["NetworkPolicy"] == (2 if overlay in SINK_EGRESS else 1), (overlay, kinds)
        assert ("ClusterRole" in kinds) == (overlay != "namespaced"), (overlay, kinds)
        dry = cp.kubectl("apply", "-k", str(path), "--dry-run=server")
        assert "violate PodSecurity" not in dry.stderr, dry.stderr
        real = cp.kubectl("apply", "-k", str(path))
        assert "violate PodSecurity" not in real.stderr, real.stderr  # namespace enforces 'restricted'
        dep = cp.kubectl_json("get", "deployment", "kube-event-exporter", "-n", "kube-event-exporter")
        want = 2 if overlay == "ha" else 1
        assert dep["spec"]["replicas"] == want, overlay
        c = dep["spec"]["template"]["spec"]["containers"][0]
        assert c["image"] == "ghcr.io/example/kube-event-exporter:0.1.0"
        cm = next(e for e in c["env"] if e["name"] == "KEE_CONFIG")
        assert cm["value"] == "/etc/kube-event-exporter/config.yaml"
        check_network_policies(cp, overlay, dep)
    # the ha overlay's config turned leader election on (the last generated ConfigMap wins)
    cp.kubectl("apply", "-k", str(KUSTOMIZE / "overlays" / "ha"))
    dep = cp.kubectl_json("get", "deployment", "kube-event-exporter", "-n", "kube-event-exporter")
    cm_name = next(v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    cfg = cp.kubectl_json("get", "configmap", cm_name, "-n", "kube-event-exporter")["data"]["config.yaml"]
    assert "enabled: true" in cfg.split("leader_election:")[1].split("\n")[1]


def check_network_policies(cp, overlay: str, dep: dict) -> None:
    """The overlay's NetworkPolicies as the apiserver stored them: they select the exporter's
    pods, admit only the metrics port, and reach only DNS, the apiserver and this overlay's sink."""
    names = ["kube-event-exporter"] + ([f"kube-event-exporter-{overlay}"] if overlay in SINK_EGRESS else [])
    pods = dep["spec"]["template"]["metadata"]["labels"]
    metrics_port = dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    ingress, egress = [], []
    for name in names:
        np = cp.kubectl_json("get", "networkpolicy", name, "-n", "kube-event-exporter")["spec"]
        labels = np["podSelector"]["matchLabels"]
        assert labels.items() <= pods.items() and labels == dep["spec"]["selector"]["matchLabels"], (name, np)
        assert "Egress" in np["policyTypes"]
        ingress += np.get("ingress", [])
        egress += np["egress"]
    assert all(r.get("ports") and not r.get("from") for r in ingress)
    assert {(p["port"], p["protocol"]) for r in ingress for p in r["ports"]} == {(metrics_port, "TCP")}
    assert all(r.get("ports") for r in egress), "an egress rule without ports opens every port"
    allowed = BASE_EGRESS | SINK_EGRESS.get(overlay, set())
    assert {(p["port"], p["protocol"]) for r in egress for p in r["ports"]} == allowed


def test_service_account_can_watch_events_and_nothing_else(control_plane, namespace, tmp_path):
    cp = control_plane
    sa = install_as_remote_base(cp, tmp_path, namespace)
    kc = sa_kubeconfig(cp, namespace, sa)
    n = ["-n", namespace]
    # granted
    for group_resource in ("events", "events.events.k8s.io"):
        for verb in ("get", "list", "watch"):
            assert can_i(cp, kc, verb, group_resource, "--all-namespaces"), (verb, group_resource)
    assert can_i(cp, kc, "get", f"leases.coordination.k8s.io/{LEASE_NAME}", *n)
    assert can_i(cp, kc, "update", f"leases.coordination.k8s.io/{LEASE_NAME}", *n)
    assert can_i(cp, kc, "create", "leases.coordination.k8s.io", *n)
    assert can_i(cp, kc, "get", f"configmaps/{CHECKPOINT_NAME}", *n)
    assert can_i(cp, kc, "update", f"configmaps/{CHECKPOINT_NAME}", *n)
    assert can_i(cp, kc, "create", "configmaps", *n)
    # denied: secrets, logs, other objects, writes to events, anything outside its namespace
    denied = [
        ("get", "secrets", "--all-namespaces"), ("list", "secrets", *n), ("get", "secrets", *n),
        ("watch", "secrets", "--all-namespaces"),
        ("get", "pods", "--subresource=log", *n), ("get", "pods", "--subresource=log", "--all-namespaces"),
        ("get", "pods", *n), ("list", "pods", "--all-namespaces"), ("list", "nodes"),
        ("list", "configmaps", *n), ("watch", "configmaps", *n), ("get", "configmaps/other", *n),
        ("update", "configmaps/other", *n), ("delete", f"configmaps/{CHECKPOINT_NAME}", *n),
        ("patch", f"configmaps/{CHECKPOINT_NAME}", *n),
        ("list", "leases.coordination.k8s.io", *n), ("update", "leases.coordination.k8s.io/other", *n),
        ("delete", f"leases.coordination.k8s.io/{LEASE_NAME}", *n),
        ("get", f"configmaps/{CHECKPOINT_NAME}", "-n", "default"),
        ("create", "configmaps", "-n", "default"), ("create", "leases.coordination.k8s.io", "-n", "default"),
        ("get", f"leases.coordination.k8s.io/{LEASE_NAME}", "-n", "kube-system"),
        ("create", "events", *n), ("delete", "events", *n), ("patch", "events.events.k8s.io", *n),
        ("create", "serviceaccounts/token", *n), ("impersonate", "serviceaccounts", *n),
        ("*", "*", "--all-namespaces"),
    ]
    allowed = [d for d in denied if can_i(cp, kc, *d)]
    assert not allowed, f"the ServiceAccount may: {allowed}"
    # and the apiserver agrees when it is actually asked
    status, _ = cp.request("GET", f"/api/v1/namespaces/{namespace}/secrets", token=None)
    assert status == 200  # (admin sanity)
    token = cp.service_account_token(namespace, sa, create=False)
    for path in (f"/api/v1/namespaces/{namespace}/secrets", "/api/v1/secrets",
                 f"/api/v1/namespaces/{namespace}/pods/x/log", f"/api/v1/namespaces/{namespace}/configmaps"):
        status, _ = cp.request("GET", path, token=token)
        assert status == 403, path


def test_exporter_with_the_service_account_token_exports_checkpoints_and_leads(control_plane, namespace, tmp_path):
    cp = control_plane
    sa = install_as_remote_base(cp, tmp_path, namespace)
    kc = sa_kubeconfig(cp, namespace, sa)
    exp = exporter(kc, tmp_path, namespace, "solo", "--namespace", namespace, *LEADER_ARGS)
    try:
        made = [create(cp, core_event(namespace, message=f"c{i}")) for i in range(3)]
        made += [create(cp, v1_event(namespace, note=f"v{i}")) for i in range(3)]
        want = {(m["metadata"]["uid"], m["metadata"]["resourceVersion"]) for m in made}
        exp.wait_for(lambda r: want <= set(ids(r)), 40, "6 events")
        wait_until(lambda: checkpoint_rv(cp, namespace) is not None, 20, "the ConfigMap checkpoint")
        spec = lease(cp, namespace)
        assert spec["holderIdentity"] == "solo"
        assert spec["leaseDurationSeconds"] == int(LEASE)
        for k in ("acquireTime", "renewTime"):
            datetime.strptime(spec[k], "%Y-%m-%dT%H:%M:%S.%fZ")
        events = exp.log_events()
        assert "leader_acquired" in events
        assert not [e for e in exp.logs() if "forbidden" in json.dumps(e).lower()], exp.log_tail()
        assert exp.terminate() == 0
        assert lease(cp, namespace)["holderIdentity"] in ("", None)  # released on SIGTERM
        max_rv = max((m["metadata"]["resourceVersion"] for m in made), key=lambda v: (len(v), v))
        assert not rv_gt(max_rv, checkpoint_rv(cp, namespace))  # the final checkpoint covers them all
    finally:
        exp.stop()


def test_namespaced_overlay_roles_are_enough_for_its_namespaces_only(control_plane, tmp_path):
    cp = control_plane
    own = "kube-event-exporter"
    for ns in ("team-a", "team-b"):
        if cp.kubectl("get", "namespace", ns, check=False).returncode != 0:
            cp.create_namespace(ns, wait_default_sa=False)
    # another test may have applied a cluster-wide overlay: this one must work without it
    cp.kubectl("delete", "clusterrolebinding", "kube-event-exporter", "--ignore-not-found")
    cp.kubectl("apply", "-k", str(KUSTOMIZE / "namespace"))
    cp.kubectl("apply", "-k", str(KUSTOMIZE / "overlays" / "namespaced"))
    cp.kubectl("scale", "deployment", "kube-event-exporter", "-n", own, "--replicas=0")
    cp.kubectl("delete", "configmap", CHECKPOINT_NAME, "-n", own, "--ignore-not-found")
    kc = sa_kubeconfig(cp, own, SA)
    for ns in ("team-a", "team-b"):
        assert can_i(cp, kc, "watch", "events.events.k8s.io", "-n", ns)
        assert can_i(cp, kc, "list", "events", "-n", ns)
    assert not can_i(cp, kc, "watch", "events.events.k8s.io", "--all-namespaces")
    assert not can_i(cp, kc, "list", "events", "-n", "default")
    assert not can_i(cp, kc, "get", "secrets", "-n", "team-a")
    exp = exporter(kc, tmp_path, own, "ns-only", config=KUSTOMIZE / "overlays" / "namespaced" / "config.yaml")
    try:
        made = [create(cp, core_event("team-a", message="a")), create(cp, v1_event("team-b", note="b"))]
        want = {m["metadata"]["uid"] for m in made}
        exp.wait_for(lambda r: want <= {x["event"]["uid"] for x in r}, 40, "events of team-a and team-b")
        wait_until(lambda: checkpoint_rv_any(cp, own) >= 2, 20, "checkpoint of both streams")
        assert exp.terminate() == 0
    finally:
        exp.stop()
    # and with the cluster-wide default (all namespaces) it is refused, with the fix in the log
    bad = exporter(kc, tmp_path, own, "ns-only-all", "--set", "kubernetes.namespaces=[]",
                   config=KUSTOMIZE / "overlays" / "namespaced" / "config.yaml")
    try:
        assert bad.wait(40) == 3
        assert "kubernetes_forbidden" in bad.log_events()
    finally:
        bad.stop()


def checkpoint_rv_any(cp, namespace: str) -> int:
    status, raw = cp.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{CHECKPOINT_NAME}")
    if status != 200:
        return 0
    return len(json.loads(json.loads(raw)["data"]["checkpoint.json"])["streams"])


# --- leader election with two real processes ----------------------------------------------

def _pair(cp, tmp_path, namespace):
    sa = install_as_remote_base(cp, tmp_path, namespace)
    kc = sa_kubeconfig(cp, namespace, sa)
    a = exporter(kc, tmp_path, namespace, "replica-a", "--namespace", namespace, *LEADER_ARGS)
    wait_until(lambda: "leader_acquired" in a.log_events(), 30, "replica-a leads")
    b = exporter(kc, tmp_path, namespace, "replica-b", "--namespace", namespace, *LEADER_ARGS)
    wait_until(lambda: "leader_election_standby" in b.log_events(), 30, "replica-b stands by")
    return a, b


def test_sigkill_the_leader_standby_takes_over_from_the_checkpoint_nothing_lost(control_plane, namespace, tmp_path):
    cp = control_plane
    a, b = _pair(cp, tmp_path, namespace)
    try:
        with Producer(cp, namespace, rate=20) as prod:
            a.wait_for(lambda r: len(r) >= 60, 40, "the leader emits")
            assert b.snapshot() == [], "the standby emitted while the leader was alive"
            assert lease(cp, namespace)["holderIdentity"] == "replica-a"
            a.kill()
            killed = time.time()
            cp_rv = checkpoint_rv(cp, namespace)  # the new leader can only save after acquiring
            window = sum(rv_gt(r["event"]["resource_version"], cp_rv) for r in a.snapshot())
            b.wait_for(lambda r: len(r) > 0, LEASE + 4 * RETRY + 15, "the standby takes over")
            acquired = log_time(b, "leader_acquired")
            took = acquired - killed
            # its last renewal was <= RETRY before the kill; the standby saw it <= 1.2 RETRY later
            # and took over LEASE after that (plus API round trips)
            assert LEASE - RETRY - 0.5 <= took <= LEASE + 1.2 * RETRY + 1.0, took
            time.sleep(2)
        made = prod.made()
        b.wait_for(lambda r: made <= set(ids(a.snapshot() + r)), 60, "every created event")
        resumed = [e for e in b.logs() if e.get("event") == "stream_resuming"]
        assert resumed and resumed[-1]["resource_version"] == cp_rv, "did not resume from the checkpoint"
        got = collections.Counter(ids(a.snapshot() + b.snapshot()))
        assert not made - set(got), f"{len(made - set(got))} of {len(made)} events lost"
        dups = sum(n - 1 for n in got.values() if n > 1)
        assert dups <= window, (dups, window)
        assert window <= 40, window  # 0.5 s checkpoint interval at 20 events/s, with slack
        spec = lease(cp, namespace)
        assert spec["holderIdentity"] == "replica-b" and spec["leaseTransitions"] >= 1
        print(f"\nleader SIGKILL: takeover {took:.2f}s (lease {LEASE}s), {len(made)} events, 0 lost, "
              f"{dups} duplicated (window {window})")
        assert b.terminate() == 0
        assert lease(cp, namespace)["holderIdentity"] in ("", None)
    finally:
        a.stop()
        b.stop()


def test_sigterm_the_leader_hands_over_at_once_without_duplicates(control_plane, namespace, tmp_path):
    cp = control_plane
    a, b = _pair(cp, tmp_path, namespace)
    try:
        with Producer(cp, namespace, rate=20) as prod:
            a.wait_for(lambda r: len(r) >= 40, 40, "the leader emits")
            assert b.snapshot() == []
            stopped = time.time()
            assert a.terminate() == 0
            assert "leader_released" in a.log_events()
            b.wait_for(lambda r: len(r) > 0, 15, "the standby takes over")
            took = log_time(b, "leader_acquired") - stopped
            assert took <= 25 + 1.2 * RETRY + 1.0  # drain time + one poll, never the lease duration
            time.sleep(2)
        made = prod.made()
        b.wait_for(lambda r: made <= set(ids(a.snapshot() + r)), 60, "every created event")
        got = collections.Counter(ids(a.snapshot() + b.snapshot()))
        assert not made - set(got)
        assert max(got.values()) == 1, "a graceful handover repeated events"
        print(f"\nleader SIGTERM: handover {took:.2f}s, {len(made)} events, 0 lost, 0 duplicated")
    finally:
        a.stop()
        b.stop()


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_leader_cut_off_from_its_lease_stops_emitting_before_the_standby_starts(control_plane, namespace, tmp_path):
    """A partial partition: the leader still watches events but can no longer renew its Lease
    (its RoleBinding is revoked). It must stop at the renew deadline, before the standby may
    take over at the lease duration: no moment where both emit."""
    cp = control_plane
    sa = install_as_remote_base(cp, tmp_path, namespace)
    role = sa  # the Role and ClusterRole carry the same prefixed name as the ServiceAccount
    cp.kubectl("create", "serviceaccount", "replica-a", "-n", namespace)
    cp.kubectl("create", "rolebinding", "replica-a-lease", f"--role={role}", "-n", namespace,
               f"--serviceaccount={namespace}:replica-a")
    cp.kubectl("create", "clusterrolebinding", f"replica-a-events-{namespace}", f"--clusterrole={role}",
               f"--serviceaccount={namespace}:replica-a")
    kc_a = sa_kubeconfig(cp, namespace, "replica-a")
    kc_b = sa_kubeconfig(cp, namespace, sa)
    a = exporter(kc_a, tmp_path, namespace, "replica-a", "--namespace", namespace, *LEADER_ARGS)
    b = None
    try:
        wait_until(lambda: "leader_acquired" in a.log_events(), 30, "replica-a leads")
        b = exporter(kc_b, tmp_path, namespace, "replica-b", "--namespace", namespace, *LEADER_ARGS)
        wait_until(lambda: "leader_election_standby" in b.log_events(), 30, "replica-b stands by")
        with Producer(cp, namespace, rate=20) as prod:
            a.wait_for(lambda r: len(r) >= 40, 40, "the leader emits")
            cp.kubectl("delete", "rolebinding", "replica-a-lease", "-n", namespace)
            revoked = time.time()
            assert a.wait(RENEW + 30) == 1  # leadership_lost_stopping: exits non-zero, to be restarted
            b.wait_for(lambda r: len(r) > 0, LEASE + 15, "the standby takes over")
            time.sleep(2)
        lost = log_time(a, "leader_lost")
        acquired = log_time(b, "leader_acquired")
        assert lost is not None and "leadership_lost_stopping" in a.log_events()
        assert lost - revoked <= RENEW + RETRY + 1.0, lost - revoked
        assert acquired - lost >= LEASE - RENEW - RETRY - 0.5, (acquired - lost)
        last_a = max(ts(r["observed_timestamp"]) for r in a.snapshot())
        first_b = min(ts(r["observed_timestamp"]) for r in b.snapshot())
        assert last_a <= lost < acquired <= first_b, (last_a, lost, acquired, first_b)
        made = prod.made()
        b.wait_for(lambda r: made <= set(ids(a.snapshot() + r)), 60, "every created event")
        got = collections.Counter(ids(a.snapshot() + b.snapshot()))
        assert not made - set(got)
        resumed = [e for e in b.logs() if e.get("event") == "stream_resuming"][-1]["resource_version"]
        window = sum(rv_gt(r["event"]["resource_version"], resumed) for r in a.snapshot())
        dups = sum(n - 1 for n in got.values() if n > 1)
        assert dups <= window <= 20 * (RENEW + 3), (dups, window)
        print(f"\nlease cut off: leader stopped {lost - revoked:.2f}s after, standby started "
              f"{acquired - lost:.2f}s later; {len(made)} events, 0 lost, {dups} duplicated")
    finally:
        a.stop()
        if b is not None:
            b.stop()


def test_two_replicas_started_together_elect_exactly_one(control_plane, namespace, tmp_path):
    """Both find no Lease and race to create it: the apiserver's AlreadyExists/Conflict picks one."""
    cp = control_plane
    sa = install_as_remote_base(cp, tmp_path, namespace)
    kc = sa_kubeconfig(cp, namespace, sa)
    reps = [exporter(kc, tmp_path, namespace, f"racer-{i}", "--namespace", namespace, *LEADER_ARGS)
            for i in range(2)]
    try:
        wait_until(lambda: any("leader_acquired" in r.log_events() for r in reps), 30, "a leader")
        made = [create(cp, core_event(namespace, message=f"r{i}")) for i in range(5)]
        want = {m["metadata"]["uid"] for m in made}
        wait_until(lambda: any(want <= {x["event"]["uid"] for x in r.snapshot()} for r in reps), 30, "events")
        time.sleep(2 * RETRY)
        leaders = [r for r in reps if "leader_acquired" in r.log_events()]
        assert len(leaders) == 1
        (standby,) = [r for r in reps if r is not leaders[0]]
        assert standby.snapshot() == []
        assert lease(cp, namespace)["holderIdentity"] == f"racer-{reps.index(leaders[0])}"
    finally:
        for r in reps:
            r.stop()


def _metrics_port(exp: Exporter) -> int:
    wait_until(lambda: "metrics_listening" in exp.log_events(), 30, "metrics endpoint")
    entry = next(e for e in exp.logs() if e.get("event") == "metrics_listening")
    return int(entry["listen"].rsplit(":", 1)[1])


def _get(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_standby_is_alive_and_ready_and_both_report_leadership_metrics(control_plane, namespace, tmp_path):
    cp = control_plane
    a, b = _pair(cp, tmp_path, namespace)
    try:
        pa, pb = _metrics_port(a), _metrics_port(b)
        assert _get(pb, "/healthz")[0] == 200
        assert _get(pb, "/readyz")[0] == 200, "a standby must be Ready, or a RollingUpdate never proceeds"
        assert "\nkee_leader 0.0" in _get(pb, "/metrics")[1]
        wait_until(lambda: _get(pa, "/readyz")[0] == 200, 30, "leader ready")
        assert "\nkee_leader 1.0" in _get(pa, "/metrics")[1]
    finally:
        a.stop()
        b.stop()
