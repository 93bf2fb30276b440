"""HTTP to an Elasticsearch / OpenSearch node: one kept-alive connection, TLS, auth, secrets.

Why the standard library (http.client) and not opensearch-py / elasticsearch-py:
the sink needs one request (POST _bulk with a prebuilt, gzipped body) and two at
start (GET /, PUT _index_template); both clients would add a dependency, a
second retry layer to turn off, and per-request object building around bytes we
already have (docs/elasticsearch.md has the measurement). One connection is used
by the one sending thread; any error closes it and the next request reconnects.

Secrets (password, api_key) come from the settings, ``secrets_from_env`` or
``secrets_from_files``; :meth:`Transport.describe` masks them (exporter/redact.py).
"""
from __future__ import annotations

import base64
import http.client
import os
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from exporter.errors import ConfigError
from exporter.redact import MASK

SECRET_KEYS = ("password", "api_key")


class TransportError(Exception):
    """The request did not get an HTTP answer (refused, reset, timed out, TLS failure)."""


def resolve_secrets(cfg: Any, env: dict[str, str] | None = None) -> dict[str, str]:
    """password / api_key from the settings, then secrets_from_env, then secrets_from_files."""
    environ: Mapping[str, str] = os.environ if env is None else env
    out = {k: getattr(cfg, k) for k in SECRET_KEYS if getattr(cfg, k)}
    for where, mapping in (("secrets_from_env", cfg.secrets_from_env), ("secrets_from_files", cfg.secrets_from_files)):
        for key, src in (mapping or {}).items():
            field = f"sinks.elasticsearch.{where}.{key}"
            if key not in SECRET_KEYS:
                raise ConfigError(field, f"{key!r} is not a secret setting", "use password or api_key")
            if key in out:
                raise ConfigError(field, f"{key} is set twice", f"set {key} in one place only")
            if where == "secrets_from_env":
                if src not in environ:
                    raise ConfigError(field, f"environment variable {src} is not set",
                                      f"set {src}, or remove {field}")
                out[key] = environ[src]
            else:
                try:
                    with open(src, encoding="utf-8") as f:
                        out[key] = f.read().strip()
                except OSError as exc:
                    raise ConfigError(field, f"cannot read {src}: {exc.strerror}", "mount the secret file there") \
                        from exc
    return out


def auth_header(cfg: Any, secrets: dict[str, str]) -> str | None:
    if secrets.get("api_key"):
        key = secrets["api_key"]
        return "ApiKey " + (base64.b64encode(key.encode()).decode() if ":" in key else key)
    if cfg.username:
        if "password" not in secrets:
            raise ConfigError("sinks.elasticsearch.password", "username is set but no password",
                              "set it with secrets_from_env: {password: ES_PASSWORD} or secrets_from_files")
        return "Basic " + base64.b64encode(f"{cfg.username}:{secrets['password']}".encode()).decode()
    if "password" in secrets:
        raise ConfigError("sinks.elasticsearch.username", "a password is set but no username", "set username")
    return None


class Transport:
    """One HTTP(S) connection to ``url``; see the module docstring."""

    def __init__(self, cfg: Any, env: dict[str, str] | None = None) -> None:
        u = urlsplit(cfg.url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ConfigError("sinks.elasticsearch.url", f"{cfg.url!r} is not an http(s) URL",
                              "set it to http(s)://host:9200")
        if u.username or u.password:
            raise ConfigError("sinks.elasticsearch.url", "credentials in the URL would be logged",
                              "use username and secrets_from_env / secrets_from_files")
        self.url = cfg.url.rstrip("/")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = u.path.rstrip("/")
        self.timeout = float(cfg.request_timeout_seconds)
        self._ctx: ssl.SSLContext | None = None
        if self.scheme == "https":
            try:
                self._ctx = ssl.create_default_context(cafile=cfg.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError("sinks.elasticsearch.ca_file", f"cannot load {cfg.ca_file}: {exc}",
                                  "give a PEM CA bundle") from exc
            if not cfg.tls_verify:
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        elif cfg.ca_file:
            raise ConfigError("sinks.elasticsearch.ca_file", "set but the URL is http://", "use an https:// URL")
        self.secrets = resolve_secrets(cfg, env)
        self.headers = {"Accept": "application/json", "User-Agent": "kube-event-exporter"}
        auth = auth_header(cfg, self.secrets)
        if auth:
            self.headers["Authorization"] = auth
        self.auth = "api_key" if "api_key" in self.secrets else ("basic" if auth else "none")
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._ctx is not None:
                self._conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self._ctx)
            else:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self._conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """(status, body) of one request; TransportError when there is no answer."""
        conn = self._connect()
        h = dict(self.headers)
        if headers:
            h.update(headers)
        try:
            conn.request(method, self.base + path, body=body, headers=h)
            resp = conn.getresponse()
            data = resp.read()
            if resp.will_close:
                self.close()
            return resp.status, data
        except (TimeoutError, OSError, http.client.HTTPException, ssl.SSLError) as exc:
            self.close()
            raise TransportError(f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def describe(self) -> dict[str, Any]:
        """For the start log line: where and how, secrets masked."""
        return {"url": self.url, "auth": self.auth, "tls": self.scheme == "https",
                **{k: MASK for k in self.secrets}}
