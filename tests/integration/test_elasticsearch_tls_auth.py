"""sinks.elasticsearch over TLS with basic auth and API keys, into the real OpenSearch.

The test-bench OpenSearch has no security plugin, so it sits behind what many
clusters sit behind: an HTTPS gateway that checks credentials and forwards to the
node (a small proxy here, its certificate from a test CA). The exporter replays a
generated stream through it: the right CA and credentials deliver every record;
a wrong password is the `authentication` condition (held, loud, nothing
acknowledged); an unknown CA fails certificate verification and is retried.
"""
from __future__ import annotations

import base64
import http.server
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.components import free_port, wait_until
from tests.components.tls import CA

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD, API_KEY = "kee", "kee-es-secret", "kid:kee-api-secret"


class Gateway:
    """HTTPS on a loopback port; Basic kee:PASSWORD or ApiKey base64(API_KEY) forwarded to OpenSearch, else 401."""

    def __init__(self, upstream: str, cert: Path, key: Path) -> None:
        allowed = {"Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
                   "ApiKey " + base64.b64encode(API_KEY.encode()).decode()}
        self.seen: list[str] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization", "")
                seen.append(auth.split(" ")[0])
                if auth not in allowed:
                    self._answer(401, b'{"error":"unauthorized"}', "application/json")
                    return
                req = urllib.request.Request(upstream + self.path, data=body or None, method=self.command,
                                             headers={k: v for k, v in self.headers.items()
                                                      if k.lower() in ("content-type", "content-encoding")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        self._answer(r.status, r.read(), r.headers.get("Content-Type", "application/json"))
                except urllib.error.HTTPError as e:
                    self._answer(e.code, e.read(), "application/json")

            def _answer(self, status: int, data: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _forward  # noqa: N815

            def log_message(self, *args) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gateway(opensearch, tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("gw-tls"), "kee-gateway-ca")
    cert, key = ca.issue("gateway", "localhost", server=True)
    gw = Gateway(opensearch.url, cert, key)
    gw.ca_path = ca.cert
    yield gw
    gw.close()


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("es-stream") / "watch.jsonl"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_stream.py"), "-n", "300", "-o", str(path)], check=True)
    return path


def replay(stream: Path, url: str, index: str, *extra: str, env: dict | None = None,
           log_path: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "exporter", "replay", str(stream), "--set", "sinks.stdout.enabled=false",
            "--set", "sinks.elasticsearch.enabled=true", "--set", f"sinks.elasticsearch.url={url}",
            "--set", f"sinks.elasticsearch.index={index}", "--set", "sinks.elasticsearch.retry_backoff_max_seconds=1",
            *extra]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),  # noqa: SIM115
                            env={**os.environ, **(env or {})})


def _occurrences(log_path: Path) -> int:
    import json
    for line in log_path.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("event") == "replay_done":
            return int(entry["occurrences"])
    raise AssertionError("no replay_done in the log:\n" + log_path.read_text()[-2000:])


@pytest.mark.parametrize("auth", ["basic", "api_key"])
def test_https_with_the_ca_and_credentials_delivers_every_record(gateway, opensearch, stream, tmp_path, auth):
    index = f"kee-tls-{uuid.uuid4().hex[:6]}"
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    extra = (["--set", f"sinks.elasticsearch.username={USER}",
              "--set", "sinks.elasticsearch.secrets_from_env={password: KEE_TEST_ES_PASSWORD}"] if auth == "basic"
             else ["--set", f"sinks.elasticsearch.secrets_from_files={{api_key: {key_file}}}"])
    log_path = tmp_path / "replay.log"
    p = replay(stream, gateway.url, index, "--set", f"sinks.elasticsearch.ca_file={gateway.ca_path}", *extra,
               env={"KEE_TEST_ES_PASSWORD": PASSWORD}, log_path=log_path)
    assert p.wait(120) == 0, log_path.read_text()[-3000:]
    assert opensearch.count(index) == _occurrences(log_path) > 0
    text = log_path.read_text()
    assert PASSWORD not in text and "kee-api-secret" not in text
    assert ("Basic" if auth == "basic" else "ApiKey") in gateway.seen
    opensearch.delete_index(index)


def test_a_wrong_password_is_the_authentication_condition_and_nothing_is_acknowledged(gateway, stream, tmp_path):
    log_path = tmp_path / "replay.log"
    p = replay(stream, gateway.url, f"kee-tls-{uuid.uuid4().hex[:6]}",
               "--set", f"sinks.elasticsearch.ca_file={gateway.ca_path}",
               "--set", f"sinks.elasticsearch.username={USER}", "--set", "sinks.elasticsearch.password=wrong-pass",
               log_path=log_path)
    try:
        wait_until(lambda: '"condition": "authentication"' in log_path.read_text(), 30, "the authentication condition")
        assert "wrong-pass" not in log_path.read_text()
    finally:
        p.kill()
        p.wait(10)


def test_a_server_certificate_from_an_unknown_ca_is_refused(gateway, stream, tmp_path):
    log_path = tmp_path / "replay.log"
    before = len(gateway.seen)
    p = replay(stream, gateway.url, f"kee-tls-{uuid.uuid4().hex[:6]}",
               "--set", f"sinks.elasticsearch.username={USER}", "--set", f"sinks.elasticsearch.password={PASSWORD}",
               log_path=log_path)
    try:
        wait_until(lambda: "CERTIFICATE_VERIFY_FAILED" in log_path.read_text(), 30, "a certificate verification error")
        time.sleep(0.5)
        assert len(gateway.seen) == before, "no request got past the TLS handshake"
    finally:
        p.kill()
        p.wait(10)
