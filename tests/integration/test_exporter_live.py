"""The live exporter on a real apiserver: every Event occurrence exactly once, nothing lost on restarts."""
from __future__ import annotations

import collections
import json
import time

import pytest

from tests.support.events import Producer, bump_core_count, core_event, create, v1_event
from tests.support.exporter_proc import Exporter, ids


def start(cp, tmp_path, *extra, name="exp", checkpoint=True):
    args = ["run", "--kubeconfig", str(cp.kubeconfig), "--listen", "127.0.0.1:0",
            "--set", "checkpoint.interval_seconds=0.5", "--set", "kubernetes.backoff_max_seconds=2"]
    if checkpoint:
        args += ["--checkpoint-file", str(tmp_path / "checkpoint.json")]
    return Exporter([*args, *extra], tmp_path / f"{name}.log")


def checkpoint_rv(tmp_path) -> str | None:
    p = tmp_path / "checkpoint.json"
    if not p.exists():
        return None
    streams = json.loads(p.read_text())["streams"]
    return next(iter(streams.values()))["resource_version"]


def rv_gt(a: str, b: str | None) -> bool:
    return b is None or (len(a), a) > (len(b), b)


@pytest.mark.parametrize("api", ["events.k8s.io/v1", "v1"])
def test_events_from_both_apis_arrive_exactly_once_with_correct_fields(control_plane, namespace, tmp_path, api):
    cp = control_plane
    exp = start(cp, tmp_path, "--api", api, "--set", f"filters.namespaces=[{namespace}]")
    try:
        exp.wait_for(lambda r: True, 1)  # started
        time.sleep(1)
        made = [create(cp, core_event(namespace, message=f"core {i}")) for i in range(5)]
        made += [create(cp, v1_event(namespace, note=f"v1 {i}")) for i in range(5)]
        uids = {m["metadata"]["uid"] for m in made}
        recs = exp.wait_for(lambda r: uids <= {x["event"]["uid"] for x in r}, 30, "10 created events")
        time.sleep(1.5)
        recs = exp.snapshot()
        assert not exp.invalid, exp.invalid[:3]
        mine = [r for r in recs if r["event"]["uid"] in uids]
        assert len(mine) == 10, collections.Counter(r["event"]["uid"] for r in mine)
        by_msg = {r["message"]: r for r in mine}
        core0, v10 = by_msg["core 0"], by_msg["v1 0"]
        assert core0["type"] == "Warning" and core0["severity"] == "WARN" and core0["reason"] == "KeeTest"
        assert core0["object"]["kind"] == "Pod" and core0["object"]["name"] == "web-1"
        assert core0["object"]["field_path"] == "spec.containers{web}"
        assert core0["source_component"] == "kee-test" and core0["source_host"] == "node-a"
        assert v10["reporting_controller"] == "example.com/kee-test" and v10["action"] == "Testing"
        assert v10["object"]["name"] == "web-2" and v10["severity"] == "INFO"
        assert all(r["event"]["api_version"] == api and r["update"] is False for r in mine)
        assert all(r["timestamp"] and r["observed_timestamp"] for r in mine)

        # A recurring event: each new occurrence (count bump) is exported, as an update.
        name = next(m for m in made if m["apiVersion"] == "v1")["metadata"]["name"]
        bump_core_count(cp, namespace, name, 2)
        bump_core_count(cp, namespace, name, 3)
        recs = exp.wait_for(lambda r: sum(x["event"]["name"] == name for x in r) >= 3, 20, "two recurrences")
        counts = [r["count"] for r in recs if r["event"]["name"] == name]
        updates = [r["update"] for r in recs if r["event"]["name"] == name]
        assert counts == [1, 2, 3] and updates == [False, True, True]
    finally:
        exp.stop()


