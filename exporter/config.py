"""The one way settings are loaded and validated: ``--check-config`` and start-up both call :func:`load`.

exporter/settings.py holds the data and its schema; the rules a schema cannot say
live here, beside the modules that own them (the leader's timing rule in
leader.py, the sinks' own checks in sinks/, selector syntax in kube/selectors.py,
librdkafka's key check in sinks/kafka/config.py). This module imports them, never
the reverse, so there is no import cycle, and there is no second path: whatever
start-up would refuse, ``--check-config`` refuses first, with exit 2, naming the
setting and the fix.

Loading also registers every secret value the settings name (OTLP header values,
Kafka credentials, URL passwords) with exporter/redact.py, so no log line or
error message prints them afterwards.
"""
from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from exporter import redact, settings
from exporter.errors import ConfigError
from exporter.kube import selectors
from exporter.settings import Settings

_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9][-A-Za-z0-9_.]*")
#: a mounted secret is a short file; more than this is not one (and /dev/zero would never end)
MAX_SECRET_FILE_BYTES = 65536
_OTLP_ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_OTLP_HEADER_ENV = ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def load(path: str | None = None, env: dict[str, str] | None = None,
         overrides: list[tuple[str, Any]] | None = None) -> Settings:
    """File + environment + flags -> schema -> typed settings -> every rule below; ConfigError on the first problem."""
    env = dict(os.environ) if env is None else env
    try:
        s = settings.parse(path, env, overrides)
        register_secrets(s, env)  # before the checks: their messages may echo a value
        check(s, env)
    except ConfigError as exc:
        raise ConfigError(exc.field, redact.scrub(exc.problem), redact.scrub(exc.fix)) from exc
    return s


def check(s: Settings, env: dict[str, str] | None = None) -> None:
    """Every rule start-up depends on; raises ConfigError naming the first setting that breaks one."""
    env = dict(os.environ) if env is None else env
    for field, problem, fix in problems(s, env):
        raise ConfigError(field, problem, fix)


