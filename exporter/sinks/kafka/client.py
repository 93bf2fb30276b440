"""The librdkafka boundary: the only module that imports confluent_kafka.

What the rest of the Kafka sink needs from it: a producer (with our error callback
and log bridge), the error type and its codes, and :func:`validate`, which lets
librdkafka itself parse a configuration without connecting anywhere (no
``bootstrap.servers``: librdkafka then opens no connection; measured: no connect()
and ~7 ms to build and destroy the handle), for --check-config.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from exporter import log

__all__ = ["KafkaError", "KafkaException", "Producer", "LogBridge", "error_of", "validate"]

#: Seconds between two logs of the same librdkafka log line.
LIBRDKAFKA_LOG_INTERVAL = 30.0


def error_of(exc: BaseException) -> KafkaError | None:
    """The KafkaError a KafkaException carries, if any."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def validate(conf: dict[str, Any]) -> str | None:
    """librdkafka's own verdict on a producer configuration, without connecting: None, or its message.

    Unknown properties (``sasl.pasword``), bad values, a SASL mechanism or TLS files
    librdkafka cannot use are all refused by librdkafka when the handle is created.
    """
    conf = {k: v for k, v in conf.items() if k not in ("bootstrap.servers", "metadata.broker.list")}
    conf["logger"] = logging.getLogger("kube-event-exporter.librdkafka.check")  # nothing on stderr
    try:
        p = Producer(conf)
    except (KafkaException, ValueError, TypeError) as exc:
        err = error_of(exc)
        return err.str() if err is not None else str(exc)
    del p  # rd_kafka_destroy: no broker was ever contacted
    return None


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
