"""sources.pod_terminations on the REAL control plane: KWOK crash-loops and evicts pods as a kubelet
reports it (scripts/testbin.d/kwok-crash-loop.yaml, kwok-evict.yaml: Pod status only, no Event for
the termination itself), and the exporter turns each termination into exactly one record.

- OOMKilled (exit 137) and Error (exit 1) crash loops: one record per termination, counted 1..N
  against the restartCount the apiserver holds, with the fields a person reads; an eviction is one
  record; a healthy pod none;
- SIGKILL mid-crash-loop: the restarted exporter loses none, and repeats only what the dead one
  sent after its last checkpoint (its terminations finished after the checkpointed high-water mark);
- Events and terminations share one checkpoint file and survive a forced 410;
- RBAC: the terminations overlay grants pods get/list/watch and nothing more (kubectl auth can-i),
  is enough to run with, and without it the exporter exits 3 naming the overlay.
"""
from __future__ import annotations

import collections
import json
import time
from pathlib import Path

import pytest

from tests.components.proc import wait_until
from tests.integration.test_deploy import can_i, install_as_remote_base, sa_kubeconfig
from tests.support.events import core_event, create
from tests.support.exporter_proc import Exporter

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "deploy" / "kustomize" / "overlays" / "terminations"


def pod_manifest(name: str, *, crash: str | None = None, evict: bool = False, limit: str = "256Mi") -> str:
    labels = {"app": name}
    if crash:
        labels["kee.example/crash"] = crash
    if evict:
        labels["kee.example/evict"] = "memory"
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
                       "spec": {"containers": [{"name": "web", "image": "registry.example/web:1",
                                                "resources": {"limits": {"memory": limit}}}]}})


def start(cp, tmp_path: Path, namespace: str, name: str = "exp", *extra: str) -> Exporter:
    args = ["run", "--kubeconfig", str(cp.kubeconfig), "--listen", "127.0.0.1:0", "--namespace", namespace,
            "--checkpoint-file", str(tmp_path / "checkpoint.json"),
            "--set", "checkpoint.interval_seconds=0.5", "--set", "kubernetes.backoff_max_seconds=2",
            "--set", "sources.pod_terminations.enabled=true", *extra]
    return Exporter(args, tmp_path / f"{name}.log")


def derived(records: list[dict], pod: str | None = None) -> list[dict]:
    return [r for r in records if r.get("derived_from") == "pod-status"
            and (pod is None or r["object"]["name"] == pod)]


def terminations_so_far(cp, namespace: str, pod: str) -> int:
    """How many times the pod's container has terminated, from the status the apiserver holds."""
    cs = cp.get_json(f"/api/v1/namespaces/{namespace}/pods/{pod}")["status"]["containerStatuses"][0]
    state = cs.get("state", {})
    ended = "terminated" in state or state.get("waiting", {}).get("reason") == "CrashLoopBackOff"
    return cs.get("restartCount", 0) + (1 if ended else 0)


def stop_crash_loop(cp, namespace: str, pod: str) -> None:
    cp.kubectl("label", "pod", pod, "-n", namespace, "kee.example/crash-")
    time.sleep(2.5)  # a stage already scheduled by KWOK may still land


def wait_all_seen(cp, namespace: str, pod: str, records_of, timeout: float = 30) -> int:
    """Wait until the records of `pod` number its terminations (the apiserver's count); return it."""
    deadline = time.monotonic() + timeout
    want = got = -1
    while time.monotonic() < deadline:
        want = terminations_so_far(cp, namespace, pod)
        got = len(derived(records_of(), pod))
        if got == want:
            time.sleep(1.0)
            if len(derived(records_of(), pod)) == terminations_so_far(cp, namespace, pod):
                return want
        time.sleep(0.3)
    raise AssertionError(f"{pod}: {got} records, the apiserver says {want} terminations")


def checkpoint(tmp_path: Path) -> dict[str, str]:
    return {k: v["resource_version"] for k, v in
            json.loads((tmp_path / "checkpoint.json").read_text())["streams"].items()}


# --- one record per termination ------------------------------------------------------------

