"""The webhook sink in the real exporter, on the real control plane: a crash loop is one message and
folded follow-ups with exact counts; a webhook service that is down does not slow the stdout sink or
hold the checkpoint; with gate_checkpoint the checkpoint waits for it like for any sink."""
from __future__ import annotations

import json
import socket
import time

from tests.support.events import bump_core_count, core_event, create
from tests.support.exporter_proc import Exporter
from tests.support.webhook_receiver import Receiver

WINDOW = 8.0  # seconds: long enough to hold the whole crash loop, short enough for a test


def start(cp, tmp_path, namespace: str, hooks: list[dict], env: dict, name: str = "exp") -> Exporter:
    args = ["run", "--kubeconfig", str(cp.kubeconfig), "--listen", "127.0.0.1:0",
            "--checkpoint-file", str(tmp_path / "checkpoint.json"),
            "--set", "checkpoint.interval_seconds=0.5", "--set", f"filters.namespaces=[{namespace}]",
            "--set", "kubernetes.initial=now", "--set", f"sinks.webhook={json.dumps(hooks)}"]
    return Exporter(args, tmp_path / f"{name}.log", env=env)


def checkpoint_rv(tmp_path) -> str | None:
    p = tmp_path / "checkpoint.json"
    if not p.exists():
        return None
    return next(iter(json.loads(p.read_text())["streams"].values()))["resource_version"]


def rv_at_least(a: str | None, b: str) -> bool:
    return a is not None and (len(a), a) >= (len(b), b)


def test_a_crash_loop_of_100_backoffs_is_one_message_at_once_and_one_folded_follow_up(control_plane, namespace,
                                                                                       tmp_path):
    cp = control_plane
    rx = Receiver()
    hooks = [{"name": "json", "preset": "generic", "url_from_env": "HOOK_JSON", "window_seconds": WINDOW},
             {"name": "chat", "preset": "slack", "url_from_env": "HOOK_CHAT", "window_seconds": WINDOW}]
    exp = start(cp, tmp_path, namespace, hooks, {"HOOK_JSON": rx.url("generic", "/T0/secret-token-1"),
                                                 "HOOK_CHAT": rx.url("slack", "/T0/secret-token-2")})
    try:
        exp.wait_log("webhook_sink_started", 30)
        time.sleep(2)
        create(cp, core_event(namespace, reason="Scheduled", etype="Normal", obj_name="web-7d9f",
                              message="Successfully assigned"))        # Normal: filtered out by default
        ev = create(cp, core_event(namespace, name="web-7d9f.backoff", reason="BackOff", obj_name="web-7d9f",
                                   message="Back-off restarting failed container web"))
        t0 = time.monotonic()
        for count in range(2, 101):                                    # the kubelet bumps the count: 99 updates
            bump_core_count(cp, namespace, "web-7d9f.backoff", count)
        created_in = time.monotonic() - t0
        recs = exp.wait_for(lambda r: sum(1 for x in r if x["reason"] == "BackOff") >= 100, 60, "100 BackOff")
        assert sum(1 for x in recs if x["reason"] == "BackOff") == 100 and ev
        first = [r for r in rx.requests if r["service"] == "generic"]
        assert len(first) == 1 and first[0]["body"]["reason"] == "BackOff"   # told once, at once
        assert first[0]["body"]["count"] == 1
        # wait for the window(s) to end and the follow-up(s) to arrive, then a quiet window
        deadline = time.monotonic() + 4 * WINDOW + 20
        while time.monotonic() < deadline:
            folded = sum(r["body"].get("count", 0) for r in rx.requests
                         if r["service"] == "generic" and r["body"].get("kind") == "followup")
            if folded >= 99:
                break
            time.sleep(0.2)
        time.sleep(WINDOW + 1)                                          # the next window: nothing more
        generic = [r["body"] for r in rx.requests if r["service"] == "generic"]
        follow = [b for b in generic if b.get("kind") == "followup"]
        assert [b.get("kind", "first") for b in generic] == ["first"] + ["followup"] * len(follow)
        assert sum(b["count"] for b in follow) == 99, [b["count"] for b in follow]
        if created_in < WINDOW - 1:                                     # all 99 inside the first window
            assert [b["count"] for b in follow] == [99]
        assert follow[-1]["last"]["count"] == 100 and follow[-1]["group"]["object.name"] == "web-7d9f"
        chat = rx.texts("slack")
        assert len(chat) == 1 + len(follow) and chat[0].startswith("[Warning] BackOff on ")
        assert chat[1].startswith(f"BackOff x{follow[0]['count']} in ")
        print("\nmessages the crash loop produced (slack preset):\n  " + "\n  ".join(chat))
        assert all(r["ok"] for r in rx.requests)
        assert not any("secret-token" in line for line in exp.log_tail(10_000).splitlines())
    finally:
        exp.stop()
        rx.close()


