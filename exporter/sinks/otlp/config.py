"""sinks.otlp settings + the standard OTEL_EXPORTER_OTLP_* environment -> every transport setting.

Precedence: a setting > OTEL_EXPORTER_OTLP_LOGS_* > OTEL_EXPORTER_OTLP_* > default, as
the OTLP exporter specification says. Validated here (ConfigError naming the setting or
the variable), so --check-config and the start refuse what would only fail at the first
export. Secrets: header values and an endpoint's userinfo are never printed
(``describe()``, exporter/redact.py).
"""
from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlparse

from exporter import log
from exporter.errors import ConfigError
from exporter.redact import mask_url
from exporter.settings import OtlpSettings

ENV = {
    "protocol": ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
    "endpoint": ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    "headers": ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
    "insecure": ("OTEL_EXPORTER_OTLP_LOGS_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
    "ca_file": ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
    "client_cert_file": ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
    "client_key_file": ("OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
    "compression": ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"),
    "timeout": ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"),
}
PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("gzip", "none")
DEFAULT_ENDPOINTS = {"grpc": "http://localhost:4317", "http/protobuf": "http://localhost:4318"}


def _env(name: str, env: dict[str, str]) -> str | None:
    for var in ENV[name]:
        v = env.get(var)
        if v is not None and v.strip() != "":
            return v.strip()
    return None


def _env_source(name: str, env: dict[str, str]) -> str:
    """The variable _env() took the value from (called only when it found one)."""
    for var in ENV[name]:
        v = env.get(var)
        if v is not None and v.strip() != "":
            return var
    return ENV[name][-1]


def parse_headers(text: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS syntax: ``k1=v1,k2=v2``, values URL-encoded."""
    out = {}
    for item in text.split(","):
        if "=" in item:
            k, _, v = item.partition("=")
            if k.strip():
                out[unquote(k.strip()).lower()] = unquote(v.strip())
    return out


class Resolved:
    """Every transport setting, after settings > OTEL_EXPORTER_OTLP_LOGS_* > OTEL_EXPORTER_OTLP_* > default."""

    def __init__(self, cfg: OtlpSettings, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self.sources: dict[str, str] = {}

        def pick(field: str, value: Any, envname: str | None = None) -> Any:
            envname = envname or field
            if value is not None:
                self.sources[field] = f"sinks.otlp.{field}"
                return value
            v = _env(envname, env)
            if v is not None:
                self.sources[field] = _env_source(envname, env)
            return v

        protocol = pick("protocol", cfg.protocol) or "grpc"
        if protocol not in PROTOCOLS:
            raise ConfigError(self.sources.get("protocol", "sinks.otlp.protocol"),
                              f"unsupported OTLP protocol {protocol!r}", "use grpc or http/protobuf")
        self.protocol = protocol
        endpoint = pick("endpoint", cfg.endpoint)
        from_generic = self.sources.get("endpoint") == "OTEL_EXPORTER_OTLP_ENDPOINT"
        if endpoint is None:
            endpoint = DEFAULT_ENDPOINTS[protocol]
            from_generic = True
        if protocol == "http/protobuf":
            u = urlparse(endpoint)
            if u.scheme not in ("http", "https"):
                raise ConfigError(self.sources.get("endpoint", "sinks.otlp.endpoint"),
                                  f"OTLP/HTTP endpoint {mask_url(endpoint)!r} has no http:// or https:// scheme",
                                  "give a URL such as http://collector:4318")
            # The generic variable and a bare base URL are base URLs: the signal path is appended.
            if from_generic or u.path in ("", "/"):
                endpoint = endpoint.rstrip("/") + "/v1/logs"
        self.endpoint = endpoint
        #: The endpoint fit for a log line: userinfo (user:password@) masked.
        self.safe_endpoint = mask_url(endpoint)
        headers = parse_headers(_env("headers", env) or "")
        if _env("headers", env):
            self.sources["headers"] = _env_source("headers", env)
        headers.update({k.lower(): v for k, v in (cfg.headers or {}).items()})
        if cfg.headers:
            self.sources["headers"] = "sinks.otlp.headers"
        self.headers = headers
        insecure = cfg.insecure
        if insecure is None:
            v = _env("insecure", env)
            insecure = v.lower() == "true" if v is not None else None
        if protocol == "grpc" and insecure is None:
            scheme = urlparse(endpoint).scheme
            insecure = scheme == "http" if scheme in ("http", "https") else False
        self.insecure = bool(insecure) if insecure is not None else False
        self.ca_file = pick("ca_file", cfg.ca_file)
        self.client_cert_file = pick("client_cert_file", cfg.client_cert_file)
        self.client_key_file = pick("client_key_file", cfg.client_key_file)
        for field in ("ca_file", "client_cert_file", "client_key_file"):
            path = getattr(self, field)
            if path and not os.access(path, os.R_OK):
                raise ConfigError(self.sources.get(field, f"sinks.otlp.{field}"), f"cannot read {path}",
                                  "mount the file (a Secret volume) and give its path")
        if bool(self.client_cert_file) != bool(self.client_key_file):
            raise ConfigError("sinks.otlp.client_cert_file", "a client certificate needs its key and vice versa",
                              "set both client_cert_file and client_key_file, or neither")
        compression = (pick("compression", cfg.compression) or "none").lower()
        if compression not in COMPRESSIONS:
            raise ConfigError(self.sources.get("compression", "sinks.otlp.compression"),
                              f"unsupported compression {compression!r}", "use gzip or none")
        self.compression = compression
        if cfg.timeout_seconds is not None:
            self.timeout = float(cfg.timeout_seconds)
            self.sources["timeout"] = "sinks.otlp.timeout_seconds"
        else:
            v = _env("timeout", env)
            if v is not None:
                try:
                    ms = float(v)
                except ValueError as exc:
                    raise ConfigError(_env_source("timeout", env), f"not a number: {v!r}",
                                      "give milliseconds, e.g. 10000") from exc
                if ms < 100:
                    log.warning("otlp_timeout_env_small", variable=_env_source("timeout", env), value=v,
                                note="read as milliseconds, as the OTLP specification defines it")
                self.timeout = ms / 1000.0
                self.sources["timeout"] = _env_source("timeout", env)
            else:
                self.timeout = 10.0
        if self.timeout <= 0:
            self.timeout = 10.0

    def describe(self) -> dict[str, Any]:
        """The settings fit for a log line: the endpoint's userinfo masked, header names only."""
        return {"protocol": self.protocol, "endpoint": self.safe_endpoint, "insecure": self.insecure,
                "tls_ca": bool(self.ca_file), "client_cert": bool(self.client_cert_file),
                "compression": self.compression, "timeout_seconds": self.timeout,
                "headers": sorted(self.headers), "from": self.sources}


def check_settings(cfg: OtlpSettings, env: dict[str, str] | None = None) -> None:
    """Fail at start, naming the field, for what would only fail at the first export."""
    Resolved(cfg, env)


def check(cfg: OtlpSettings, env: dict[str, str] | None = None) -> list[ConfigError]:
    """Every problem of sinks.otlp (with the environment), for --check-config: [] when valid. Pure."""
    try:
        Resolved(cfg, env)
    except ConfigError as exc:
        return [exc]
    return []