def problems(s: Settings, env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    """(setting, problem, fix) for each rule broken, in document order. Sinks' own checks raise instead."""
    k = s.kubernetes
    for i, ns in enumerate(k.namespaces):
        for p in selectors.namespace_problems(ns):
            yield f"kubernetes.namespaces.{i}", p, "list namespace names, e.g. [payments, checkout]"
    if len(set(k.namespaces)) != len(k.namespaces):
        yield "kubernetes.namespaces", "a namespace is listed twice", "list each namespace once"
    for p in selectors.field_selector_problems(k.field_selector, k.api):
        yield "kubernetes.field_selector", p, "use the apiserver's syntax: type!=Normal,reason=BackOff"
    for p in selectors.label_selector_problems(k.label_selector):
        yield "kubernetes.label_selector", p, "use kubectl's label selector syntax: app=web,tier in (a,b),!canary"
    if k.backoff_initial_seconds > k.backoff_max_seconds:
        yield ("kubernetes.backoff_initial_seconds", f"{k.backoff_initial_seconds} is more than "
               f"backoff_max_seconds ({k.backoff_max_seconds})", "set backoff_initial_seconds <= backoff_max_seconds")

    from exporter.transforms.filters import FilterError, parse_field_selector
    try:
        parse_field_selector(s.filters.field_selector)
    except FilterError as exc:
        yield "filters.field_selector", str(exc), "use kubectl syntax: type!=Normal,reason=BackOff"

    yield from _sink_problems(s, env)

    c = s.checkpoint
    if c.store == "file" and not c.path:
        yield ("checkpoint.path", "the file store needs a path",
               "set checkpoint.path (a file on a persistent volume) or checkpoint.store=kubernetes")
    if c.store == "kubernetes":
        yield from _object_name("checkpoint.name", c.name, "ConfigMap")
        if c.namespace is not None:
            yield from _namespace("checkpoint.namespace", c.namespace)

    r = s.records
    if r.max_message_bytes > r.max_record_bytes:
        yield ("records.max_message_bytes", f"{r.max_message_bytes} is more than records.max_record_bytes "
               f"({r.max_record_bytes})", "lower records.max_message_bytes, or raise records.max_record_bytes")

    for p in listen_problems(s.server.listen):
        yield "server.listen", p, "use host:port with port 0-65535, e.g. 0.0.0.0:8080, or '' to disable"

    pt = s.sources.pod_terminations
    for i, ns in enumerate(pt.namespaces):
        for p in selectors.namespace_problems(ns):
            yield f"sources.pod_terminations.namespaces.{i}", p, "list namespace names, or [] for kubernetes.namespaces"
    for p in selectors.label_selector_problems(pt.label_selector):
        yield ("sources.pod_terminations.label_selector", p,
               "use kubectl's label selector syntax: app=web,tier in (a,b),!canary")

    le = s.leader_election
    if le.enabled:
        from exporter.leader import check_settings as check_leader_election
        check_leader_election(le)
        yield from _object_name("leader_election.lease_name", le.lease_name, "Lease")
        if le.namespace is not None:
            yield from _namespace("leader_election.namespace", le.namespace)


def _sink_problems(s: Settings, env: dict[str, str]) -> Iterator[tuple[str, str, str]]:
    kafka, otlp, es = s.sinks.kafka, s.sinks.otlp, s.sinks.elasticsearch
    if not (s.sinks.stdout.enabled or kafka.enabled or otlp.enabled or es.enabled or s.sinks.webhook):
        yield ("sinks", "no sink is enabled",
               "enable sinks.stdout, sinks.kafka, sinks.otlp, sinks.elasticsearch or a sinks.webhook")
    if es.enabled:
        from exporter.sinks.elasticsearch import check_settings as check_elasticsearch
        try:
            check_elasticsearch(es, env)
        except ConfigError as exc:
            yield exc.field, exc.problem, exc.fix
    if kafka.enabled:
        if not kafka.brokers.strip():
            yield ("sinks.kafka.brokers", "Kafka is enabled but no brokers are set",
                   "set sinks.kafka.brokers to host:port[,host:port]")
        for p in broker_problems(kafka.brokers):
            yield "sinks.kafka.brokers", p, "set sinks.kafka.brokers to host:port[,host:port]"
        for key, path in _flat(kafka.secrets_from_files).items():
            for p in secret_file_problems(path):
                yield (f"sinks.kafka.secrets_from_files.{key}", p,
                       "mount the Secret at that path (a volume) and check the file name")
        from exporter.sinks.kafka import check as check_kafka  # the sink's rules, then librdkafka's own parse
        for err in check_kafka(kafka, env):
            yield err.field, err.problem, err.fix
    if otlp.enabled:
        # the endpoint in effect: the setting, else the standard environment (docs/otlp.md)
        candidates = [("sinks.otlp.endpoint", otlp.endpoint)] + [(name, env.get(name)) for name in _OTLP_ENDPOINT_ENV]
        source, endpoint = next(((k, v) for k, v in candidates if v), ("", None))
        if endpoint:
            for p in url_port_problems(endpoint):
                yield source, p, "use http(s)://host:port with port 1-65535, e.g. http://collector:4317"
        for name, value in otlp.headers.items():
            if not _HEADER_NAME.fullmatch(name):
                yield (f"sinks.otlp.headers.{name}", "not a valid header name",
                       "letters, digits and - _ . only (gRPC metadata and HTTP headers alike)")
            elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in value) or not value.isascii():
                yield (f"sinks.otlp.headers.{name}", "the value holds control or non-ASCII characters",
                       "headers carry printable ASCII only (a newline in a YAML block scalar is the usual cause)")
        if otlp.retry_backoff_initial_seconds > otlp.retry_backoff_max_seconds:
            yield ("sinks.otlp.retry_backoff_initial_seconds", "more than retry_backoff_max_seconds",
                   "set retry_backoff_initial_seconds <= retry_backoff_max_seconds")
        from exporter.sinks.otlp import check_settings as check_otlp
        check_otlp(otlp)
    if s.sinks.webhook:
        from exporter.sinks.webhook import check as check_webhook  # URL, secret, template, filter, group_by
        for err in check_webhook(s.sinks.webhook, env):
            yield err.field, err.problem, err.fix
        from exporter.transforms.filters import FilterError, parse_field_selector
        for i, hook in enumerate(s.sinks.webhook):
            try:
                parse_field_selector(hook.filter)
            except FilterError as exc:
                yield f"sinks.webhook.{i}.filter", str(exc), "use kubectl syntax: type!=Normal,reason=BackOff"


def _object_name(field: str, name: str, kind: str) -> Iterator[tuple[str, str, str]]:
    for p in selectors.object_name_problems(name, kind):
        yield field, p, f"name the {kind} as the Role's resourceNames do (deploy/kustomize/base/rbac.yaml)"


def _namespace(field: str, name: str) -> Iterator[tuple[str, str, str]]:
    for p in selectors.namespace_problems(name):
        yield field, p, "a namespace name, or null for the exporter's own namespace"


