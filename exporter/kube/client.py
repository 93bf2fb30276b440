"""Kubernetes API client: configuration and auth from the official client, raw bytes on the wire.

The ``kubernetes`` package is imported here only. It loads kubeconfig (contexts,
exec plugins, client certificates) or the in-cluster service account, and keeps
the bearer token fresh (its refresh hook re-reads a rotated projected token).
Requests go straight through urllib3 with the pool it configures: the client's
model classes cost ~20x more than orjson on the hot path, so watch and list
bodies are decoded here, by us, as plain dicts.

Library errors are mapped onto exporter.errors at this boundary.

Memory: ``import kubernetes`` runs the package's __init__, which imports every API
and model class of ``kubernetes.client`` (with pydantic), plus dynamic, watch,
stream, informer and leaderelection: ~17 MiB of RSS for the three modules used here
(client.configuration, client.rest, config). :func:`_kubernetes` imports those alone
(see its docstring); the rest of the package still loads on first use, if anything
asks for it.
"""
from __future__ import annotations

import importlib.util
import math
import os
import select
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

import urllib3

from exporter import wire
from exporter.errors import ApiError, ExporterError, Forbidden, Gone

if TYPE_CHECKING:  # the one importer of kubernetes (import-linter), at run time through _kubernetes()
    import kubernetes  # noqa: F401

SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class Unreachable(ExporterError):
    """No HTTP answer at all (connection refused, DNS, TLS handshake, timeout)."""


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    v = headers.get("Retry-After") if headers else None
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None


def error_from(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> ApiError:
    """Map an HTTP error answer (a metav1.Status body, usually) to our error tree."""
    message = body[:500].decode("utf-8", "replace")
    retry = _retry_after(headers)
    try:
        st = wire.loads(body)
        if isinstance(st, dict):
            message = st.get("message") or message
            details = st.get("details") or {}
            if retry is None and details.get("retryAfterSeconds"):
                retry = float(details["retryAfterSeconds"])
    except wire.JSONDecodeError:
        pass
    if status == 410:
        return Gone(status, message, retry)
    if status in (401, 403):
        return Forbidden(status, message, retry)
    return ApiError(status, message, retry)


def _bare_package(name: str, directory: Path, **names: Any) -> ModuleType:
    """Register package ``name`` without running its __init__: its submodules import alone.

    The first look-up of a name the bare package lacks runs the real __init__ in it, so
    ``kubernetes.client.CoreV1Api`` and the like still work, only later.
    """
    spec = importlib.util.spec_from_file_location(name, directory / "__init__.py",
                                                  submodule_search_locations=[str(directory)])
    assert spec is not None and spec.loader is not None
    loader = spec.loader
    mod = importlib.util.module_from_spec(spec)
    mod.__dict__.update(names)

    def complete(attr: str) -> Any:
        for k in ("__getattr__", *names):  # once: the real __init__ defines (or lazily resolves) these
            mod.__dict__.pop(k, None)
        loader.exec_module(mod)
        return getattr(mod, attr)
    mod.__dict__["__getattr__"] = complete
    sys.modules[name] = mod
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, mod)
    return mod


