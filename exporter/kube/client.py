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
import os
import sys
from collections.abc import Iterator, Mapping
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

    def stream(self, path: str, *, query: dict[str, Any], inactivity_timeout: float) -> Iterator[list[bytes]]:
        """Open a streaming GET; yield lists of complete lines as chunks arrive.

        A read that waits longer than ``inactivity_timeout`` raises Unreachable
        (the connection is presumed dead). The generator ends when the server
        closes the stream (a routine watch timeout).
        """
        resp = self._open("GET", path, query, None, inactivity_timeout)
        if resp.status >= 400:
            try:
                raw = resp.read()
            finally:
                resp.release_conn()
            raise error_from(resp.status, raw, resp.headers)
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
