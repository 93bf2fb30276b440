"""Pod status -> termination records: one record per termination, never one per Pod update.

Pods are built as the kubelet writes them (state / lastState / restartCount through a
crash loop) and decoded by the same partial decoder as the live watch (wire.pods).
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from exporter import wire
from exporter.sources.pods import decode_position, encode_position
from exporter.terminations import Tracker

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "record.v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def t(sec: int) -> str:
    return f"2026-12-02T01:{sec // 60:02d}:{sec % 60:02d}Z"


def pod(state=None, last=None, restarts=0, *, name="web-7d9f-x2k", uid="pod-uid-1", rv="100", phase="Running",
        reason=None, message=None, deleting=False, restart_policy=None, limit="256Mi", init=None):
    spec = {"nodeName": "node-a", "containers": [{"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}],
                                                  "resources": {"limits": {"memory": limit, "cpu": "1"}}}]}
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    cs = {"name": "web", "restartCount": restarts, "ready": False, "image": "web:1"}
    if state is not None:
        cs["state"] = state
    if last is not None:
        cs["lastState"] = last
    status = {"phase": phase, "startTime": t(0), "containerStatuses": [cs],
              "conditions": [{"type": "Ready", "status": "False"}]}
    if reason:
        status["reason"] = reason
        status["message"] = message
    if init is not None:
        spec["initContainers"] = [{"name": "setup", "image": "setup:1"}]
        status["initContainerStatuses"] = [init]
    md = {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": rv,
          "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]}
    if deleting:
        md["deletionTimestamp"] = t(59)
    line = orjson.dumps({"type": "MODIFIED", "object": {"kind": "Pod", "apiVersion": "v1", "metadata": md,
                                                         "spec": spec, "status": status}})
    return wire.pods(line).object


def term(start: int, end: int, reason="OOMKilled", code=137):
    return {"terminated": {"exitCode": code, "reason": reason, "startedAt": t(start), "finishedAt": t(end),
                           "containerID": f"containerd://c{end}"}}


def running(start: int):
    return {"running": {"startedAt": t(start)}}


BACKOFF = {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}}


def records(tr: Tracker, p) -> list[dict]:
    out = tr.records(p, observed=t(120))
    for r in out:
        VALIDATOR.validate(r)
    return out


def test_an_oomkilled_container_is_one_record_with_the_fields_a_person_reads():
    tr = Tracker(cluster="prod")
    (r,) = records(tr, pod(running(20), term(3, 19), restarts=4))
    assert r["reason"] == "OOMKilled" and r["type"] == "Warning" and r["severity"] == "WARN"
    assert r["message"] == "container web in pod shop/web-7d9f-x2k was OOMKilled (exit 137), restart 4; limit 256Mi"
    assert r["object"] == {"kind": "Pod", "name": "web-7d9f-x2k", "namespace": "shop", "uid": "pod-uid-1",
                           "api_version": "v1", "resource_version": "100", "field_path": "spec.containers{web}"}
    assert (r["count"], r["timestamp"], r["first_timestamp"]) == (4, t(19), t(3))
    assert r["derived_from"] == "pod-status" and r["source_component"] == "kube-event-exporter"
    assert r["source_host"] == "node-a" and r["cluster"] == "prod"
    assert r["id"] == f"pod-uid-1:web:{t(19)}" and r["event"]["uid"] == r["id"]
    assert r["termination"]["exit_code"] == 137 and r["termination"]["memory_limit"] == "256Mi"


def test_the_same_termination_in_later_updates_is_not_a_record_again():
    tr = Tracker(cluster=None)
    assert len(records(tr, pod(term(0, 10), None, restarts=0))) == 1           # state.terminated
    assert records(tr, pod(BACKOFF, term(0, 10), restarts=0, rv="101")) == []  # moved to lastState
    assert records(tr, pod(running(21), term(0, 10), restarts=1, rv="102")) == []  # restarted
    assert records(tr, pod(running(21), term(0, 10), restarts=1, rv="103")) == []  # readiness flaps etc.
    assert tr.repeats == 3


def test_a_crash_loop_of_n_restarts_is_n_records_counted_1_to_n():
    tr = Tracker(cluster=None)
    made, start, rv = [], 0, 100
    for i in range(50):
        end = start + 2
        made += records(tr, pod(term(start, end, "Error", 1), term(start - 3, start - 1, "Error", 1) if i else None,
                                restarts=i, rv=str(rv)))
        made += records(tr, pod(BACKOFF, term(start, end, "Error", 1), restarts=i, rv=str(rv + 1)))
        start = end + 1
        made += records(tr, pod(running(start), term(start - 3, end, "Error", 1), restarts=i + 1, rv=str(rv + 2)))
        rv += 3
    assert [r["count"] for r in made] == list(range(1, 51))
    assert len({r["id"] for r in made}) == 50
    assert all(r["reason"] == "Error" and "(exit 1)" in r["message"] for r in made)


def test_first_seen_in_back_off_or_after_the_restart_gives_the_same_count_and_id():
    a = records(Tracker(cluster=None), pod(BACKOFF, term(0, 10), restarts=3))
    b = records(Tracker(cluster=None), pod(running(21), term(0, 10), restarts=4))
    c = records(Tracker(cluster=None), pod(term(0, 10), None, restarts=3))
    assert {r["count"] for r in a + b + c} == {4} and len({r["id"] for r in a + b + c}) == 1


def test_normal_ends_and_deliberate_stops_are_not_records():
    tr = Tracker(cluster=None)
    job = pod(term(0, 5, "Completed", 0), restart_policy="Never", phase="Succeeded")
    assert records(tr, job) == []
    init_done = {"name": "setup", "restartCount": 0, "state": term(0, 1, "Completed", 0)}
    assert records(tr, pod(running(2), init=init_done, uid="u2")) == []
    stopped = pod(term(0, 30, "Error", 143), deleting=True, uid="u3")
    assert records(tr, stopped) == []
    assert tr.skipped == {"completed": 2, "pod_deleting": 1}
    # a long-running container that exits 0 is restarted: that is a crash loop too
    assert len(records(tr, pod(running(9), term(0, 8, "Completed", 0), restarts=1, uid="u4"))) == 1
    # an init container that fails is a record, at its own field path
    init_failed = {"name": "setup", "restartCount": 2, "state": BACKOFF, "lastState": term(0, 1, "Error", 2)}
    (r,) = records(tr, pod({"waiting": {"reason": "PodInitializing"}}, init=init_failed, uid="u5"))
    assert r["object"]["field_path"] == "spec.initContainers{setup}" and r["count"] == 3


def test_an_evicted_pod_is_one_pod_failure_record_not_one_per_container():
    tr = Tracker(cluster=None)
    msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 42Mi."
    p = pod(term(0, 40, "Error", 137), phase="Failed", reason="Evicted", message=msg)
    (r,) = records(tr, p)
    assert r["reason"] == "Evicted" and r["message"] == f"pod shop/web-7d9f-x2k failed: Evicted: {msg}"
    assert r["object"]["field_path"] is None and r["timestamp"] == t(40) and r["id"] == "pod-uid-1:pod:Evicted"
    assert records(tr, p) == []


def test_a_seeded_tracker_sends_only_what_came_after_the_seed():
    tr = Tracker(cluster=None)
    assert tr.records(pod(running(21), term(0, 10), restarts=1), emit=False) == []
    assert records(tr, pod(running(21), term(0, 10), restarts=1, rv="200")) == []
    (r,) = records(tr, pod(term(21, 30), term(0, 10), restarts=1, rv="201"))
    assert r["count"] == 2 and r["timestamp"] == t(30)


def test_without_a_seed_unknown_containers_are_judged_by_the_high_water_mark_minus_the_grace():
    tr = Tracker(cluster=None, grace_seconds=30, high_water=t(100))
    tr.not_authoritative()
    assert records(tr, pod(running(61), term(0, 60), restarts=1, uid="old")) == []      # 60 <= 100-30: sent before
    assert len(records(tr, pod(running(81), term(0, 80), restarts=1, uid="late"))) == 1  # within the grace: again
    assert len(records(tr, pod(running(111), term(0, 110), restarts=1, uid="new"))) == 1
    # once known, the per-container rule applies, whatever the mark
    assert len(records(tr, pod(term(61, 70), term(0, 60), restarts=1, uid="old"))) == 1
    assert tr.high_water == t(110)


def test_the_map_is_bounded_and_forgets_deleted_pods():
    tr = Tracker(cluster=None, max_pods=10)
    for i in range(25):
        records(tr, pod(running(5), term(0, 4), restarts=1, uid=f"u{i}"))
    assert tr.tracked() == 10 and tr.evicted == 15
    tr.forget(pod(uid="u24"))
    tr.retain({"u20", "u21"})
    assert tr.tracked() == 2


def test_pod_updates_without_terminations_build_nothing():
    tr = Tracker(cluster=None)
    assert records(tr, pod(running(5))) == [] and tr.tracked() == 0


def test_the_checkpoint_value_carries_the_resource_version_and_the_high_water_mark():
    assert decode_position(encode_position("12345", t(7))) == ("12345", t(7))
    assert decode_position(encode_position("12345", None)) == ("12345", None)
    assert decode_position(None) == (None, None)


def test_the_terminations_overlay_config_loads_with_the_source_on():
    from exporter import config
    path = Path(__file__).parents[2] / "deploy" / "kustomize" / "overlays" / "terminations" / "config.yaml"
    cfg = config.load(str(path), {})
    assert cfg.sources.pod_terminations.enabled and cfg.checkpoint.store == "kubernetes"
    assert not config.load(None, {}).sources.pod_terminations.enabled  # off by default


def test_a_derived_record_has_the_keys_of_an_event_record_in_the_same_order():
    from exporter.records import normalise
    from tests.unit.test_records_normalise import CORE
    (r,) = records(Tracker(cluster=None), pod(running(20), term(3, 19), restarts=4))
    ev = normalise(wire.event(CORE), False, cluster=None, max_message_bytes=8192)
    assert list(r)[:len(ev)] == list(ev) and list(r)[len(ev):] == ["derived_from", "termination"]


def test_text_output_is_one_line_per_record_like_kubectl_get_events():
    from exporter.sinks.text import HEADER, line
    (r,) = records(Tracker(cluster=None), pod(running(20), term(3, 19), restarts=4))
    now = 1_790_000_000.0
    r["timestamp"] = "2026-09-21T14:12:50Z"  # 30 s before now
    out = line(r, now)
    assert out.endswith("\n") and out.count("\n") == 1
    assert out.split()[:4] == ["30s", "Warning", "OOMKilled*", "shop/pod/web-7d9f-x2k"]
    assert "was OOMKilled (exit 137), restart 4; limit 256Mi" in out
    assert HEADER.split() == ["AGE", "TYPE", "REASON", "OBJECT", "MESSAGE"]


def test_a_bad_pod_terminations_setting_names_the_field_and_the_fix():
    from exporter import config
    from exporter.errors import ConfigError
    for key, value in (("namespaces", ["Not_A_Namespace"]), ("label_selector", "app in (web")):
        with pytest.raises(ConfigError) as exc:
            config.load(None, {}, overrides=[(f"sources.pod_terminations.{key}", value)])
        assert f"sources.pod_terminations.{key}" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        config.load(None, {}, overrides=[("sources.pod_terminations.max_tracked_pods", 0)])
    assert "max_tracked_pods" in str(exc.value)