class _ApiClient:
    """kubernetes.client.ApiClient on first use (kube_config builds one only to refresh an OIDC token)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("kubernetes.client.api_client").ApiClient(*args, **kwargs)


class _OAuth2Session:
    """requests_oauthlib.OAuth2Session on first use (OIDC refresh only); it imports requests and oauthlib."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module("requests_oauthlib.oauth2_session").OAuth2Session(*args, **kwargs)


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # finds, does not import, a top-level package
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _kubernetes() -> tuple[Any, Any, Any]:
    """The modules used here, (kubernetes.client.Configuration, kubernetes.config, kubernetes.client.rest).

    When the ``kubernetes`` package is not imported yet, it and its ``client`` and ``utils``
    subpackages are registered bare (:func:`_bare_package`) before the three modules are
    imported; ``kubernetes.config`` takes ``ApiClient`` (which imports every model) from the
    client package at import time, so that one name is :class:`_ApiClient`, resolved on use.
    """
    if "kubernetes" not in sys.modules and (root := _package_dir("kubernetes")) is not None:
        oauth = _package_dir("requests_oauthlib")
        if oauth is not None and "requests_oauthlib" not in sys.modules and "oauthlib" not in sys.modules:
            # kubernetes.config imports both at import time for OIDC alone: requests and oauthlib, ~6 MiB
            _bare_package("requests_oauthlib", oauth, OAuth2Session=_OAuth2Session)
            oauthlib = importlib.import_module("oauthlib")  # its __init__ is a logger only
            _bare_package("oauthlib.oauth2", Path(str(oauthlib.__file__)).parent / "oauth2")
        _bare_package("kubernetes", root)
        _bare_package("kubernetes.utils", root / "utils")
        client_pkg = _bare_package("kubernetes.client", root / "client", ApiClient=_ApiClient)
        configuration = importlib.import_module("kubernetes.client.configuration")
        client_pkg.__dict__["Configuration"] = configuration.Configuration
    # import_module, not `from kubernetes import config`: a from-import probes the bare package for the
    # name first, and that look-up would run its __init__
    config = importlib.import_module("kubernetes.config")
    configuration = importlib.import_module("kubernetes.client.configuration")
    rest = importlib.import_module("kubernetes.client.rest")
    return configuration.Configuration, config, rest


class KubeClient:
    """Minimal raw client: get/list/watch/create/update JSON against one apiserver."""

    def __init__(self, *, kubeconfig: str | None = None, context: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        configuration, config, rest = _kubernetes()
        cfg = configuration()
        try:
            if kubeconfig:
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
                self.source = f"kubeconfig {kubeconfig}"
            elif os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(SA_NAMESPACE_FILE):
                config.load_incluster_config(client_configuration=cfg)
                self.source = "in-cluster service account"
            else:
                config.load_kube_config(context=context, client_configuration=cfg)
                self.source = "kubeconfig " + os.environ.get("KUBECONFIG", "~/.kube/config")
        except config.ConfigException as exc:
            raise ExporterError(f"cannot load Kubernetes credentials: {exc}") from exc
        except OSError as exc:
            raise ExporterError(f"cannot read Kubernetes credentials: {exc}") from exc
        self._cfg = cfg
        self.host = cfg.host.rstrip("/")
        self._pool: urllib3.PoolManager = rest.RESTClientObject(cfg).pool_manager
        self._connect_timeout = connect_timeout

    def own_namespace(self) -> str:
        """The namespace this process runs in (service account), or 'default'."""
        try:
            with open(SA_NAMESPACE_FILE) as f:
                return f.read().strip()
        except OSError:
            return os.environ.get("POD_NAMESPACE", "default")

    def _headers(self, content_type: str | None = None, accept: str | None = None) -> dict[str, str]:
        h = {"Accept": accept or "application/json", "User-Agent": "kube-event-exporter"}
        auth = self._cfg.auth_settings().get("BearerToken")
        token = auth.get("value") if auth else None
        if token:
            h["Authorization"] = token
        if content_type:
            h["Content-Type"] = content_type
        return h

    def _open(self, method: str, path: str, query: dict[str, Any] | None, body: bytes | None,
              read_timeout: float | None, content_type: str | None = None,
              accept: str | None = None) -> urllib3.BaseHTTPResponse:
        url = self.host + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None and v != ""})
        try:
            return self._pool.request(method, url, body=body, headers=self._headers(content_type, accept),
                                      preload_content=False, retries=False, redirect=False,
                                      timeout=urllib3.Timeout(connect=self._connect_timeout, read=read_timeout))
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"{method} {self.host}{path}: {exc}") from exc

    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: Any = None, timeout: float = 30.0, content_type: str = "application/json") -> dict[str, Any]:
        raw = self.request_raw(method, path, query=query, body=body, timeout=timeout, content_type=content_type)
        return cast(dict[str, Any], wire.loads(raw)) if raw else {}

    def request_raw(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                    body: Any = None, timeout: float = 30.0, content_type: str = "application/json",
                    accept: str | None = None) -> bytes:
        """One request, the body as bytes. ``accept`` overrides the Accept header (e.g. PartialObjectMetadata)."""
        data = wire.dumps(body) if body is not None and not isinstance(body, bytes) else body
        resp = self._open(method, path, query, data, timeout, content_type if data is not None else None, accept)
        try:
            raw = resp.read()
        except urllib3.exceptions.HTTPError as exc:
            raise Unreachable(f"{method} {path}: {exc}") from exc
        finally:
            resp.release_conn()
        if resp.status >= 400:
            raise error_from(resp.status, raw, resp.headers)
        return raw

    def stream(self, path: str, *, query: dict[str, Any], inactivity_timeout: float,
               linger: float = 0.0) -> Iterator[list[bytes]]:
        """Open a streaming GET; yield lists of complete lines as chunks arrive.

        A read that waits longer than ``inactivity_timeout`` raises Unreachable
        (the connection is presumed dead). The generator ends when the server
        closes the stream (a routine watch timeout). ``linger`` (seconds): see
        :func:`_chunked_lines`.
        """
        resp = self._open("GET", path, query, None, inactivity_timeout)
        if resp.status >= 400:
            try:
                raw = resp.read()
            finally:
                resp.release_conn()
            raise error_from(resp.status, raw, resp.headers)
        reader = _raw_chunked(resp)
        if reader is None:  # not chunked, or compressed: urllib3's own reader
            yield from self._stream_urllib3(resp, path)
            return
        try:
            yield from _chunked_lines(reader, _readable(resp) if linger > 0 else None, linger)
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise Unreachable(f"watch {path}: {_timeout_text(exc)}") from exc
        finally:
            # The body was read past urllib3: close the connection, never hand it back to the pool.
            resp.close()
            resp.release_conn()

    @staticmethod
    def _stream_urllib3(resp: urllib3.BaseHTTPResponse, path: str) -> Iterator[list[bytes]]:
        rest = b""
        try:
            for chunk in resp.stream(65536, decode_content=True):
                if rest:
                    chunk = rest + chunk
                lines = chunk.split(b"\n")
                rest = lines.pop()
                if lines:
                    yield lines
            if rest.strip():
                yield [rest]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise Unreachable(f"watch {path}: {exc}") from exc
        finally:
            resp.release_conn()
            resp.close()


