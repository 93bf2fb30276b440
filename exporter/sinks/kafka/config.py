"""sinks.kafka settings -> the librdkafka configuration; secrets; the checks behind --check-config.

Secrets come from ``secrets_from_env`` / ``secrets_from_files`` (or, warned about,
inline in ``config``); :class:`Redactor` replaces their values by *** in every text
this sink logs. :func:`check` is the one validation entry, pure, used by
--check-config and at start.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from exporter import log
from exporter.errors import ConfigError
from exporter.redact import MASK, is_secret_key
from exporter.settings import KafkaSettings
from exporter.sinks.kafka.client import check_kafka_config
from exporter.sinks.kafka.encode import TopicTemplate, message_key

#: A property named in a librdkafka error: ``No such configuration property: "sasl.pasword"``.
_PROPERTY = re.compile(r'property:? "?([A-Za-z0-9_.]+)"?')

#: librdkafka keys owned by a first-class setting: set those instead.
OWNED_KEYS = {
    "bootstrap.servers": "sinks.kafka.brokers", "metadata.broker.list": "sinks.kafka.brokers",
    "acks": "sinks.kafka.acks", "request.required.acks": "sinks.kafka.acks",
    "compression.type": "sinks.kafka.compression", "compression.codec": "sinks.kafka.compression",
    "linger.ms": "sinks.kafka.linger_ms", "queue.buffering.max.ms": "sinks.kafka.linger_ms",
    "batch.size": "sinks.kafka.batch_bytes",
    "message.timeout.ms": "sinks.kafka.delivery_timeout_ms", "delivery.timeout.ms": "sinks.kafka.delivery_timeout_ms",
    "on_delivery": None, "delivery.report.only.error": None, "error_cb": None, "logger": None,
    "transactional.id": None, "dr_cb": None, "dr_msg_cb": None,
}


class Redactor:
    """Replaces every secret value in a text with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # longest first, so a secret containing another is replaced whole; tiny values would mangle text
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: Any) -> str:
        out = str(text)
        for s in self.secrets:
            if s in out:
                out = out.replace(s, MASK)
        return out

    def config(self, conf: dict[str, Any]) -> dict[str, Any]:
        """A copy of a librdkafka config fit for a log line."""
        return {k: (MASK if is_secret_key(k) or str(v) in self.secrets else v)
                for k, v in conf.items() if not callable(v) and not isinstance(v, logging.Logger)}


def _secrets(cfg: KafkaSettings, env: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka key -> value, from secrets_from_env and secrets_from_files (ConfigError naming the setting)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    out: dict[str, str] = {}
    for key, var in flat(cfg.secrets_from_env).items():
        if var not in environ:
            raise ConfigError(f"sinks.kafka.secrets_from_env.{key}", f"environment variable {var} is not set",
                              f"set {var} (e.g. from a Secret with env.valueFrom.secretKeyRef)")
        out[key] = environ[var]
    for key, path in flat(cfg.secrets_from_files).items():
        try:
            with open(path, encoding="utf-8") as f:
                out[key] = f.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"sinks.kafka.secrets_from_files.{key}", f"cannot read {path}: {exc.strerror}",
                              "mount the Secret at that path (a volume) and check the file name") from exc
    return out


def _acks(value: Any) -> str:
    v = str(value).strip().lower()
    return "all" if v in ("all", "-1") else v


