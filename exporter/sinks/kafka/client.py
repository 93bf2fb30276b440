"""The librdkafka boundary: the only module that imports confluent_kafka.

What the rest of the Kafka sink needs from it: a producer (with our error callback
and log bridge), the error type and its codes, and :func:`check_kafka_config`, which
lets librdkafka itself parse a configuration without connecting anywhere (no
``bootstrap.servers``: librdkafka then opens no connection; measured: no connect()
and ~7 ms to build and destroy a handle), for --check-config.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from exporter import log

__all__ = ["KafkaError", "KafkaException", "Producer", "LogBridge", "error_of", "check_kafka_config"]

#: Seconds between two logs of the same librdkafka log line.
LIBRDKAFKA_LOG_INTERVAL = 30.0


def error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


#: Properties left out of the check: with them librdkafka connects (measured: within milliseconds).
_NOT_CHECKED = ("bootstrap.servers", "metadata.broker.list")
#: librdkafka's message when the combination, not one property, is refused (a SASL protocol without a mechanism).
_CREATE_FAILED = "Failed to create producer"
_QUIET = logging.getLogger("kube-event-exporter.librdkafka.check")  # librdkafka's lines during a check: nowhere
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def _create(conf: dict[str, Any]) -> str | None:
    """None when librdkafka accepts ``conf`` (without bootstrap servers it connects nowhere), else its message."""
    try:
        p = Producer({**conf, "logger": _QUIET})
    except (KafkaException, ValueError, TypeError) as exc:
        err = error_of(exc)
        return err.str() if err is not None else str(exc)
    del p  # rd_kafka_destroy: no broker was ever contacted
    return None


def check_kafka_config(conf: dict[str, Any]) -> list[str]:
    """Every problem librdkafka itself finds in a producer configuration (flat keys), without connecting.

    Each property is first set alone, so a message names the key as written (librdkafka names
    aliases by their canonical name: linger.ms is "queue.buffering.max.ms"): ``"<key>: <why>"``;
    then the whole configuration is created, for conflicts between properties (a SASL or TLS
    setting librdkafka cannot use, ``enable.idempotence`` with ``acks=1``...).
    """
    conf = {k: v for k, v in conf.items() if k not in _NOT_CHECKED and not callable(v)}
    problems = []
    for key, value in conf.items():
        why = _create({key: value})
        if why is not None and not why.startswith(_CREATE_FAILED):
            problems.append(f"{key}: {why}")
    if not problems:
        why = _create(conf)
        if why is not None:
            problems.append(why)
    return problems


class LogBridge(logging.Logger):
    """librdkafka's log lines -> exporter.log, redacted, each distinct line at most once per LIBRDKAFKA_LOG_INTERVAL
    (a failing broker connection repeats the same line several times a second)."""

    _DIGITS = re.compile(r"\d+")

    def __init__(self, redact: Callable[[Any], str]) -> None:
        super().__init__("kube-event-exporter.librdkafka", logging.DEBUG)
        self._redact = redact
        self._seen: dict[str, list[float]] = {}  # shape of the line -> [last logged at, repeats since]

    def log(self, level: int, msg: object, *args: Any, **kw: Any) -> None:
        # confluent_kafka calls logger.log(level, fmt, *args)
        try:
            text = str(msg) % args if args else str(msg)
        except Exception:  # noqa: BLE001 - a malformed line is still worth seeing
            text = f"{msg} {args}"
        text = self._redact(text)
        shape = self._DIGITS.sub("#", text)[:200]
        now = time.monotonic()
        seen = self._seen.get(shape)
        if seen is not None and now - seen[0] < LIBRDKAFKA_LOG_INTERVAL:
            seen[1] += 1
            return
        repeated = int(seen[1]) if seen is not None else 0
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[shape] = [now, 0]
        fn = log.error if level >= logging.ERROR else log.warning if level >= logging.WARNING else \
            log.info if level >= logging.INFO else log.debug
        fn("librdkafka", message=text, **({"repeated_since_last": repeated} if repeated else {}))
