"""librdkafka checks its own configuration, without connecting to anything.

Constructing a ``confluent_kafka.Producer`` sets every property through
``rd_kafka_conf_set`` and creates the client synchronously: an unknown key
(``sasl.pasword``), a value out of range or of the wrong kind, a conflict
(``enable.idempotence`` with ``acks=1``) or an unreadable ``ssl.ca.location``
raises ``KafkaException`` at once. It connects only to ``bootstrap.servers``
(measured: with them, a listening socket is connected within milliseconds), so
the check leaves them out; the broker list is checked by exporter/config.py.

Kept apart from the sink so ``--check-config`` can run it without building one.
(The lead moves it into the kafka sink package at merge.)
"""
from __future__ import annotations

import logging
import re
from typing import Any

#: properties left out of the check: connecting is not checking
_NOT_CHECKED = ("bootstrap.servers", "metadata.broker.list")
_NAMED = re.compile(r'configuration property "([^"]+)"|No such configuration property: "([^"]+)"')
_CREATE_FAILED = "Failed to create producer"
_quiet = logging.getLogger("kube-event-exporter.kafka-check")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False


def _create(conf: dict[str, Any]) -> str | None:
    """None when librdkafka accepts `conf`, else its message."""
    from confluent_kafka import KafkaException, Producer

    try:
        producer = Producer({**conf, "logger": _quiet})
    except KafkaException as exc:
        return str(exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else exc)
    except (TypeError, ValueError) as exc:  # a value the Python binding cannot pass on
        return str(exc)
    del producer
    return None


def check_kafka_config(conf: dict[str, Any]) -> list[str]:
    """Every problem librdkafka finds in a producer configuration (flat keys), one message each.

    Each property is first set alone, so a message names the key as written (librdkafka
    names aliases by their canonical name: linger.ms is "queue.buffering.max.ms"); then
    the whole configuration is created, for conflicts between properties.
    """
    conf = {k: v for k, v in conf.items() if k not in _NOT_CHECKED}
    problems = []
    for key, value in conf.items():
        why = _create({key: value})
        # "Failed to create producer" is about the combination (a SASL protocol alone needs
        # a mechanism): only the whole configuration below can say
        if why is not None and not why.startswith(_CREATE_FAILED):
            problems.append(f"{key}: {why}")
    if not problems:
        why = _create(conf)
        if why is not None:
            m = _NAMED.search(why)
            named = next((g for g in m.groups() if g), None) if m else None
            problems.append(f"{named}: {why}" if named else why)
    return problems