def test_a_webhook_service_that_is_down_does_not_slow_stdout_or_hold_the_checkpoint(control_plane, namespace,
                                                                                       tmp_path):
    cp = control_plane
    black_hole = socket.socket()                 # accepts connections (backlog) but never answers: timeouts
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)
    refused = socket.socket()                    # a closed port: connection refused
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()
    hooks = [{"name": "hang", "preset": "slack", "url_from_env": "HOOK_HANG", "timeout_seconds": 2,
              "filter": ""},
             {"name": "down", "preset": "dingtalk", "url_from_env": "HOOK_DOWN", "filter": ""}]
    env = {"HOOK_HANG": f"http://127.0.0.1:{black_hole.getsockname()[1]}/hook",
           "HOOK_DOWN": f"http://127.0.0.1:{refused_port}/robot/send?access_token=abcdef"}
    exp = start(cp, tmp_path, namespace, hooks, env)
    try:
        exp.wait_log("webhook_sink_started", 30)
        time.sleep(2)
        t0 = time.monotonic()
        made = [create(cp, core_event(namespace, obj_name=f"pod-{i}", reason="BackOff")) for i in range(200)]
        uids = {m["metadata"]["uid"] for m in made}
        exp.wait_for(lambda r: uids <= {x["event"]["uid"] for x in r}, 30, "200 records on stdout")
        elapsed = time.monotonic() - t0
        last_rv = max((m["metadata"]["resourceVersion"] for m in made), key=lambda v: (len(v), v))
        end = time.monotonic() + 10
        while time.monotonic() < end and not rv_at_least(checkpoint_rv(tmp_path), last_rv):
            time.sleep(0.2)
        assert rv_at_least(checkpoint_rv(tmp_path), last_rv), (checkpoint_rv(tmp_path), last_rv)
        assert elapsed < 20, elapsed   # creating 200 Events and seeing them: no 2 s timeout per message in the path
        events = exp.log_events()
        assert "sink_delivery_failed_retrying" in events    # the failures are loud...
        # ... and what is given up is logged (refused: 5 attempts with backoff 1, 2, 4, 8 s)
        exp.wait_log("webhook_message_given_up", 30)
    finally:
        exp.stop()
        black_hole.close()


def test_with_gate_checkpoint_the_checkpoint_waits_for_the_webhook_like_any_sink(control_plane, namespace, tmp_path):
    cp = control_plane
    rx = Receiver()
    rx.script = [(503, {}, b"unavailable", 0.0)] * 10_000             # down until the script is cleared
    hooks = [{"name": "gated", "preset": "slack", "url_from_env": "HOOK", "gate_checkpoint": True,
              "retry_backoff_initial_seconds": 0.2, "retry_backoff_max_seconds": 0.5}]
    exp = start(cp, tmp_path, namespace, hooks, {"HOOK": rx.url("slack", "/T0/B0/tok-gated-1")})
    try:
        exp.wait_log("webhook_sink_started", 30)
        time.sleep(2)
        before = checkpoint_rv(tmp_path)
        made = [create(cp, core_event(namespace, obj_name=f"pod-{i}", reason="BackOff")) for i in range(5)]
        uids = {m["metadata"]["uid"] for m in made}
        last_rv = max((m["metadata"]["resourceVersion"] for m in made), key=lambda v: (len(v), v))
        exp.wait_for(lambda r: uids <= {x["event"]["uid"] for x in r}, 30, "5 records on stdout")
        time.sleep(3)                                                   # six checkpoint intervals
        held = checkpoint_rv(tmp_path)
        assert not rv_at_least(held, last_rv), (before, held, last_rv)  # the webhook has not confirmed
        assert len(rx.requests) >= 2 and not any(r["ok"] for r in rx.requests)
        with rx.lock:
            rx.script.clear()                                           # the service is back
        end = time.monotonic() + 20
        while time.monotonic() < end and not rv_at_least(checkpoint_rv(tmp_path), last_rv):
            time.sleep(0.2)
        assert rv_at_least(checkpoint_rv(tmp_path), last_rv)
        assert len(rx.texts("slack")) == 5
    finally:
        exp.stop()
        rx.close()