def test_crash_loops_and_an_eviction_are_one_record_per_termination(control_plane, namespace, tmp_path):
    cp = control_plane
    cp.create_kwok_nodes(1)
    exp = start(cp, tmp_path, namespace)
    try:
        exp.wait_log("pods_listed")
        for m in (pod_manifest("oom", crash="OOMKilled"), pod_manifest("err", crash="Error", limit="1Gi"),
                  pod_manifest("evicted", evict=True), pod_manifest("healthy")):
            cp.kubectl("apply", "-n", namespace, "-f", "-", input=m)
        exp.wait_for(lambda r: len(derived(r, "oom")) >= 4 and len(derived(r, "err")) >= 4
                     and derived(r, "evicted"), 60, "4 OOMKilled, 4 Error and 1 Evicted records")
        for pod in ("oom", "err"):
            stop_crash_loop(cp, namespace, pod)
        n_oom = wait_all_seen(cp, namespace, "oom", exp.snapshot)
        n_err = wait_all_seen(cp, namespace, "err", exp.snapshot)
        recs = exp.snapshot()
        assert not exp.invalid, exp.invalid[:3]

        oom = derived(recs, "oom")
        assert [r["count"] for r in oom] == list(range(1, n_oom + 1))  # N restarts: N records, not 1, not 2N
        assert len({r["id"] for r in oom}) == n_oom
        uid = cp.get_json(f"/api/v1/namespaces/{namespace}/pods/oom")["metadata"]["uid"]
        for r in oom:
            assert (r["type"], r["severity"], r["reason"]) == ("Warning", "WARN", "OOMKilled")
            assert r["message"] == (f"container web in pod {namespace}/oom was OOMKilled (exit 137), "
                                    f"restart {r['count']}; limit 256Mi")
            assert r["object"]["kind"] == "Pod" and r["object"]["uid"] == uid
            assert r["object"]["field_path"] == "spec.containers{web}"
            assert r["timestamp"] == r["termination"]["finished_at"] and r["first_timestamp"] <= r["timestamp"]
            assert r["termination"]["exit_code"] == 137 and r["termination"]["memory_limit"] == "256Mi"
            assert r["source_component"] == "kube-event-exporter" and r["source_host"]
            assert r["id"] == f"{uid}:web:{r['timestamp']}"
        # the latest one is the one the apiserver shows in lastState
        cs = cp.get_json(f"/api/v1/namespaces/{namespace}/pods/oom")["status"]["containerStatuses"][0]
        last = (cs.get("state", {}).get("terminated") or cs["lastState"]["terminated"])
        assert oom[-1]["timestamp"] == last["finishedAt"]

        err = derived(recs, "err")
        assert [r["count"] for r in err] == list(range(1, n_err + 1))
        assert all(r["reason"] == "Error" and "was Error (exit 1)" in r["message"] and "limit 1Gi" in r["message"]
                   for r in err)

        (ev,) = derived(recs, "evicted")  # one record for the Pod's failure, none per container
        assert ev["reason"] == "Evicted" and ev["object"]["field_path"] is None
        assert ev["message"].startswith(f"pod {namespace}/evicted failed: Evicted: The node was low on resource")
        assert derived(recs, "healthy") == []
        # the Events around them still come from the Event source: BackOff from the crash loop
        assert any(r["reason"] == "BackOff" and r["object"]["name"] == "oom" and "derived_from" not in r
                   for r in recs)
    finally:
        exp.stop()


# --- exactly once across restarts ---------------------------------------------------------------

def test_sigkill_mid_crash_loop_loses_none_and_repeats_only_the_unconfirmed(control_plane, namespace, tmp_path):
    cp = control_plane
    cp.create_kwok_nodes(1)
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=pod_manifest("loop", crash="OOMKilled"))
    a = start(cp, tmp_path, namespace, "a")
    try:
        a.wait_for(lambda r: len(derived(r, "loop")) >= 3, 60, "3 terminations")
        a.kill()
        _, _, high_water = checkpoint(tmp_path)[f"pods|{namespace}|"].partition(" ")
        time.sleep(5)  # the crash loop goes on while no exporter runs
        b = start(cp, tmp_path, namespace, "b")
        try:
            b.wait_log("pods_seeded")
            b.wait_for(lambda r: len(derived(r, "loop")) >= 2, 60, "terminations after the restart")
            stop_crash_loop(cp, namespace, "loop")
            n = terminations_so_far(cp, namespace, "loop")
            wait_until(lambda: {r["count"] for r in derived(a.snapshot() + b.snapshot(), "loop")}
                       >= set(range(1, n + 1)), 30, "every termination from one exporter or the other")
            ra, rb = derived(a.snapshot(), "loop"), derived(b.snapshot(), "loop")
            assert sorted({r["count"] for r in ra + rb}) == list(range(1, n + 1))  # none lost
            assert len({r["id"] for r in ra + rb}) == n
            repeated = {r["id"] for r in ra} & {r["id"] for r in rb}
            unconfirmed = {r["id"] for r in ra if r["timestamp"] > high_water}
            assert repeated == unconfirmed, (repeated, unconfirmed, high_water)
            assert len(rb) == len({r["id"] for r in rb})  # and b alone sends each once
        finally:
            b.stop()
    finally:
        a.stop()