#: Bytes asked of one read: what the socket holds, in one system call (TLS hands out a record, <= 16 KiB).
READ_SIZE = 1 << 18


def _timeout_text(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, TimeoutError) or "timed out" in text:
        return f"Read timed out ({text})"  # the source's inactivity rule looks for these words
    return text


def _raw_chunked(resp: urllib3.BaseHTTPResponse) -> Any:
    """The ``read1`` of the buffered socket under a chunked, uncompressed response; None otherwise.

    urllib3 (and http.client under it) decode chunked bodies one chunk at a time, several reads
    and a few dozen Python calls per chunk; the apiserver sends one chunk per watch event, so at
    low rates that is most of the CPU an Event costs (docs/BENCHMARKS.md, Notes). Here the body
    is read in whatever blocks the socket has and de-chunked by :func:`_chunked_lines`.
    """
    headers = resp.headers
    if (headers.get("Transfer-Encoding", "").lower() != "chunked"
            or headers.get("Content-Encoding", "identity").lower() not in ("", "identity")):
        return None
    fp = getattr(getattr(resp, "_fp", None), "fp", None)  # urllib3 -> http.client -> the socket's BufferedReader
    read1 = getattr(fp, "read1", None)
    return read1 if callable(read1) else None


def _readable(resp: urllib3.BaseHTTPResponse) -> Callable[[], bool] | None:
    """A look (no wait) at whether the response's socket has bytes to read; None if it cannot be had."""
    sock = getattr(getattr(resp, "_connection", None), "sock", None)
    if sock is None:
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    pending = getattr(sock, "pending", None)  # TLS: bytes already decrypted in OpenSSL's buffer

    def readable() -> bool:
        return bool((pending is not None and pending()) or poller.poll(0))
    return readable