def _host_ok(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host)) and not host.replace(".", "").isdigit()


def listen_problems(listen: str) -> list[str]:
    """server.listen: '' (disabled), or [host]:port with an IPv4 address or host name and port 0-65535."""
    if listen == "":
        return []
    host, sep, port = listen.rpartition(":")
    if not sep:
        return [f"{listen!r} has no port"]
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        return [f"port {port!r} of {listen!r} is not a number from 0 to 65535"]
    if host.startswith("[") or ":" in host:
        return [f"{listen!r}: the metrics server listens on IPv4 only"]
    if host and not _host_ok(host):
        return [f"{host!r} is neither an IPv4 address nor a host name"]
    return []


def broker_problems(brokers: str) -> list[str]:
    """sinks.kafka.brokers: comma-separated [proto://]host[:port] (librdkafka's bootstrap.servers)."""
    out = []
    for entry in (b.strip() for b in brokers.split(",")):
        if not entry:
            if brokers.strip():
                out.append(f"an empty entry in {brokers!r}")
            continue
        hostport = entry.split("://", 1)[-1]
        host, sep, port = hostport.rpartition(":")
        if not sep:
            host, port = hostport, "9092"
        host = host.strip("[]")
        if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
            out.append(f"{entry!r}: port {port!r} is not a number from 1 to 65535")
        elif not host or not (_host_ok(host) or _is_ipv6(host)):
            out.append(f"{entry!r}: {host!r} is not a host name or address")
    return out


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
        return True
    except ValueError:
        return False


def url_port_problems(url: str) -> list[str]:
    """A URL (or gRPC host:port) whose port is outside 1-65535, or that has no host."""
    try:
        parts = urlsplit(url if "://" in url else f"//{url}")
        port = parts.port
    except ValueError:
        return [f"{redact.mask_url(url)!r} is not a URL, or its port is not a number from 1 to 65535"]
    if port == 0:
        return [f"{redact.mask_url(url)!r}: port 0"]
    if not parts.hostname:
        return [f"{redact.mask_url(url)!r} has no host"]
    return []


def secret_file_problems(path: str) -> list[str]:
    """A secret file must be a readable regular file of at most MAX_SECRET_FILE_BYTES."""
    import stat
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        return [f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}"]
    if not stat.S_ISREG(st.st_mode):
        return [f"{path} is not a regular file"]
    if st.st_size > MAX_SECRET_FILE_BYTES:
        return [f"{path} is {st.st_size} bytes, more than a secret ({MAX_SECRET_FILE_BYTES})"]
    return []


def register_secrets(s: Settings, env: dict[str, str]) -> None:
    """Tell exporter/redact.py every secret value these settings hold, so no text ever prints them."""
    otlp = s.sinks.otlp
    for value in otlp.headers.values():
        redact.register_secret(value)
    for name in _OTLP_HEADER_ENV:
        for item in (env.get(name) or "").split(","):
            redact.register_secret(unquote(item.partition("=")[2]).strip())
    for url in (otlp.endpoint, *(env.get(name) for name in _OTLP_ENDPOINT_ENV)):
        if url and "@" in url:
            userinfo = urlsplit(url if "://" in url else f"//{url}").netloc.rpartition("@")[0]
            redact.register_secret(userinfo)
            redact.register_secret(userinfo.partition(":")[2])
    es = s.sinks.elasticsearch
    if es.enabled:
        from exporter.sinks.elasticsearch.transport import resolve_secrets
        try:
            for value in resolve_secrets(es, env).values():
                redact.register_secret(value)
        except ConfigError:
            pass  # reported by _sink_problems
    if s.sinks.webhook:  # URLs carry tokens; signing secrets
        from exporter.sinks.webhook import secret_values
        for value in secret_values(s.sinks.webhook, env):
            redact.register_secret(value)
    kafka = s.sinks.kafka
    for key, value in _flat(kafka.config).items():
        if redact.is_secret_key(key):
            redact.register_secret(str(value))
    for var in _flat(kafka.secrets_from_env).values():
        if isinstance(var, str) and var in env:
            redact.register_secret(env[var])
    for path in _flat(kafka.secrets_from_files).values():
        if isinstance(path, str) and not secret_file_problems(path):
            try:
                with open(path, encoding="utf-8") as f:
                    redact.register_secret(f.read(MAX_SECRET_FILE_BYTES).rstrip("\r\n"))
            except (OSError, ValueError):
                pass  # named by the checks that follow


def _flat(conf: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in conf.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
