"""librdkafka errors -> the delivery policy's two kinds: transient (retried quietly) or a condition a person must fix.

Every condition names the setting to check and a fix that can work (docs/kafka.md,
"Failures"); the sink holds and retries the records meanwhile (exporter/sinks/delivery.py).
"""
from __future__ import annotations

from exporter.sinks.base import Condition
from exporter.sinks.kafka.client import KafkaError

_UNKNOWN_TOPIC = Condition("unknown_topic", "sinks.kafka.topic",
                           "the topic does not exist and the broker does not create topics: create it "
                           "(kafka-topics.sh --create) or correct sinks.kafka.topic")
_AUTHN = Condition("authentication", "sinks.kafka.config sasl.mechanism/sasl.username and the sasl.password secret "
                   "(sinks.kafka.secrets_from_env / secrets_from_files)",
                   "correct the credentials or the SASL mechanism; records are held until they work")
_INVALID_RECORD = Condition("invalid_record", "sinks.kafka.key",
                            "the broker refused the record; a compacted topic (cleanup.policy=compact) refuses "
                            "records without a key: set sinks.kafka.key to event_uid or object_uid, or use "
                            "cleanup.policy=delete")
#: A record over the broker's (topic max.message.bytes) or the producer's (message.max.bytes) limit.
#: Retrying cannot shrink it; what helps: a larger topic limit (delivery then resumes by itself), or a
#: smaller record bound and a restart (the held record is not acknowledged, so it is read again from
#: the checkpoint, bounded).
TOO_LARGE = Condition(
    "message_too_large", "records.max_record_bytes (and the topic's max.message.bytes)",
    "raise the topic's max.message.bytes (and sinks.kafka.config.message.max.bytes) above the record size, or "
    "lower records.max_record_bytes below them and restart; the record is held, not dropped, until then")
CONDITIONS: dict[int, Condition] = {
    KafkaError.UNKNOWN_TOPIC_OR_PART: _UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_TOPIC: _UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION: _UNKNOWN_TOPIC,
    KafkaError.TOPIC_EXCEPTION: Condition("invalid_topic", "sinks.kafka.topic", "use a valid topic name"),
    KafkaError.TOPIC_AUTHORIZATION_FAILED: Condition(
        "topic_authorization", "sinks.kafka.topic (broker ACLs)",
        "grant WRITE and DESCRIBE on the topic to the exporter's principal"),
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: Condition(
        "cluster_authorization", "sinks.kafka.config enable.idempotence (broker ACLs)",
        "grant IDEMPOTENT_WRITE on the cluster, or set sinks.kafka.config.enable.idempotence=false"),
    KafkaError._AUTHENTICATION: _AUTHN,
    KafkaError.SASL_AUTHENTICATION_FAILED: _AUTHN,
    KafkaError.UNSUPPORTED_SASL_MECHANISM: _AUTHN,
    KafkaError.ILLEGAL_SASL_STATE: _AUTHN,
    KafkaError._SSL: Condition("tls", "sinks.kafka.config ssl.* (ssl.ca.location, certificates)",
                               "check the CA, client certificate and key, and security.protocol"),
    KafkaError.INVALID_RECORD: _INVALID_RECORD,
    KafkaError.INVALID_MSG: _INVALID_RECORD,  # 2, CORRUPT_MESSAGE: older brokers, same refusal
    KafkaError.MSG_SIZE_TOO_LARGE: TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE: TOO_LARGE,
}
#: Every condition kind (a kee_sink_condition gauge each, 0 when absent).
CONDITION_KINDS = sorted({c.kind for c in CONDITIONS.values()})


def classify(err: KafkaError | None) -> Condition | None:
    """The condition an error means, or None for a transient one (retried quietly)."""
    if err is None:
        return None
    return CONDITIONS.get(err.code())


def err_kind(err: KafkaError) -> str:
    """The kee_errors kind label of an error."""
    cond = classify(err)
    if cond is not None:
        return cond.kind
    name = err.name().lstrip("_").lower() if hasattr(err, "name") else str(err.code())
    return name or "unknown"