def _chunked_lines(read1: Any, readable: Callable[[], bool] | None = None,
                   linger: float = 0.0) -> Iterator[list[bytes]]:
    """De-chunk a chunked body read by ``read1`` and yield the complete lines of each read.

    With ``readable`` (a look at the socket that never waits), a read takes every TLS record
    already there before the lines are handed on: one batch per wake-up, not one per Event.
    ``linger``: while Events flow (the previous read came less than two lingers before this
    one), once the socket has nothing more to read, wait this long before the next read, so
    that one wake-up takes every Event that arrived meanwhile. On this project's machines a
    wake-up costs ~150 us of CPU (docs/BENCHMARKS.md): at 100 Events/s, a 50 ms linger turns
    100 wake-ups a second into 20, for at most 50 ms more latency. A lone Event (the previous
    read long ago) is read at once; full speed never waits (the socket always has more).

    The framing (RFC 9112 7.1: ``size[;ext] CRLF data CRLF``, ``0 CRLF [trailers] CRLF``)
    is parsed with bytes.find over each block; a chunk may hold many lines or part of one.
    Ends after the last chunk; raises ValueError on bad framing, ConnectionResetError when
    the server closes the connection mid-body.
    """
    buf = b""       # framing bytes not parsed yet
    left = 0        # data bytes still to come in the current chunk
    rest = b""      # the start of a line not complete yet
    previous = -math.inf  # when the previous read returned
    while True:
        block = read1(READ_SIZE)
        if not block:
            raise ConnectionResetError("watch body ended inside a chunk (connection closed)")
        drained = False
        if readable is not None:
            now = time.monotonic()
            flowing, previous = now - previous < 2 * linger, now
            # A read returns one TLS record (one Event, as the apiserver sends them): take every one
            # already there, so that the Events of one wake-up are handled (and written) as one batch.
            size = len(block)
            if size < READ_SIZE:
                more = [block]
                while size < READ_SIZE:
                    if not readable():
                        drained = True
                        break
                    got = read1(READ_SIZE - size)
                    if not got:
                        break
                    more.append(got)
                    size += len(got)
                if len(more) > 1:
                    block = b"".join(more)
        if buf:
            block = buf + block
            buf = b""
        n = len(block)
        pos = 0
        parts: list[bytes] = [rest] if rest else []
        last = False
        while pos < n:
            if left > 0:
                end = pos + left
                if end <= n:
                    parts.append(block[pos:end])
                    left = 0
                    pos = end + 2      # the CRLF after the data (may lie in the next block: see below)
                    if pos > n:
                        left = -(pos - n)  # CRLF bytes still to skip
                        pos = n
                else:
                    parts.append(block[pos:])
                    left = end - n
                    pos = n
            elif left < 0:         # skipping the rest of a CRLF
                skip = min(-left, n - pos)
                left += skip
                pos += skip
            else:
                eol = block.find(b"\r\n", pos)
                if eol < 0:
                    buf = block[pos:]
                    if len(buf) > 1024:
                        raise ValueError("chunk size line over 1 KiB")
                    break
                size = int(block[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:
                    last = True
                    buf = block[pos:]
                    break
                if size < 0:
                    raise ValueError("negative chunk size")
                left = size
        data = b"".join(parts) if len(parts) != 1 else parts[0]
        lines = data.split(b"\n")
        rest = lines.pop()
        if last:
            if rest.strip():
                lines.append(rest)
            if lines:
                yield lines
            _skip_trailers(read1, buf)
            return
        if lines:
            yield lines
        if readable is not None and flowing and (drained or not readable()):
            time.sleep(linger)


def _skip_trailers(read1: Any, buf: bytes) -> None:
    """After the last chunk: read the trailer section up to its empty line (usually just CRLF)."""
    while True:
        if buf.startswith(b"\r\n") or b"\r\n\r\n" in buf:
            return
        more = read1(1024)
        if not more:
            return
        buf += more
