"""The Kafka sink, split at its seams (docs/kafka.md is the user's view):

    client.py   the librdkafka boundary: the only confluent_kafka import; validate() without connecting
    config.py   settings -> librdkafka configuration, secrets and redaction; check() for --check-config
    encode.py   topic (fixed or template), key and headers of a record
    errors.py   librdkafka errors -> transient, or a condition naming the setting and the fix
    sink.py     KafkaSink on the shared delivery machinery (exporter/sinks/delivery.py)
"""
from __future__ import annotations

from exporter.redact import is_secret_key
from exporter.sinks.base import SinkInterrupted
from exporter.sinks.kafka.config import Redactor, check, check_settings, flat, producer_config
from exporter.sinks.kafka.encode import MISSING, TEMPLATE_FIELDS, TopicTemplate, build_headers, message_key
from exporter.sinks.kafka.errors import classify
from exporter.sinks.kafka.sink import KafkaSink

__all__ = ["KafkaSink", "TopicTemplate", "check", "check_settings", "producer_config", "message_key",
           "build_headers", "Redactor", "classify", "flat", "is_secret_key", "MISSING", "TEMPLATE_FIELDS",
           "SinkInterrupted"]