def test_controller_and_scheduler_events_are_exported(control_plane, namespace, tmp_path):
    cp = control_plane
    cp.create_kwok_nodes(2)
    exp = start(cp, tmp_path, "--namespace", namespace)
    try:
        cp.kubectl("create", "deployment", "web", "--image=registry.example/web:1", "--replicas=2", "-n", namespace)
        cp.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: bad-image, namespace: {namespace}, labels: {{kee.example/image-pull: fail}}}}
spec:
  containers: [{{name: c, image: registry.example/does-not-exist:0.0.0}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: too-big, namespace: {namespace}}}
spec:
  containers: [{{name: c, image: registry.example/big:1, resources: {{requests: {{memory: 100Ti}}}}}}]
""")
        def seen(r):
            reasons = {x["reason"] for x in r}
            return {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled", "FailedScheduling", "Failed"} <= reasons
        recs = exp.wait_for(seen, 60, "controller and scheduler events")
        fs = [r for r in recs if r["reason"] == "FailedScheduling"]
        assert fs[0]["type"] == "Warning" and fs[0]["object"]["name"] == "too-big"
        assert any(r["reason"] == "ScalingReplicaSet" and r["object"]["kind"] == "Deployment" for r in recs)
        pull = next(r for r in recs if r["reason"] == "Failed")
        assert pull["type"] == "Warning" and pull["object"]["name"] == "bad-image" and "ErrImagePull" in pull["message"]
        assert not exp.invalid
        c = collections.Counter(ids(recs))
        assert max(c.values()) == 1, "an occurrence was exported twice"
    finally:
        exp.stop()


def test_sigkill_at_several_points_loses_nothing_and_duplicates_stay_in_the_unacknowledged_window(
        control_plane, namespace, tmp_path):
    cp = control_plane
    runs: list[Exporter] = []
    windows: list[int] = []  # records a killed run emitted beyond its saved checkpoint
    try:
        with Producer(cp, namespace, rate=25) as prod:
            for k in range(4):
                exp = start(cp, tmp_path, "--namespace", namespace, name=f"run{k}")
                runs.append(exp)
                target = len(prod.created) + 30
                exp.wait_for(lambda r: len(r) >= 20, 40, "20 records")
                while len(prod.created) < target:
                    time.sleep(0.05)
                time.sleep(0.3 * k)  # vary the point in the checkpoint cycle
                exp.kill()
                cp_rv = checkpoint_rv(tmp_path)
                windows.append(sum(rv_gt(r["event"]["resource_version"], cp_rv) for r in exp.snapshot()))
            last = start(cp, tmp_path, "--namespace", namespace, name="final")
            runs.append(last)
            last.wait_log("stream_resuming")
        made = {(m["metadata"]["uid"], m["metadata"]["resourceVersion"]) for m in prod.created}
        last.wait_for(lambda r: made <= set(ids([x for e in runs for x in e.snapshot()])), 60, "all created events")
        assert last.terminate() == 0
        everything = [x for e in runs for x in e.snapshot()]
        got = collections.Counter(ids(everything))
        missing = made - set(got)
        assert not missing, f"{len(missing)} events lost of {len(made)}"
        dups = sum(n - 1 for n in got.values() if n > 1)
        assert dups <= sum(windows), (dups, windows)
        # The file checkpoint follows the acknowledged position within checkpoint.file_interval_seconds
        # (0.2 s): at 25 events/s a kill repeats ~5; the bound is issue 16's goal, 1 s of Events.
        assert max(windows) <= 25, windows
        print(f"\nSIGKILL x4: {len(made)} events, 0 lost, {dups} duplicated, windows {windows}")
    finally:
        for e in runs:
            e.stop()


def test_sigterm_drains_saves_the_checkpoint_and_the_next_start_replays_nothing(control_plane, namespace, tmp_path):
    cp = control_plane
    exp = start(cp, tmp_path, "--namespace", namespace)
    made = [create(cp, core_event(namespace, message=f"m{i}")) for i in range(10)]
    exp.wait_for(lambda r: len(r) >= 10, 30)
    assert exp.terminate() == 0
    assert "stopped" in exp.log_events()
    rv = checkpoint_rv(tmp_path)
    assert rv and not rv_gt(max((m["metadata"]["resourceVersion"] for m in made), key=lambda v: (len(v), v)), rv)
    again = start(cp, tmp_path, "--namespace", namespace, name="again")
    try:
        time.sleep(4)
        assert again.snapshot() == [], "the restart replayed records already delivered"
        new = create(cp, core_event(namespace, message="after"))
        recs = again.wait_for(lambda r: len(r) >= 1, 20)
        assert [r["event"]["uid"] for r in recs] == [new["metadata"]["uid"]]
    finally:
        again.stop()
        exp.stop()


def test_a_failing_file_checkpoint_is_retried_every_tick_counted_every_time_and_logged_at_the_slower_rate(
        control_plane, namespace, tmp_path):
    import urllib.request
    cp = control_plane
    (tmp_path / "checkpoint.json.tmp").mkdir()  # the save's temp file cannot be opened: every save fails
    exp = start(cp, tmp_path, "--namespace", namespace, "--set", "checkpoint.interval_seconds=2")
    try:
        port = exp.wait_log("metrics_listening")["listen"].rsplit(":", 1)[1]
        with Producer(cp, namespace, rate=25):
            exp.wait_for(lambda r: len(r) >= 10, 30)
            time.sleep(4)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        failures = next(float(line.split(" ")[1]) for line in body.splitlines()
                        if line.startswith("kee_checkpoint_failures"))
        logged = [e for e in exp.logs() if e.get("event") == "checkpoint_save_failed"]
        # retried every 0.2 s tick for > 4 s; logged once per 2 s (checkpoint.interval_seconds)
        assert failures >= 10, body
        assert 1 <= len(logged) <= 4 and logged[-1]["failures"] >= len(logged), logged
        assert not (tmp_path / "checkpoint.json").exists()
    finally:
        exp.stop()


def test_the_configmap_checkpoint_keeps_its_slower_rate_while_the_file_one_follows_every_ack(
        control_plane, namespace, tmp_path):
    cp = control_plane
    cm_path = f"/api/v1/namespaces/{namespace}/configmaps/kee-checkpoint"
    exp = start(cp, tmp_path, "--namespace", namespace, "--set", "checkpoint.store=kubernetes",
                "--set", f"checkpoint.namespace={namespace}", "--set", "checkpoint.name=kee-checkpoint",
                "--set", "checkpoint.interval_seconds=2", name="cm", checkpoint=False)
    saves: list[str] = []  # each distinct ConfigMap resourceVersion seen: one PUT (or the first POST)
    try:
        exp.wait_log("stream_starting")
        with Producer(cp, namespace, rate=25):
            t0 = time.monotonic()
            while time.monotonic() - t0 < 7:
                status, body = cp.request("GET", cm_path)
                if status == 200:
                    rv = json.loads(body)["metadata"]["resourceVersion"]
                    if rv not in saves:
                        saves.append(rv)
                time.sleep(0.05)
        # 7 s of acks moving all the time: one save per 2 s at most (the file store would make ~35)
        assert 2 <= len(saves) <= 5, saves
    finally:
        exp.stop()


@pytest.mark.parametrize("initial", ["watch-list", "list"])
def test_restart_after_history_is_compacted_relists_and_loses_nothing_that_exists(control_plane, namespace, tmp_path,
                                                                                   initial):
    cp = control_plane
    mode = ["--set", f"kubernetes.watch_list={'true' if initial == 'watch-list' else 'false'}"]
    exp = start(cp, tmp_path, "--namespace", namespace, *mode)
    before = [create(cp, core_event(namespace, message=f"b{i}")) for i in range(5)]
    exp.wait_for(lambda r: len(r) >= 5, 30)
    assert exp.terminate() == 0
    during = [create(cp, v1_event(namespace, note=f"d{i}")) for i in range(5)]
    cp.force_410()
    after = start(cp, tmp_path, "--namespace", namespace, *mode, name="after")
    try:
        want = {m["metadata"]["uid"] for m in during}
        recs = after.wait_for(lambda r: want <= {x["event"]["uid"] for x in r}, 60, "events created while down")
        time.sleep(1)
        recs = after.snapshot()
        assert "watch_gone_relisting" in after.log_events()
        listed = [e for e in after.logs() if e.get("event") == "listed"]
        assert len(listed) == 1 and (listed[0].get("via") == "watch-list") == (initial == "watch-list"), listed
        assert not {m["metadata"]["uid"] for m in before} & {r["event"]["uid"] for r in recs}, \
            "relist re-exported events delivered before the 410"
        assert len(recs) == len({r["id"] for r in recs}) == 5
    finally:
        after.stop()
        exp.stop()


def test_forbidden_identity_exits_3_naming_rbac(control_plane, namespace, tmp_path):
    token = control_plane.service_account_token(namespace, "nobody")
    kc = control_plane.kubeconfig_for_token(token, tmp_path / "nobody.kubeconfig")
    exp = Exporter(["run", "--kubeconfig", str(kc), "--listen", ""], tmp_path / "forbidden.log")
    try:
        assert exp.wait(30) == 3
        entry = next(e for e in exp.logs() if e.get("event") == "kubernetes_forbidden")
        assert "events" in entry["fix"]
    finally:
        exp.stop()


def test_unreachable_apiserver_is_retried_not_fatal(control_plane, tmp_path):
    from tests.components import free_port
    kc = tmp_path / "dead.kubeconfig"
    kc.write_text(control_plane.kubeconfig.read_text().replace(
        control_plane.server, f"https://127.0.0.1:{free_port()}"))
    exp = Exporter(["run", "--kubeconfig", str(kc), "--listen", ""], tmp_path / "dead.log")
    try:
        time.sleep(4)
        assert exp.proc.poll() is None, exp.log_tail()
        assert exp.log_events().count("apiserver_not_ready_retrying") >= 2
        assert exp.terminate() == 0
    finally:
        exp.stop()


def test_missing_kubeconfig_exits_3(tmp_path):
    exp = Exporter(["run", "--kubeconfig", str(tmp_path / "nope"), "--listen", ""], tmp_path / "nokc.log")
    try:
        assert exp.wait(30) == 3
        assert "kubernetes_credentials_failed" in exp.log_events()
    finally:
        exp.stop()


def test_metrics_and_health_endpoints_report_what_happened(control_plane, namespace, tmp_path):
    import urllib.request
    cp = control_plane
    exp = start(cp, tmp_path, "--namespace", namespace, "--field-selector", "type!=Normal")
    try:
        port = exp.wait_log("metrics_listening")["listen"].rsplit(":", 1)[1]
        create(cp, core_event(namespace, etype="Warning"))
        create(cp, core_event(namespace, etype="Normal"))
        exp.wait_for(lambda r: len(r) >= 1, 20)

        def get(path):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        assert get("/healthz")[0] == 200 and get("/readyz")[0] == 200
        deadline = time.time() + 15
        while time.time() < deadline:
            body = get("/metrics")[1]
            values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines()
                      if line.startswith("kee_") and " " in line}
            if values.get("kee_records_filtered_total", 0) >= 1 and values.get("kee_checkpoint_resource_version"):
                break
            time.sleep(0.5)
        assert values["kee_events_received_total"] >= 2
        assert values['kee_records_emitted_total{sink="stdout"}'] >= 1
        assert values["kee_records_filtered_total"] >= 1
        assert any(k.startswith("kee_checkpoint_resource_version") for k in values)
        assert "kee_emit_lag_seconds_bucket" in body
        assert get("/nope")[0] == 404
    finally:
        exp.stop()
