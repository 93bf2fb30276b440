"""A real HTTP webhook receiver on 127.0.0.1 that checks what each service checks.

Paths name the service: /slack, /dingtalk, /feishu, /teams, /generic (anything after
is ignored, e.g. /dingtalk/robot/send?access_token=...). Each request is recorded with
its JSON body, and checked as the service does:

- slack: ``{"text": str}``; anything else is 400 ``invalid_payload``;
- dingtalk: msgtype text with ``text.content``; with a secret, the ``timestamp`` (ms)
  and ``sign`` query parameters must match HMAC-SHA256(secret, ts + "\\n" + secret),
  base64, and the timestamp be within one hour, else 200 ``{"errcode": 310000}``;
- feishu: msg_type text with ``content.text``; with a secret, the body's ``timestamp``
  (s) and ``sign`` must match HMAC-SHA256(key=ts + "\\n" + secret, msg=""), base64,
  within one hour, else 200 ``{"code": 19021}``;
- teams: a message with one Adaptive Card attachment holding a TextBlock; answers 202.

``script`` holds answers to give first, in order: (status, headers, body, delay seconds).
The signature check is written here from the services' documentation, independently of
exporter/sinks/webhook/presets.py (the code under test).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

HOUR = 3600


class Receiver:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret
        self.requests: list[dict] = []        # every request: service, body, status answered, time
        self.script: list[tuple[int, dict, bytes, float]] = []
        self.lock = threading.Lock()
        self.clock_offset = 0.0               # the "service's" clock minus ours (to test the window)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                status, headers, body, delay = receiver.answer(self.path, raw)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (a timeout test)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, service: str, query: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{service}{query}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- what the services check ---------------------------------------------------------

    def answer(self, path: str, raw: bytes) -> tuple[int, dict, bytes, float]:
        parts = urlsplit(path)
        service = parts.path.strip("/").split("/")[0]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self.lock:
            scripted = self.script.pop(0) if self.script else None
        if scripted is not None:
            status, headers, text, delay = scripted
        else:
            status, text = self.check(service, query, body)
            headers, delay = {"Content-Type": "application/json"}, 0.0
        try:
            doc = json.loads(text or b"{}")
        except ValueError:
            doc = {}
        refused = isinstance(doc, dict) and bool(doc.get("errcode") or doc.get("code"))
        with self.lock:
            self.requests.append({"service": service, "query": query, "body": body, "status": status,
                                  "answer": text, "ok": status < 300 and not refused, "at": time.monotonic()})
        return status, headers, text, delay

    def _ts_ok(self, ts: int) -> bool:
        return abs(time.time() + self.clock_offset - ts) <= HOUR

    def check(self, service: str, query: dict, body: object) -> tuple[int, bytes]:
        ok = json.dumps({"errcode": 0, "errmsg": "ok"}).encode()
        if not isinstance(body, dict):
            return 400, b"invalid_payload"
        if service == "slack":
            return (200, b"ok") if isinstance(body.get("text"), str) and len(body) == 1 else (400, b"invalid_payload")
        if service == "dingtalk":
            if body.get("msgtype") != "text" or not isinstance(body.get("text", {}).get("content"), str):
                return 200, json.dumps({"errcode": 40035, "errmsg": "invalid msgtype"}).encode()
            if self.secret:
                ts = query.get("timestamp", "")
                want = base64.b64encode(hmac.new(self.secret.encode(), f"{ts}\n{self.secret}".encode(),
                                                 hashlib.sha256).digest()).decode()
                # parse_qs already URL-decoded the sign once, as the service's framework does
                if query.get("sign") != want or not ts.isdigit() or not self._ts_ok(int(ts) // 1000):
                    return 200, json.dumps({"errcode": 310000, "errmsg": "sign not match"}).encode()
            return 200, ok
        if service == "feishu":
            if body.get("msg_type") != "text" or not isinstance(body.get("content", {}).get("text"), str):
                return 200, json.dumps({"code": 9499, "msg": "Bad Request"}).encode()
            if self.secret:
                ts = str(body.get("timestamp", ""))
                want = base64.b64encode(hmac.new(f"{ts}\n{self.secret}".encode(), b"",
                                                 hashlib.sha256).digest()).decode()
                if body.get("sign") != want or not ts.isdigit() or not self._ts_ok(int(ts)):
                    return 200, json.dumps({"code": 19021, "msg": "sign match fail or timestamp is not within "
                                                                  "one hour from current time"}).encode()
            return 200, json.dumps({"code": 0, "msg": "success", "data": {}}).encode()
        if service == "teams":
            try:
                att = body["attachments"][0]
                card = att["content"]
                good = (body["type"] == "message" and att["contentType"] == "application/vnd.microsoft.card.adaptive"
                        and card["type"] == "AdaptiveCard" and card["body"][0]["type"] == "TextBlock"
                        and isinstance(card["body"][0]["text"], str))
            except (KeyError, IndexError, TypeError):
                good = False
            return (202, b"") if good else (400, b"bad card")
        return 200, b""

    def texts(self, service: str | None = None) -> list[str]:
        """The text of every accepted message, in arrival order."""
        out = []
        for r in list(self.requests):
            if not r["ok"] or (service and r["service"] != service):
                continue
            b = r["body"]
            out.append(b.get("text") if "text" in b and isinstance(b.get("text"), str)
                       else (b.get("text") or {}).get("content") if r["service"] == "dingtalk"
                       else (b.get("content") or {}).get("text") if r["service"] == "feishu"
                       else json.dumps(b))
        return out