def flat(conf: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"sasl": {"mechanism": "X"}} -> {"sasl.mechanism": "X"}: ``--set sinks.kafka.config.sasl.mechanism=X``
    and ``KEE__SINKS__KAFKA__CONFIG__...`` split dotted librdkafka names into levels; join them back."""
    out: dict[str, Any] = {}
    for k, v in conf.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, name + "."))
        else:
            out[name] = v
    return out


def check_settings(cfg: KafkaSettings, env: dict[str, str] | None = None, *, warn: bool = True) -> None:
    """Cross-field rules for sinks.kafka, run when settings load (settings.check)."""
    TopicTemplate(cfg.topic)
    message_key(cfg.key)
    if _acks(cfg.acks) not in ("all", "1", "0"):
        raise ConfigError("sinks.kafka.acks", f"unknown acks {cfg.acks!r}", "use all, 1 or 0")
    config, from_env, from_files = flat(cfg.config), flat(cfg.secrets_from_env), flat(cfg.secrets_from_files)
    for key in list(config) + list(from_env) + list(from_files):
        if key in OWNED_KEYS:
            owner = OWNED_KEYS[key]
            raise ConfigError(f"sinks.kafka.config.{key}", "this librdkafka setting is managed by the sink",
                              f"set {owner} instead" if owner else "remove it")
    both = set(from_env) & set(from_files)
    if both:
        k = sorted(both)[0]
        raise ConfigError(f"sinks.kafka.secrets_from_files.{k}", "also set in secrets_from_env",
                          "take each secret from one place")
    for k, v in config.items():
        if warn and is_secret_key(k) and v not in (None, ""):
            log.warning("kafka_secret_in_config", setting=f"sinks.kafka.config.{k}",
                        fix="move it to sinks.kafka.secrets_from_env or secrets_from_files; "
                            "values in the config file are readable by anyone who can read the file")
    if cfg.max_in_flight_records < 1 or cfg.max_in_flight_bytes < 1:
        raise ConfigError("sinks.kafka.max_in_flight_records", "the in-flight bounds must be positive",
                          "set max_in_flight_records and max_in_flight_bytes >= 1")
    if cfg.retry_backoff_max_ms < cfg.retry_backoff_initial_ms:
        raise ConfigError("sinks.kafka.retry_backoff_max_ms", "smaller than retry_backoff_initial_ms",
                          "set retry_backoff_max_ms >= retry_backoff_initial_ms")
    _secrets(cfg, env)


def check(cfg: KafkaSettings, env: dict[str, str] | None = None) -> list[ConfigError]:
    """Every problem of sinks.kafka, for --check-config and the start: [] when it is valid. Pure: logs nothing,
    connects nowhere.

    The sink's own rules first (topic template, key, acks, managed keys, secrets, bounds); then librdkafka
    itself parses the whole producer configuration, without connecting (client.validate): an unknown
    property (``sasl.pasword``), a bad value, a SASL mechanism or a TLS file it cannot use is reported with
    the property named. ``str(error)`` is the message to print.
    """
    try:
        check_settings(cfg, env, warn=False)
    except ConfigError as exc:
        return [exc]
    conf, redact = producer_config(cfg, env)
    out = []
    for problem in check_kafka_config(conf):
        key, sep, _ = problem.partition(": ")
        if not (sep and key in conf and " " not in key):
            m = _PROPERTY.search(problem)
            key = m.group(1) if m else ""
        field = f"sinks.kafka.config.{key}" if key else "sinks.kafka.config"
        out.append(ConfigError(field, f"librdkafka refused the configuration: {redact(problem)}",
                               "correct the property name or value (librdkafka's CONFIGURATION.md lists them)"))
    return out


def producer_config(cfg: KafkaSettings, env: dict[str, str] | None = None) -> tuple[dict[str, Any], Redactor]:
    """The librdkafka configuration (without callbacks), and the redactor for its secrets."""
    acks = _acks(cfg.acks)
    conf: dict[str, Any] = {
        "bootstrap.servers": cfg.brokers,
        "client.id": "kube-event-exporter",
        "acks": acks,
        # Idempotence (no duplicates nor reordering from librdkafka's own retries)
        # needs acks=all; with acks 1/0 librdkafka refuses it.
        "enable.idempotence": acks == "all",
        "compression.type": cfg.compression,
        "linger.ms": cfg.linger_ms,
        "batch.size": cfg.batch_bytes,
        "message.timeout.ms": cfg.delivery_timeout_ms,
        # librdkafka's local queue is above our own bounds: BufferError stays the exception
        "queue.buffering.max.messages": min(cfg.max_in_flight_records + 1000, 2_147_483_647),
        "queue.buffering.max.kbytes": min(max(2 * cfg.max_in_flight_bytes // 1024, 16384), 2_147_483_647),
    }
    conf.update(flat(cfg.config))
    secrets = _secrets(cfg, env)
    conf.update(secrets)
    values = list(secrets.values()) + [str(v) for k, v in conf.items() if is_secret_key(k) and v not in (None, "")]
    return conf, Redactor(values)
