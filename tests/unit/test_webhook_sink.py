"""The webhook sink against a real local HTTP receiver that checks what each service checks
(tests/support/webhook_receiver.py): body shapes, DingTalk/Feishu signatures and their time window,
429 with Retry-After, 5xx, slow answers; folding and the rate limit driven by a fake clock;
the delivery policy (acknowledged at once by default, only on 2xx with gate_checkpoint);
configuration errors named (exit 2); secrets never logged."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exporter import redact
from exporter.settings import WebhookSettings
from exporter.sinks.webhook import WebhookSink
from exporter.sinks.webhook.presets import dingtalk_sign, feishu_sign
from exporter.transforms import filters
from tests.support.webhook_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
SECRET = "SECf00dcafe0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def record(i: int = 0, *, name: str = "web-7d9f", reason: str = "BackOff", etype: str = "Warning") -> dict:
    return {"cluster": "prod", "type": etype, "reason": reason, "message": f"Back-off restarting failed container {i}",
            "count": i + 1, "object": {"kind": "Pod", "namespace": "shop", "name": name},
            "event": {"name": f"{name}.{i}", "namespace": "shop"}}


def until(pred, timeout: float = 10.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def receiver():
    r = Receiver(secret=SECRET)
    yield r
    r.close()


def make(receiver: Receiver, preset: str = "slack", clock=time.monotonic, **kw) -> WebhookSink:
    env = {"HOOK_URL": receiver.url(preset, "/robot/send?access_token=tok-5ecret-abc123"), "HOOK_SECRET": SECRET}
    kw.setdefault("retry_backoff_initial_seconds", 0.05)
    kw.setdefault("retry_backoff_max_seconds", 0.2)
    if preset in ("dingtalk", "feishu") and "secret_from_env" not in kw:
        kw["secret_from_env"] = "HOOK_SECRET"
    cfg = WebhookSettings(name=f"t-{preset}", preset=preset, url_from_env="HOOK_URL", **kw)
    return WebhookSink(cfg, 0, predicate=filters.build(field_selector=cfg.filter), env=env, clock=clock)


# --- presets: each service's shape and signing, checked by the receiver --------------------------

@pytest.mark.parametrize("preset", ["slack", "dingtalk", "feishu", "teams", "generic"])
def test_each_preset_posts_the_body_its_service_accepts(receiver, preset):
    sink = make(receiver, preset)
    try:
        sink.send(1, b"", record())
        until(lambda: receiver.requests, what="a request")
        req = receiver.requests[0]
        assert req["ok"], req
        text = "[Warning] BackOff on shop/Pod/web-7d9f: Back-off restarting failed container 0"
        body = req["body"]
        if preset == "slack":
            assert body == {"text": text}
        elif preset == "dingtalk":
            assert body == {"msgtype": "text", "text": {"content": text}}
            assert req["query"]["access_token"] == "tok-5ecret-abc123" and len(req["query"]["timestamp"]) == 13
        elif preset == "feishu":
            assert body["msg_type"] == "text" and body["content"] == {"text": text}
            assert len(body["timestamp"]) == 10 and body["sign"]
        elif preset == "teams":
            assert body["attachments"][0]["content"]["body"][0] == {"type": "TextBlock", "text": text, "wrap": True}
            assert req["status"] == 202
        else:
            assert body == record()   # generic: the record itself
        # the receiver logs the request before its answer reaches the sink: wait for the sink to count it
        until(lambda: sink.sent == {"first": 1} and sink.acked() == 1,
              what="the sink to count one message sent and acknowledged")
    finally:
        sink.close(5)


def test_signatures_match_the_documented_recipes():
    import base64
    import hashlib
    import hmac
    from urllib.parse import quote_plus, unquote_plus
    # DingTalk: HMAC-SHA256(key=secret, msg="<ms>\n<secret>"), base64, then URL-encoded
    raw = base64.b64encode(hmac.new(b"this is secret", b"1577262236757\nthis is secret", hashlib.sha256).digest())
    got = dingtalk_sign("this is secret", 1577262236757)
    assert got == quote_plus(raw.decode()) and unquote_plus(got) == raw.decode()
    # Feishu: HMAC-SHA256(key="<s>\n<secret>", msg=""), base64, not URL-encoded (it travels in the JSON body)
    want = base64.b64encode(hmac.new(b"1599360473\nsecret", b"", hashlib.sha256).digest()).decode()
    assert feishu_sign("secret", 1599360473) == want


@pytest.mark.parametrize("preset", ["dingtalk", "feishu"])
def test_a_wrong_secret_is_refused_by_the_service_and_reported_as_a_condition_naming_the_secret(receiver, preset,
                                                                                                monkeypatch):
    receiver.secret = "SECsomething-else-entirely"
    sink = make(receiver, preset, retry_max_attempts=2)
    try:
        sink.send(1, b"", record())
        until(lambda: sink.given_up == 1, what="given up")
        assert [r["ok"] for r in receiver.requests] == [False, False]
        assert sink.failures == {"signature": 2}
        assert sink.delivery.condition is not None and sink.delivery.condition.setting == \
            "sinks.webhook.0.secret_from_env"
        assert sink.acked() == 1   # not gating: the log pipeline is never held by a chat service
        cond = [m for m in sink.metrics() if m[0] == "kee_sink_condition" and m[3]["condition"] == "signature"]
        assert cond and cond[0][4] == 1
    finally:
        sink.close(5)


@pytest.mark.parametrize("preset", ["dingtalk", "feishu"])
def test_a_timestamp_outside_the_services_one_hour_window_is_refused(receiver, preset):
    receiver.clock_offset = 2 * 3600   # the service's clock is two hours ahead of ours
    sink = make(receiver, preset, retry_max_attempts=1)
    try:
        sink.send(1, b"", record())
        until(lambda: sink.given_up == 1, what="given up")
        assert receiver.requests[0]["ok"] is False
        receiver.clock_offset = 50 * 60   # 50 minutes: within the window
        sink.send(2, b"", record(name="other"))
        until(lambda: sink.sent.get("first") == 1, what="accepted")
    finally:
        sink.close(5)


# --- answers: 429 Retry-After, 5xx, slow --------------------------------------------------------

def test_429_retry_after_is_honoured_then_the_message_is_delivered(receiver):
    receiver.script = [(429, {"Retry-After": "1"}, b"rate_limited", 0.0)]
    sink = make(receiver, "slack")
    try:
        sink.send(1, b"", record())
        until(lambda: sink.sent.get("first") == 1, what="delivered after 429")
        first, second = receiver.requests[0], receiver.requests[1]
        assert first["status"] == 429 and second["ok"]
        assert second["at"] - first["at"] >= 0.95    # waited the server's Retry-After, not the 0.05 s backoff
        assert sink.failures == {"rate_limited": 1} and sink.delivery.retries == 1
    finally:
        sink.close(5)


def test_5xx_is_retried_and_with_gate_checkpoint_nothing_is_acked_before_a_2xx(receiver):
    receiver.script = [(503, {}, b"unavailable", 0.0)] * 3
    sink = make(receiver, "slack", gate_checkpoint=True)
    try:
        sink.send(1, b"", record(etype="Normal"))          # filtered: acknowledged at once
        assert sink.acked() == 1
        sink.send(2, b"", record())
        until(lambda: len(receiver.requests) >= 2, what="two attempts")
        assert sink.acked() == 1                            # held: 5xx so far
        until(lambda: sink.sent.get("first") == 1, what="delivered")
        until(lambda: sink.acked() == 2, what="acked after the 2xx")
        assert [r["status"] for r in receiver.requests] == [503, 503, 503, 200]
        assert sink.failures == {"http_503": 3}
    finally:
        sink.close(5)


def test_without_gate_checkpoint_a_dead_service_never_holds_the_pipeline(receiver):
    receiver.script = [(500, {}, b"down", 0.0)] * 100
    sink = make(receiver, "slack", retry_max_attempts=3)
    try:
        t0 = time.monotonic()
        for i in range(1, 201):
            sink.send(i, b"", record(i, name=f"pod-{i % 7}"))
        assert time.monotonic() - t0 < 0.5 and sink.acked() == 200
        until(lambda: sink.given_up >= 1, what="a message given up")
        assert sink.given_up_occurrences >= 1
        given = [m for m in sink.metrics() if m[0] == "kee_webhook_messages_given_up"]
        assert given[0][4] == sink.given_up
    finally:
        sink.close(5)


def test_a_slow_service_times_out_is_retried_and_send_never_waits_for_it(receiver):
    receiver.script = [(200, {}, b"ok", 2.0)]             # the first answer takes 2 s
    sink = make(receiver, "slack", timeout_seconds=0.5)
    try:
        t0 = time.monotonic()
        sink.send(1, b"", record())
        sink.send(2, b"", record(name="other"))
        assert time.monotonic() - t0 < 0.2
        until(lambda: sum(sink.sent.values()) == 2, what="both delivered")
        assert sink.failures == {"timeout": 1}
    finally:
        sink.close(5)


# --- noise control through the sink, with a fake clock -----------------------------------------

def test_100_backoffs_are_one_message_at_once_and_one_folded_follow_up_at_the_windows_end(receiver):
    clock = Clock()
    sink = make(receiver, "slack", clock=clock)
    try:
        for i in range(100):
            sink.send(i + 1, b"", record(i))
            clock.t += 1.0                                  # one a second
        until(lambda: len(receiver.requests) == 1, what="the first message")
        time.sleep(0.7)
        assert len(receiver.requests) == 1                  # the rest folded, nothing more yet
        clock.t = 1000.0 + 300.0                            # the window ends
        sink.flush()
        until(lambda: len(receiver.requests) == 2, what="the follow-up")
        assert receiver.texts() == [
            "[Warning] BackOff on shop/Pod/web-7d9f: Back-off restarting failed container 0",
            "BackOff x99 in 5m on shop/web-7d9f, last: [Warning] BackOff on shop/Pod/web-7d9f: "
            "Back-off restarting failed container 99"]
        clock.t += 301                                      # a window with nothing: quiet, no message
        sink.flush()
        time.sleep(0.7)
        assert len(receiver.requests) == 2 and len(sink.grouper) == 0
        assert sink.sent == {"first": 1, "followup": 1} and sink.grouper.folded == 99
    finally:
        sink.close(5)


def test_the_rate_limit_bites_with_one_summary_message(receiver):
    clock = Clock()
    sink = make(receiver, "slack", clock=clock, max_messages_per_minute=2)
    try:
        for i in range(6):                                  # six different Pods crash at once
            sink.send(i + 1, b"", record(i, name=f"pod-{i}"))
        until(lambda: len(receiver.requests) == 2, what="two messages")
        time.sleep(0.5)
        assert len(receiver.requests) == 2 and sink.limit.total_suppressed == 4
        clock.t += 60
        sink.flush()
        until(lambda: len(receiver.requests) == 3, what="the summary")
        assert receiver.texts()[2] == ("rate limit: 4 alert messages (4 occurrences) not sent in 1m "
                                       "(max_messages_per_minute=2); groups: shop/Pod/pod-2/BackOff, "
                                       "shop/Pod/pod-3/BackOff, shop/Pod/pod-4/BackOff, shop/Pod/pod-5/BackOff")
    finally:
        sink.close(5)


# --- configuration and secrets -----------------------------------------------------------------

def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    full = {k: v for k, v in os.environ.items() if not k.startswith(("KEE_", "OTEL_"))}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, cwd=ROOT, timeout=60,
                          env=full)


@pytest.mark.parametrize("hook,field", [
    ({"name": "a", "url": "https://x.example/h", "template": "{reason} {object.nme}"}, "sinks.webhook.0.template"),
    ({"name": "a", "url": "https://x.example/h", "template": "{reason.__class__}"}, "sinks.webhook.0.template"),
    ({"name": "a", "url": "https://x.example/h", "template": "{reason!r}"}, "sinks.webhook.0.template"),
    ({"name": "a", "url": "https://x.example/h", "filter": "kind=Pod"}, "sinks.webhook.0.filter"),
    ({"name": "a", "url": "https://x.example/h", "group_by": ["object.nme"]}, "sinks.webhook.0.group_by"),
    ({"name": "a"}, "sinks.webhook.0.url"),
    ({"name": "a", "url": "ftp://x.example/h"}, "sinks.webhook.0.url"),
    ({"name": "a", "url_from_env": "NOPE_NOT_SET"}, "sinks.webhook.0.url_from_env"),
    ({"name": "a", "url": "https://x.example/h", "secret_from_env": "HOOK_SECRET"}, "sinks.webhook.0.secret_from_env"),
    ({"name": "A b", "url": "https://x.example/h"}, "sinks.webhook.0.name"),
    ({"name": "a", "url": "https://x.example/h", "preset": "telegram"}, "sinks.webhook.0.preset"),
])
def test_a_bad_webhook_setting_is_a_config_error_naming_it_exit_2(hook, field):
    p = cli("--set", f"sinks.webhook={json.dumps([hook])}", "--check-config", env={"HOOK_SECRET": SECRET})
    assert p.returncode == 2, p.stderr
    assert f"configuration error at {field}:".encode() in p.stderr and b"fix:" in p.stderr
    assert b"Traceback" not in p.stderr


def test_two_webhooks_with_one_name_are_refused():
    hooks = [{"name": "a", "url": "https://x.example/1"}, {"name": "a", "url": "https://x.example/2"}]
    p = cli("--set", f"sinks.webhook={json.dumps(hooks)}", "--check-config")
    assert p.returncode == 2 and b"configuration error at sinks.webhook.1.name:" in p.stderr


def test_the_url_token_and_the_signing_secret_are_masked_in_check_config_and_logs(receiver, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    hooks = [{"name": "ding", "preset": "dingtalk", "url": "https://oapi.example/robot/send?access_token=tok9f8e7d6c",
              "secret_from_file": str(secret_file)}]
    p = cli("--set", f"sinks.webhook={json.dumps(hooks)}", "--check-config")
    assert p.returncode == 0, p.stderr
    out = p.stdout + p.stderr
    assert b"tok9f8e7d6c" not in out and SECRET.encode() not in out and b"ding" in out
    # the sink's own error text goes through the same masking
    sink = make(receiver, "dingtalk", retry_max_attempts=1)
    try:
        masked = sink.delivery.redact(f"POST {sink.r.url} failed; secret {SECRET}")
        assert "tok-5ecret-abc123" not in masked and SECRET not in masked
    finally:
        sink.close(5)
        redact.forget_secrets()


# --- gate_checkpoint: folded records are held until the follow-up that counted them is delivered ----

def test_gate_checkpoint_holds_folded_records_until_their_follow_up_is_delivered(receiver):
    clock = Clock()
    sink = make(receiver, "generic", clock=clock, gate_checkpoint=True)
    try:
        sink.send(1, b"", record(0))                       # first: acked once the POST got a 2xx
        until(lambda: sink.acked() == 1, what="first acked")
        for i in range(2, 6):
            sink.send(i, b"", record(i))                   # folded: held
        sink.send(6, b"", record(etype="Normal"))          # filtered, but after held ones: watermark stays
        time.sleep(0.3)
        assert sink.acked() == 1 and len(receiver.requests) == 1
        clock.t += 300
        sink.flush()
        until(lambda: sink.acked() == 6, what="all acked after the follow-up")
        follow = receiver.requests[1]["body"]
        assert follow["kind"] == "followup" and follow["count"] == 4 and follow["last"]["count"] == 6
    finally:
        sink.close(5)


def test_gate_checkpoint_acknowledges_records_suppressed_by_the_rate_limit_and_counts_them(receiver):
    sink = make(receiver, "slack", gate_checkpoint=True, max_messages_per_minute=1)
    try:
        for i in range(1, 4):
            sink.send(i, b"", record(i, name=f"pod-{i}"))  # 3 groups, room for 1 message a minute
        until(lambda: sink.acked() == 3, what="acked: one delivered, two suppressed by policy")
        assert len(receiver.requests) == 1 and sink.limit.total_suppressed == 2
        suppressed = [m for m in sink.metrics() if m[0] == "kee_webhook_messages_suppressed"]
        assert suppressed[0][4] == 2
    finally:
        sink.close(5)


def test_group_state_is_bounded_and_evictions_are_counted_in_metrics(receiver):
    sink = make(receiver, "generic", max_groups=3, max_messages_per_minute=1000)
    try:
        for i in range(10):
            sink.send(2 * i + 1, b"", record(i, name=f"pod-{i}"))
            sink.send(2 * i + 2, b"", record(i, name=f"pod-{i}"))   # one folded each
        assert len(sink.grouper) == 3
        m = {x[0]: x[4] for x in sink.metrics() if x[0].startswith("kee_webhook_groups")}
        assert m == {"kee_webhook_groups": 3, "kee_webhook_groups_evicted": 7}
        assert sink.grouper.evicted_occurrences == 7
    finally:
        sink.close(5)