def test_events_and_terminations_share_one_checkpoint_and_survive_a_forced_410(control_plane, namespace,
                                                                                 tmp_path):
    cp = control_plane
    cp.create_kwok_nodes(1)
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=pod_manifest("loop", crash="Error"))
    a = start(cp, tmp_path, namespace, "a")
    try:
        a.wait_for(lambda r: len(derived(r, "loop")) >= 2, 60, "2 terminations")
        stop_crash_loop(cp, namespace, "loop")
        wait_all_seen(cp, namespace, "loop", a.snapshot)
        assert a.terminate() == 0
    finally:
        a.stop()
    saved = checkpoint(tmp_path)
    assert set(saved) == {f"events.k8s.io/v1|{namespace}||", f"pods|{namespace}|"}, saved
    ra = derived(a.snapshot(), "loop")

    cp.force_410()
    b = start(cp, tmp_path, namespace, "b")
    try:
        b.wait_log("pods_checkpoint_too_old_to_list")
        b.wait_log("pods_listed")
        made = create(cp, core_event(namespace, message="after the 410"))
        b.wait_for(lambda r: any(x["event"]["uid"] == made["metadata"]["uid"] for x in r), 30, "a new Event")
        cp.kubectl("label", "pod", "loop", "-n", namespace, "kee.example/crash=Error")
        b.wait_for(lambda r: len(derived(r, "loop")) >= 2, 60, "new terminations after the 410")
        stop_crash_loop(cp, namespace, "loop")
        n = terminations_so_far(cp, namespace, "loop")
        wait_until(lambda: {r["count"] for r in derived(a.snapshot() + b.snapshot(), "loop")}
                   >= set(range(1, n + 1)), 30, "every termination")
        rb = derived(b.snapshot(), "loop")
        # After a 410 the relist cannot know what was sent: the last termination sent before, inside the
        # grace window of the checkpointed high-water mark, is sent again with the same id; none is lost.
        again = [r for r in rb if r["id"] in {x["id"] for x in ra}]
        assert [r["id"] for r in again] == [ra[-1]["id"]], again
        assert sorted({r["count"] for r in ra + rb}) == list(range(1, n + 1))
        assert collections.Counter(r["id"] for r in rb).most_common(1)[0][1] == 1
        assert "watch_gone_relisting" in b.log_events()
    finally:
        b.stop()


# --- RBAC -----------------------------------------------------------------------------------------

def test_the_terminations_overlay_grants_pods_read_and_nothing_more(control_plane, tmp_path):
    cp = control_plane
    cp.kubectl("apply", "-k", str(OVERLAY))
    ns, sa = "kube-event-exporter", "kube-event-exporter"
    wait_until(lambda: cp.kubectl("get", "sa", sa, "-n", ns, check=False).returncode == 0, 30, "the ServiceAccount")
    kc = sa_kubeconfig(cp, ns, sa)
    for verb in ("get", "list", "watch"):
        assert can_i(cp, kc, verb, "pods", "--all-namespaces"), verb
    denied = [("get", "pods", "--subresource=log", "-n", "default"),
              ("create", "pods", "--subresource=exec", "-n", "default"),
              ("update", "pods", "--subresource=status", "-n", "default"),
              ("create", "pods", "--subresource=eviction", "-n", "default"),
              ("delete", "pods", "-n", "default"), ("patch", "pods", "-n", "default"),
              ("get", "secrets", "-n", "default"), ("list", "nodes")]
    assert [d for d in denied if can_i(cp, kc, *d)] == []
    exp = Exporter(["run", "--config", str(OVERLAY / "config.yaml"), "--kubeconfig", str(kc),
                    "--listen", "127.0.0.1:0", "--set", "checkpoint.interval_seconds=0.5"],
                   tmp_path / "sa.log", env={"POD_NAMESPACE": ns, "POD_NAME": "sa-test"})
    try:
        exp.wait_log("pods_listed", 60)
        assert exp.proc.poll() is None
    finally:
        exp.stop()


def test_without_pods_read_the_exporter_exits_3_naming_the_overlay(control_plane, namespace, tmp_path):
    cp = control_plane
    sa = install_as_remote_base(cp, tmp_path, namespace)  # the base: Events only
    kc = sa_kubeconfig(cp, namespace, sa)
    assert not can_i(cp, kc, "list", "pods", "--all-namespaces")
    exp = Exporter(["run", "--kubeconfig", str(kc), "--listen", "127.0.0.1:0",
                    "--set", "sources.pod_terminations.enabled=true"], tmp_path / "denied.log",
                   env={"POD_NAMESPACE": namespace})
    try:
        assert exp.wait(60) == 3
        entry = exp.wait_log("kubernetes_forbidden")
        assert "overlays/terminations" in entry["fix"] and "pods" in entry["fix"]
    finally:
        exp.stop()
