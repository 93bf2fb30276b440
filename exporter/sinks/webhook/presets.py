"""Each service's documented message shape and signing, and what its answers mean.

- slack: incoming webhook ``{"text": ...}``; answers 200 ``ok``, errors as 4xx text
  (``invalid_payload`` 400, ``invalid_token`` 403, ``no_service`` 404).
- dingtalk: custom robot ``{"msgtype": "text", "text": {"content": ...}}``; signing
  ("加签"): ``sign = urlencode(base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)))``
  with timestamp in milliseconds, sent as the ``timestamp`` and ``sign`` query
  parameters; the timestamp must be within 1 hour of the server's clock. Answers
  HTTP 200 with ``{"errcode": 0}``; errcode 310000 is a signature/keyword/IP refusal,
  130101 "send too fast" (the documented limit is 20 messages a minute per robot).
- feishu (Lark): custom bot ``{"msg_type": "text", "content": {"text": ...}}``; signing:
  ``sign = base64(HMAC-SHA256(key=timestamp + "\\n" + secret, msg=""))`` with timestamp
  in seconds, sent as ``timestamp`` and ``sign`` fields of the body; within 1 hour.
  Answers 200 with ``{"code": 0}``; 19021 signature, 19022 IP, 19024 keyword, 9499/11232 rate limit.
- teams: a Power Automate "Workflows" webhook: ``{"type": "message", "attachments":
  [an Adaptive Card 1.4 with one TextBlock]}``; answers 202 (or 200).
- generic: the record itself for a first occurrence; an object with ``kind``,
  ``text``, ``count``, ``group`` and ``last`` (the record) for a follow-up or summary.

The recipes follow the services' public developer documentation (DingTalk "自定义机器人
安全设置", Feishu "自定义机器人使用指南"); tests/unit/test_webhook_sink.py checks them
with a server that verifies the signatures the way those pages describe.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote_plus

from exporter.sinks.webhook.noise import Message

PRESETS = ("slack", "dingtalk", "feishu", "teams", "generic")
SIGNED = ("dingtalk", "feishu")


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk: base64(HMAC-SHA256(secret, "<ms>\\n<secret>")), URL-encoded for the query string."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(mac).decode())


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu/Lark: base64(HMAC-SHA256(key="<s>\\n<secret>", message=empty))."""
    mac = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _teams(text: str) -> dict[str, Any]:
    card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
            "version": "1.4", "body": [{"type": "TextBlock", "text": text, "wrap": True}]}
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}


def _generic(msg: Message, text: str, group_by: list[str], window: float) -> Any:
    if msg.kind == "first" and msg.record is not None:
        return msg.record
    out: dict[str, Any] = {"kind": msg.kind, "text": text, "count": msg.count, "seconds": round(msg.span, 3)}
    if msg.kind == "followup":
        out["group"] = dict(zip(group_by, msg.group, strict=False))
        out["window_seconds"] = window
        out["last"] = msg.record
    else:
        out["groups"] = [dict(zip(group_by, g, strict=False)) for g in msg.suppressed_groups]
        out.update(msg.record or {})
    return out


def request(preset: str, url: str, secret: str | None, msg: Message, text: str, *, now: float,
            group_by: list[str], window: float) -> tuple[str, bytes]:
    """(URL, JSON body) of one message; ``now``: wall-clock seconds (signatures carry it)."""
    body: Any
    if preset == "slack":
        body = {"text": text}
    elif preset == "dingtalk":
        body = {"msgtype": "text", "text": {"content": text}}
        if secret:
            ts = int(now * 1000)
            url = f"{url}{'&' if '?' in url else '?'}timestamp={ts}&sign={dingtalk_sign(secret, ts)}"
    elif preset == "feishu":
        body = {"msg_type": "text", "content": {"text": text}}
        if secret:
            ts = int(now)
            body = {"timestamp": str(ts), "sign": feishu_sign(secret, ts), **body}
    elif preset == "teams":
        body = _teams(text)
    else:
        body = _generic(msg, text, group_by, window)
    return url, json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()


#: A refusal a person must fix (condition kind), or a rate limit (None): service code -> kind.
DINGTALK_CODES = {310000: "signature", 300001: "authentication", 400013: "refused", 130101: None}
FEISHU_CODES = {19021: "signature", 19022: "signature", 19024: "signature", 9499: None, 11232: None,
                19001: "refused", 19002: "refused", 19007: "authentication"}
#: Seconds to wait after a service's own "too fast" answer given in the body (not as Retry-After).
SERVICE_RATE_WAIT = 60.0


def service_error(preset: str, body: bytes) -> tuple[str, str | None, float | None] | None:
    """A 2xx answer whose body says it failed (DingTalk, Feishu): (error, condition kind, retry_after) or None."""
    if preset not in ("dingtalk", "feishu"):
        return None
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    if preset == "dingtalk":
        code, text, table = doc.get("errcode", 0), doc.get("errmsg", ""), DINGTALK_CODES
    else:
        code = doc.get("code", doc.get("StatusCode", 0))
        text, table = doc.get("msg", doc.get("StatusMessage", "")), FEISHU_CODES
    if not code:
        return None
    error = f"{preset} code {code}: {str(text)[:200]}"
    if isinstance(code, int) and code in table:
        kind = table[code]
        return (error, None, SERVICE_RATE_WAIT) if kind is None else (error, kind, None)
    return error, "refused", None
