"""The Pod watch's restart rules, against the scripted apiserver of test_watch_source_scripted.

Each answer is chosen by the test: the exact LIST at the checkpointed resourceVersion that
seeds what was delivered, the 410 that makes it impossible, odd lines, a DELETED Pod.
"""
from __future__ import annotations

import json
import threading

from exporter.kube.client import KubeClient
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.settings import KubernetesSettings, PodTerminationSettings
from exporter.sources.pods import PodWatchSource
from exporter.terminations import Tracker
from tests.unit import test_watch_source_scripted as scripted
from tests.unit.test_watch_source_scripted import Script, Sink

server = scripted.server  # the scripted apiserver (a fixture)


def t(sec: int) -> str:
    return f"2026-12-02T01:{sec // 60:02d}:{sec % 60:02d}Z"


def pod(rv: int, *, last: tuple[int, int] | None = None, now: tuple[int, int] | None = None, restarts: int = 0,
        uid: str = "u1", deleting: bool = False, reason: str = "OOMKilled") -> dict:
    cs: dict = {"name": "web", "restartCount": restarts, "state": {"running": {"startedAt": t(0)}}}
    if last:
        cs["lastState"] = {"terminated": {"exitCode": 137, "reason": reason, "startedAt": t(last[0]),
                                          "finishedAt": t(last[1])}}
    if now:
        cs["state"] = {"terminated": {"exitCode": 137, "reason": reason, "startedAt": t(now[0]),
                                      "finishedAt": t(now[1])}}
    md = {"name": f"p-{uid}", "namespace": "ns", "uid": uid, "resourceVersion": str(rv)}
    if deleting:
        md["deletionTimestamp"] = t(59)
    return {"kind": "Pod", "apiVersion": "v1", "metadata": md, "spec": {"containers": [{"name": "web"}]},
            "status": {"phase": "Running", "containerStatuses": [cs]}}


def run_pods(server, tmp_path, answers, start=None, grace=30.0, inactivity=1.0):
    script = Script(answers)
    server["script"] = script
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                              "clusters": [{"name": "c", "cluster": {"server": server["url"]}}],
                              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                              "users": [{"name": "u", "user": {"token": "t"}}]}))
    kube = KubernetesSettings(backoff_initial_seconds=0.01, backoff_max_seconds=0.05,
                              inactivity_timeout_seconds=inactivity)
    ps = PodTerminationSettings(enabled=True, relist_grace_seconds=grace)
    sink, stats = Sink(), Stats()
    pipe = Pipeline([sink], stats=stats, live=False)
    stop = threading.Event()
    src = PodWatchSource(KubeClient(kubeconfig=str(kc)), pipe, kube, ps, pipe.stream("pods|*|", start), None, stop,
                         Tracker(cluster=None, grace_seconds=grace))
    th = threading.Thread(target=src.run, daemon=True)
    th.start()
    script.done.wait(15)
    stop.set()
    th.join(10)
    return script, sink, stats, pipe


def test_a_restart_seeds_from_an_exact_list_at_the_checkpoint_then_sends_only_what_came_after(server, tmp_path):
    seeded = ("json", (200, {"kind": "PodList", "metadata": {"resourceVersion": "20"},
                             "items": [pod(18, last=(0, 10), restarts=1)]}, {}))
    script, sink, stats, pipe = run_pods(server, tmp_path, [
        seeded,
        ("stream", [{"type": "MODIFIED", "object": pod(21, last=(0, 10), restarts=1)},   # the same one again
                    b"{not json",
                    {"type": "MODIFIED", "object": pod(22, now=(11, 20), restarts=1)},   # a new one
                    {"type": "DELETED", "object": pod(23, now=(21, 30), restarts=2, deleting=True)},
                    {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "30"}}}]),
    ], start=f"20 {t(10)}")
    assert script.requests[0]["resourceVersion"] == "20" and script.requests[0]["resourceVersionMatch"] == "Exact"
    assert "watch" not in script.requests[0] and script.requests[1]["resourceVersion"] == "20"
    assert [(r["count"], r["timestamp"]) for r in sink.records] == [(2, t(20)), (3, t(30))]  # OOMKilled while deleting
    assert stats.decode_errors == 1 and stats.errors[("pods", "undecodable")] == 1
    assert pipe.commit() == {"pods|*|": f"30 {t(30)}"}
    assert script.requests[2]["resourceVersion"] == "30"


def test_a_checkpoint_too_old_to_list_at_relists_and_judges_by_the_high_water_mark(server, tmp_path):
    gone = ("json", (410, {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}, {}))
    relist = ("json", (200, {"kind": "PodList", "metadata": {"resourceVersion": "90"}, "items": [
        pod(50, last=(0, 40), restarts=1, uid="old"),       # finished 60 s before the mark: sent before
        pod(60, last=(0, 95), restarts=1, uid="grace"),     # within the 30 s grace: sent again, same id
        pod(70, last=(0, 110), restarts=1, uid="new"),      # after the mark: new
    ]}, {}))
    script, sink, stats, pipe = run_pods(server, tmp_path, [gone, relist], start=f"20 {t(100)}")
    assert [r["object"]["uid"] for r in sink.records] == ["grace", "new"]
    assert stats.relists == 1 and "resourceVersion" not in script.requests[1]
    assert pipe.commit() == {"pods|*|": f"90 {t(110)}"}


def test_a_silent_pod_watch_is_dropped_after_the_inactivity_timeout_and_resumed(server, tmp_path):
    seeded = ("json", (200, {"kind": "PodList", "metadata": {"resourceVersion": "20"}, "items": []}, {}))
    script, sink, stats, pipe = run_pods(server, tmp_path, [
        seeded,
        ("silent", 3),                                                                   # headers, then nothing
        ("stream", [{"type": "MODIFIED", "object": pod(22, now=(11, 20), restarts=1)}]),
    ], start=f"20 {t(10)}", inactivity=0.5)
    assert stats.watch_restarts.get("inactivity", 0) >= 1  # the silent one (then the script's end hangs too)
    assert script.requests[1]["resourceVersion"] == script.requests[2]["resourceVersion"] == "20"
    assert [r["count"] for r in sink.records] == [2]
