"""Kafka sink: every record delivered and confirmed before the checkpoint moves.

The only module that imports confluent_kafka (librdkafka). docs/kafka.md is the
user-facing description; this docstring is the design.

    send(seq, line, record)
      | wait while in flight >= max_in_flight_records / _bytes   (backpressure)
      | OrderedAcks.expect(seq); remember the message in _pending
      v
    Producer.produce(topic, value, key, headers, on_delivery)   (BufferError: poll, retry)
      .
      .  Producer.poll() -> delivery report: on the sending thread every POLL_EVERY sends and while
      .  it waits for room; on the poller thread when the sending thread is idle (a quiet watch)
      v
    delivered -> OrderedAcks.done(seq)          -> acked() watermark moves
    failed    -> classify: transient | fatal condition (logged loudly, metric)
              -> re-produce after backoff (never dropped, never acknowledged)

Acknowledgement. A record counts only when its delivery report says delivered
(acks=all by default, idempotent producer). The watermark (acked()) is the seq
just below the oldest record not yet delivered, so the checkpoint never passes
an undelivered record, whatever happens to the later ones.

Failures. librdkafka retries on its own (idempotently, in order) for up to
delivery_timeout_ms; after that, or for an error it does not retry, the delivery
report carries the error. The sink then re-produces the record after an
exponential backoff (retry_backoff_initial_ms .. retry_backoff_max_ms). Errors a
person must fix (authentication, authorisation, unknown topic, TLS, too large)
are *fatal conditions*: they are logged at error level naming the setting to
fix (at once, then every FATAL_LOG_INTERVAL seconds while they last), counted in
kee_errors{component="kafka",kind=...} and shown by kee_kafka_fatal{condition=...}
= 1; the records stay held and retried, the checkpoint stays where it is, and
backpressure stalls the watch once the in-flight bounds are reached. The
process does not exit: an exit would restart from the same checkpoint into the
same error (a crash loop) and gain nothing; retrying in place with backoff loses
nothing, and resumes by itself once the broker, ACL or topic is fixed. A
producer-level fatal error (idempotence broken: err.fatal()) replaces the
producer and re-produces everything still pending.

Memory. What is held is bounded by max_in_flight_records and max_in_flight_bytes
(record values kept for re-production, plus librdkafka's own copy); send()
blocks while either bound is reached.

Secrets. librdkafka settings come from ``config`` plus ``secrets_from_env`` /
``secrets_from_files``; secret values (any key naming a password, secret, private
key or JAAS/OAuth config, and every value taken from env or files) are replaced
by *** in every log line and error this module writes, librdkafka's own log
lines included.
"""
from __future__ import annotations

import heapq
import logging
import os
import random
import re
import string
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from confluent_kafka import KafkaError, KafkaException, Producer

from exporter import log
from exporter.errors import ConfigError, ExporterError, SinkFatal
from exporter.metrics import Stats
from exporter.redact import MASK, is_secret_key
from exporter.settings import KafkaSettings
from exporter.sinks.base import OrderedAcks

__all__ = ["KafkaSink", "TopicTemplate", "check_settings", "producer_config", "message_key", "build_headers",
           "Redactor", "classify", "SinkInterrupted"]

#: Seconds between two loud logs of the same fatal condition.
FATAL_LOG_INTERVAL = 30.0
#: Seconds between two logs of the same transient client error (broker down...).
TRANSIENT_LOG_INTERVAL = 10.0
#: Seconds between two logs of the same librdkafka log line.
LIBRDKAFKA_LOG_INTERVAL = 30.0
#: A fatal condition is cleared once records are delivered and it has not recurred for this many seconds.
CLEAR_AFTER = 5.0
#: Seconds a blocked send() polls the producer before re-checking (interrupt, close).
_WAIT_SLICE = 0.1
#: The sending thread polls the producer every this many sends...
POLL_EVERY = 64
#: ... and while it did so within this many seconds, the poller thread leaves the reports to it.
MAIN_POLL_GRACE = 0.05

# --- topic templates ------------------------------------------------------------

#: Record fields a topic template may use: low-cardinality ones only (a topic per
#: object name or uid would create topics without bound).
TEMPLATE_FIELDS = ("type", "severity", "reason", "cluster", "action", "source_component",
                   "reporting_controller", "event.namespace", "event.api_version",
                   "object.kind", "object.namespace", "object.api_version")
_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_TOPIC_MAX = 249
#: What a null or empty field renders as: "_" is never a Kubernetes name or type.
MISSING = "_"


class TopicTemplate:
    """A fixed topic, or a template such as ``events.{event.namespace}`` / ``k8s.{type}``.

    Validated when built (ConfigError naming sinks.kafka.topic); rendering a
    record replaces characters Kafka does not allow in topic names with "_" and a
    null or empty field with "_".
    """

    __slots__ = ("source", "fixed", "_parts", "_cache")

    def __init__(self, template: str) -> None:
        self.source = template
        parts: list[tuple[str, tuple[str, ...] | None]] = []
        try:
            parsed = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ConfigError("sinks.kafka.topic", f"bad topic template {template!r}: {exc}",
                              "use {field} placeholders, e.g. events.{event.namespace}") from exc
        for literal, name, spec, conv in parsed:
            if literal:
                if _TOPIC_CHARS.search(literal):
                    raise ConfigError("sinks.kafka.topic", f"{literal!r} has characters Kafka does not allow in a "
                                      "topic name", "use only letters, digits, '.', '_' and '-'")
                parts.append((literal, None))
            if name is None:
                continue
            if spec or conv:
                raise ConfigError("sinks.kafka.topic", f"placeholder {{{name}}} has a format spec or conversion",
                                  "write plain {field} placeholders")
            if name not in TEMPLATE_FIELDS:
                raise ConfigError("sinks.kafka.topic", f"unknown or unbounded record field {{{name}}} in the "
                                  "topic template", "use one of: " + ", ".join(TEMPLATE_FIELDS))
            parts.append(("", tuple(name.split("."))))
        if not parts:
            raise ConfigError("sinks.kafka.topic", "the topic is empty", "set a topic name, e.g. kube-events")
        self.fixed: str | None = None
        if all(path is None for _, path in parts):
            self.fixed = "".join(lit for lit, _ in parts)
            if len(self.fixed) > _TOPIC_MAX or self.fixed in (".", ".."):
                raise ConfigError("sinks.kafka.topic", f"{self.fixed!r} is not a valid topic name",
                                  f"at most {_TOPIC_MAX} characters, not '.' or '..'")
        self._parts = parts
        self._cache: dict[tuple, str] = {}

    @property
    def fields(self) -> list[str]:
        return [".".join(p) for _, p in self._parts if p is not None]

    def render(self, record: dict[str, Any]) -> str:
        if self.fixed is not None:
            return self.fixed
        values = []
        for _, path in self._parts:
            if path is None:
                continue
            v: Any = record
            for k in path:
                v = v.get(k) if type(v) is dict else None
            values.append(v)
        key = tuple(values)
        topic = self._cache.get(key)
        if topic is None:
            out, it = [], iter(values)
            for literal, path in self._parts:
                if path is None:
                    out.append(literal)
                else:
                    v = next(it)
                    out.append(_TOPIC_CHARS.sub("_", str(v)) if v not in (None, "") else MISSING)
            topic = "".join(out)[:_TOPIC_MAX]
            if topic in (".", ".."):
                topic = MISSING
            if len(self._cache) > 4096:  # bounded: values are low-cardinality, but never trust that
                self._cache.clear()
            self._cache[key] = topic
        return topic


# --- keys and headers --------------------------------------------------------------

KEYS = ("event_uid", "object_uid", "none")


def message_key(mode: str) -> Callable[[dict[str, Any]], bytes | None]:
    """The key function for sinks.kafka.key; a missing uid gives a null key."""
    if mode == "event_uid":
        def key(record: dict[str, Any]) -> bytes | None:
            uid = (record.get("event") or {}).get("uid")
            return uid.encode() if uid else None
    elif mode == "object_uid":
        def key(record: dict[str, Any]) -> bytes | None:
            uid = (record.get("object") or {}).get("uid")
            return uid.encode() if uid else None
    elif mode == "none":
        def key(record: dict[str, Any]) -> bytes | None:
            return None
    else:
        raise ConfigError("sinks.kafka.key", f"unknown key {mode!r}", "use event_uid, object_uid or none")
    return key


def build_headers(record: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Headers type, reason, namespace (the Event's), cluster; a null field has no header."""
    out = []
    v = record.get("type")
    if v is not None:
        out.append(("type", str(v).encode()))
    v = record.get("reason")
    if v is not None:
        out.append(("reason", str(v).encode()))
    v = (record.get("event") or {}).get("namespace")
    if v is not None:
        out.append(("namespace", str(v).encode()))
    v = record.get("cluster")
    if v is not None:
        out.append(("cluster", str(v).encode()))
    return out


# --- settings, secrets, redaction ----------------------------------------------------

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

    def __init__(self, secrets: list[str] = ()) -> None:  # type: ignore[assignment]
        # longest first, so a secret containing another is replaced whole; tiny values would mangle text
        self.secrets = sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True)

    def __call__(self, text: Any) -> str:
        text = str(text)
        for s in self.secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def config(self, conf: dict[str, Any]) -> dict[str, Any]:
        """A copy of a librdkafka config fit for a log line."""
        return {k: (MASK if is_secret_key(k) or str(v) in self.secrets else v)
                for k, v in conf.items() if not callable(v) and not isinstance(v, logging.Logger)}


def _secrets(cfg: KafkaSettings, env: dict[str, str] | None = None) -> dict[str, str]:
    """librdkafka key -> value, from secrets_from_env and secrets_from_files (ConfigError naming the setting)."""
    env = os.environ if env is None else env
    out: dict[str, str] = {}
    for key, var in flat(cfg.secrets_from_env).items():
        if var not in env:
            raise ConfigError(f"sinks.kafka.secrets_from_env.{key}", f"environment variable {var} is not set",
                              f"set {var} (e.g. from a Secret with env.valueFrom.secretKeyRef)")
        out[key] = env[var]
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


# --- errors --------------------------------------------------------------------------

@dataclass(frozen=True)
class Condition:
    """A fatal condition: what it is, which setting to check, how to fix it."""
    kind: str
    setting: str
    fix: str


_UNKNOWN_TOPIC = Condition("unknown_topic", "sinks.kafka.topic",
                           "the topic does not exist and the broker does not create topics: create it "
                           "(kafka-topics.sh --create) or correct sinks.kafka.topic")
_AUTHN = Condition("authentication", "sinks.kafka.config sasl.mechanism/sasl.username and the sasl.password secret "
                   "(sinks.kafka.secrets_from_env / secrets_from_files)",
                   "correct the credentials or the SASL mechanism; records are held until they work")
_INVALID_RECORD = Condition("invalid_record", "sinks.kafka.key",
                            "the broker refused the record; a compacted topic (cleanup.policy=compact) refuses records "
                            "without a key: set sinks.kafka.key to event_uid or object_uid, or use cleanup.policy=delete")
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
    KafkaError.MSG_SIZE_TOO_LARGE: Condition(
        "message_too_large", "records.max_message_bytes",
        "lower records.max_message_bytes, or raise the topic's max.message.bytes and "
        "sinks.kafka.config.message.max.bytes"),
}
FATAL_KINDS = sorted({c.kind for c in CONDITIONS.values()})


def classify(err: KafkaError | None) -> Condition | None:
    """The fatal condition an error means, or None for a transient one (retried quietly)."""
    if err is None:
        return None
    return CONDITIONS.get(err.code())


def _err_kind(err: KafkaError) -> str:
    cond = classify(err)
    if cond is not None:
        return cond.kind
    name = err.name().lstrip("_").lower() if hasattr(err, "name") else str(err.code())
    return name or "unknown"


class SinkInterrupted(ExporterError):
    """send() was waiting for room when the sink was interrupted or closed (shutdown)."""


# --- the sink ----------------------------------------------------------------------

class _Msg:
    """One record held until delivered: what is needed to produce it again.

    It is also its own delivery callback (no partial per record: fewer objects for the garbage collector).
    A report counts only if this very object is still the pending one for its seq: after a producer reset
    the pending record is a copy, and late reports about the original are ignored.
    """
    __slots__ = ("seq", "topic", "value", "key", "headers", "size", "t0", "attempts", "due", "report")

    def __init__(self, seq, topic, value, key, headers, size, t0, report):
        self.seq, self.topic, self.value, self.key, self.headers = seq, topic, value, key, headers
        self.size, self.t0, self.report = size, t0, report
        self.attempts = 0
        self.due = 0.0

    def __call__(self, err, _kmsg) -> None:  # confluent_kafka's on_delivery(err, msg)
        self.report(self, err)

    def copy(self) -> "_Msg":
        m = _Msg(self.seq, self.topic, self.value, self.key, self.headers, self.size, self.t0, self.report)
        m.attempts = self.attempts
        return m

    def __lt__(self, other: "_Msg") -> bool:  # heap order: due time, then seq
        return (self.due, self.seq) < (other.due, other.seq)


class _LogBridge(logging.Logger):
    """librdkafka's log lines -> exporter.log, redacted, each distinct line at most once per LIBRDKAFKA_LOG_INTERVAL
    (a failing broker connection repeats the same line several times a second)."""

    _DIGITS = re.compile(r"\d+")

    def __init__(self, redact: Redactor) -> None:
        super().__init__("kube-event-exporter.librdkafka", logging.DEBUG)
        self._redact = redact
        self._seen: dict[str, list] = {}  # shape of the line -> [last logged at, repeats since]

    def log(self, level, msg, *args, **kw):  # confluent_kafka calls logger.log(level, fmt, *args)
        try:
            text = msg % args if args else str(msg)
        except Exception:  # noqa: BLE001
            text = f"{msg} {args}"
        text = self._redact(text)
        shape = self._DIGITS.sub("#", text)[:200]
        now = time.monotonic()
        seen = self._seen.get(shape)
        if seen is not None and now - seen[0] < LIBRDKAFKA_LOG_INTERVAL:
            seen[1] += 1
            return
        repeated = seen[1] if seen is not None else 0
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[shape] = [now, 0]
        fn = log.error if level >= logging.ERROR else log.warning if level >= logging.WARNING else \
            log.info if level >= logging.INFO else log.debug
        fn("librdkafka", message=text, **({"repeated_since_last": repeated} if repeated else {}))


class KafkaSink:
    """See the module docstring."""

    name = "kafka"

    def __init__(self, cfg: KafkaSettings, *, cluster: str | None = None, stats: Stats | None = None,
                 producer_factory: Callable[[dict[str, Any]], Any] | None = None,
                 env: dict[str, str] | None = None) -> None:
        check_settings(cfg, env, warn=False)
        self.cfg = cfg
        self.cluster = cluster
        self.stats = stats if stats is not None else Stats()
        self.topic = TopicTemplate(cfg.topic)
        self._fixed_topic = self.topic.fixed
        self._key = message_key(cfg.key)
        self._headers = cfg.headers
        self._max_records = cfg.max_in_flight_records
        self._max_bytes = cfg.max_in_flight_bytes
        self._backoff0 = cfg.retry_backoff_initial_ms / 1000.0
        self._backoff_max = cfg.retry_backoff_max_ms / 1000.0
        self._conf, self.redact = producer_config(cfg, env)
        self._factory = producer_factory or Producer

        self._acks = OrderedAcks()
        self._lock = threading.Lock()                 # C-level lock on the hot path
        self._cond = threading.Condition(self._lock)  # only for send() waiting for room
        self._since_poll = 0                          # sends since the sending thread last polled
        self._main_polled = 0.0                       # when it last did (the poller thread then stays idle)
        self._header_cache: dict[tuple, list] = {}
        self._pending: dict[int, _Msg] = {}   # seq -> record not yet delivered (in librdkafka or waiting to retry)
        self._bytes = 0
        self._retry: list[_Msg] = []           # heap by due time: failed records waiting for their backoff
        self._reset_needed: str | None = None
        self._interrupted = False
        self._closing = False
        self.fatal = None  # the runner exits on a sink's .fatal; this sink never sets it (it retries in place)

        # metrics
        self.delivered = 0
        self.failed = 0
        self.retried = 0
        self.latency_sum = 0.0
        self.blocked_seconds = 0.0
        self._blocked_since: float | None = None
        self.producer_resets = 0
        self.condition: Condition | None = None
        self.condition_since: float | None = None
        self._condition_logged = 0.0
        self._condition_seen = 0.0
        self._last_delivered = 0.0
        self._transient_logged: dict[str, float] = {}

        log.info("kafka_sink_starting", brokers=cfg.brokers, topic=cfg.topic, key=cfg.key, acks=self._conf["acks"],
                 idempotence=self._conf.get("enable.idempotence"), compression=cfg.compression,
                 config=self.redact.config({k: v for k, v in self._conf.items() if k != "bootstrap.servers"}))
        self._producer = self._new_producer()
        self._stop = False
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poller", daemon=True)
        self._thread.start()

    # -- producer ---------------------------------------------------------------------

    def _new_producer(self):
        conf = dict(self._conf)
        conf["error_cb"] = self._on_error
        conf["logger"] = _LogBridge(self.redact)
        try:
            return self._factory(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError("sinks.kafka.config", f"librdkafka rejected the configuration: {self.redact(exc)}",
                              "check the librdkafka property names and values "
                              "(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)") from None

    # -- the hot path -----------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        # Only this (the pipeline's) thread adds to _pending; delivery reports only remove. So room seen
        # without the lock is still there when the record is added.
        size = len(line)
        pending = self._pending
        if len(pending) >= self._max_records or (pending and self._bytes + size > self._max_bytes):
            self._wait_room(size)
        msg = _Msg(seq, self._fixed_topic or self.topic.render(record), line[:-1], self._key(record),
                   self._headers_for(record) if self._headers else None, size, time.monotonic(), self._on_delivery)
        with self._lock:
            pending[seq] = msg
            self._bytes += size
        self._acks.expect(seq)
        self._produce(msg)
        # Serve delivery reports on this thread while it is busy sending: cheaper than handing the GIL
        # back and forth with the poller thread, which then stays idle (_poll_once).
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._main_polled = time.monotonic()
            self._producer.poll(0)

    def _headers_for(self, record: dict[str, Any]) -> list[tuple[str, bytes]]:
        """build_headers, cached: (type, reason, namespace, cluster) repeat across records."""
        ev = record.get("event")
        k = (record.get("type"), record.get("reason"), ev.get("namespace") if type(ev) is dict else None,
             record.get("cluster"))
        h = self._header_cache.get(k)
        if h is None:
            h = build_headers(record)
            if len(self._header_cache) > 4096:
                self._header_cache.clear()
            self._header_cache[k] = h
        return h

    def _wait_room(self, size: int) -> None:
        """Block until there is room (backpressure), serving delivery reports meanwhile. Lock not held."""
        self._blocked_since = t0 = time.monotonic()
        try:
            while len(self._pending) >= self._max_records or \
                    (self._pending and self._bytes + size > self._max_bytes):
                if self._interrupted:
                    raise SinkInterrupted("kafka sink interrupted while waiting for room (records in flight: "
                                          f"{len(self._pending)})")
                self._main_polled = time.monotonic()
                self._producer.poll(_WAIT_SLICE)
        finally:
            self._blocked_since = None
            self.blocked_seconds += time.monotonic() - t0

    def _produce(self, msg: _Msg) -> None:
        """Hand one record to librdkafka. Never called with the lock held (poll runs callbacks)."""
        while True:
            producer = self._producer
            try:
                producer.produce(msg.topic, msg.value, msg.key, headers=msg.headers,
                                 on_delivery=msg)
                return
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports, then try again
                producer.poll(0.05)
                if self._interrupted:  # shutting down: leave it to the retry queue (still pending, unacked)
                    self._schedule_retry(msg, None)
                    return
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                self._failed(msg, err, str(exc))
                return

    def flush(self) -> None:
        """Nothing to do: librdkafka sends after linger_ms; delivery reports come on the poller thread."""

    def acked(self) -> int:
        return self._acks.watermark()

    # -- delivery reports (poller thread) -----------------------------------------------

    def _on_delivery(self, msg: _Msg, err: KafkaError | None) -> None:
        try:
            self._delivery(msg, err)
        except Exception as exc:  # noqa: BLE001 - a lost report would stall the watermark for good
            self.stats.error("kafka", "delivery_callback")
            log.error("kafka_delivery_callback_failed", error=self.redact(exc)[:300], seq=msg.seq)
            if err is not None and self._pending.get(msg.seq) is msg:
                self._schedule_retry(msg, err)

    def _delivery(self, msg: _Msg, err: KafkaError | None) -> None:
        if self._pending.get(msg.seq) is not msg:
            return  # a report from a replaced producer about a record produced again since
        if err is None:
            now = time.monotonic()
            with self._lock:
                if self._pending.get(msg.seq) is not msg:
                    return
                del self._pending[msg.seq]
                self._bytes -= msg.size
                self.delivered += 1
                self.latency_sum += now - msg.t0
            self._acks.done(msg.seq)
            self._last_delivered = now
            return
        self._failed(msg, err, err.str())

    def _failed(self, msg: _Msg, err: KafkaError | None, text: str) -> None:
        self.failed += 1
        kind = _err_kind(err) if err is not None else "produce"
        self.stats.error("kafka", kind)
        if err is not None and err.fatal():
            self._reset_needed = text
        cond = classify(err)
        if cond is not None:
            self._set_condition(cond, text)
        else:
            self._log_transient("kafka_delivery_failed_retrying", kind, text)
        self._schedule_retry(msg, err)

    def _schedule_retry(self, msg: _Msg, err: KafkaError | None) -> None:
        msg.attempts += 1
        delay = min(self._backoff0 * (2 ** min(msg.attempts - 1, 30)), self._backoff_max)
        msg.due = time.monotonic() + delay * random.uniform(0.8, 1.0)
        with self._cond:
            if self._pending.get(msg.seq) is msg:
                heapq.heappush(self._retry, msg)

    def _on_error(self, err: KafkaError) -> None:
        """librdkafka client-level errors (connection, authentication, fatal idempotence state)."""
        text = err.str()
        if err.fatal():
            self.stats.error("kafka", "producer_fatal")
            self._reset_needed = text
            return
        cond = classify(err)
        if cond is not None:
            self.stats.error("kafka", cond.kind)
            self._set_condition(cond, text)
        else:
            kind = _err_kind(err)
            self._log_transient("kafka_client_error", kind, text)

    # -- fatal conditions: loud, counted, never data loss --------------------------------

    def _set_condition(self, cond: Condition, text: str) -> None:
        now = time.monotonic()
        self._condition_seen = now
        first = self.condition is None or self.condition.kind != cond.kind
        if first:
            self.condition, self.condition_since = cond, now
        if first or now - self._condition_logged >= FATAL_LOG_INTERVAL:
            self._condition_logged = now
            log.error("kafka_fatal_condition", condition=cond.kind, setting=cond.setting, fix=cond.fix,
                      error=self.redact(text)[:500], in_flight=len(self._pending),
                      for_seconds=round(now - (self.condition_since or now), 1),
                      action="records are held and retried with backoff; the checkpoint does not advance; "
                             f"metric kee_kafka_fatal{{condition=\"{cond.kind}\"}}=1")

    def _clear_condition(self) -> None:
        cond = self.condition
        if cond is None:
            return
        self.condition = None
        log.info("kafka_recovered", condition=cond.kind,
                 after_seconds=round(time.monotonic() - (self.condition_since or time.monotonic()), 1))
        self.condition_since = None

    def _log_transient(self, event: str, kind: str, text: str) -> None:
        now = time.monotonic()
        if now - self._transient_logged.get(kind, -1e9) >= TRANSIENT_LOG_INTERVAL:
            self._transient_logged[kind] = now
            log.warning(event, kind=kind, error=self.redact(text)[:500], in_flight=len(self._pending))

    # -- the poller thread ----------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stop:
            try:
                self._poll_once(0.1)
            except Exception as exc:  # noqa: BLE001 - the poller must survive anything
                self.stats.error("kafka", "poller")
                log.error("kafka_poller_error", error=self.redact(exc)[:500])
                time.sleep(0.5)

    def _poll_once(self, timeout: float) -> None:
        if self._reset_needed is not None:
            self._reset()
        retry = self._retry
        if retry:
            wait = max(0.0, min(timeout, retry[0].due - time.monotonic()))
        else:
            wait = timeout
        if time.monotonic() - self._main_polled < MAIN_POLL_GRACE:
            time.sleep(min(wait, MAIN_POLL_GRACE / 2))  # the sending thread serves the reports
        else:
            self._producer.poll(wait)
        self._retry_due()
        if self.condition is not None and self._last_delivered > self._condition_seen \
                and time.monotonic() - self._condition_seen > CLEAR_AFTER:
            self._clear_condition()  # deliveries succeed again and the error has not recurred

    def _retry_due(self) -> None:
        now = time.monotonic()
        due: list[_Msg] = []
        with self._cond:
            retry = self._retry
            while retry and retry[0].due <= now:
                m = heapq.heappop(retry)
                if self._pending.get(m.seq) is m:
                    due.append(m)
        for m in sorted(due, key=lambda m: m.seq):
            self.retried += 1
            self._produce(m)

    def _reset(self) -> None:
        """The producer hit a fatal error (err.fatal()): replace it, produce everything pending again."""
        why, self._reset_needed = self._reset_needed, None
        old = self._producer
        self.producer_resets += 1
        log.error("kafka_producer_reset", error=self.redact(why)[:500], in_flight=len(self._pending),
                  action="a new producer re-sends every record not yet delivered (duplicates possible)")
        with self._cond:
            pending = []
            for seq in sorted(self._pending):
                m = self._pending[seq] = self._pending[seq].copy()  # reports about the old copy are ignored
                pending.append(m)
            self._retry.clear()
        try:
            old.purge(in_queue=True, in_flight=True, blocking=False)
            old.poll(0)
        except Exception:  # noqa: BLE001 - the old producer is being discarded anyway
            pass
        self._producer = self._new_producer()
        for m in pending:
            self.retried += 1
            self._produce(m)

    # -- shutdown ---------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Make a send() blocked by backpressure raise SinkInterrupted (shutdown while Kafka is down)."""
        self._interrupted = True
        with self._cond:
            self._cond.notify_all()

    def in_flight(self) -> tuple[int, int]:
        with self._cond:
            return len(self._pending), self._bytes

    def close(self, timeout: float) -> None:
        """Deliver what is in flight for up to timeout seconds; what is left stays unacknowledged."""
        self._closing = True
        self.interrupt()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                left = len(self._pending)
                if not left:
                    break
                if self._retry:  # on the way out, do not wait for backoff: try now
                    for m in self._retry:
                        m.due = 0.0
                self._cond.wait(min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop = True
        self._thread.join(timeout=5)
        left, nbytes = self.in_flight()
        try:
            self._producer.flush(0)
        except Exception:  # noqa: BLE001
            pass
        if left:
            self.stats.error("kafka", "undelivered_at_close")
            cond = self.condition
            log.error("kafka_undelivered_at_close", records=left, bytes=nbytes, watermark=self.acked(),
                      condition=cond.kind if cond else None, setting=cond.setting if cond else None,
                      action="not acknowledged: the checkpoint stays before them; they are sent again on restart")
            raise SinkFatal("kafka", cond.setting if cond else "sinks.kafka.brokers",
                            f"{left} records not delivered within {timeout:.0f}s"
                            + (f" ({cond.kind})" if cond else ""))
        log.info("kafka_sink_closed", delivered=self.delivered, retried=self.retried, failed=self.failed)

    # -- metrics ----------------------------------------------------------------------------

    def metrics(self) -> Iterator[tuple[str, str, str, dict[str, str], float]]:
        n, nbytes = self.in_flight()
        since = self._blocked_since
        blocked = self.blocked_seconds + (time.monotonic() - since if since is not None else 0.0)
        yield ("kee_kafka_delivered", "counter", "records confirmed delivered by a Kafka delivery report", {},
               self.delivered)
        yield ("kee_records_emitted", "counter", "records confirmed by a sink", {"sink": self.name}, self.delivered)
        yield ("kee_kafka_failed", "counter", "failed delivery attempts (each is retried, never dropped); "
               "by kind in kee_errors{component=\"kafka\"}", {}, self.failed)
        yield ("kee_kafka_retried", "counter", "records produced again after a failed delivery", {}, self.retried)
        yield ("kee_kafka_in_flight_records", "gauge", "records sent to Kafka and not yet confirmed", {}, n)
        yield ("kee_kafka_in_flight_bytes", "gauge", "bytes of records sent to Kafka and not yet confirmed", {},
               nbytes)
        yield ("kee_kafka_delivery_latency_seconds", "counter", "sum of seconds from send to delivery report; "
               "divide by kee_kafka_delivered for the mean", {}, self.latency_sum)
        yield ("kee_kafka_backpressure_seconds", "counter", "seconds the watch waited for room in the Kafka sink",
               {}, blocked)
        yield ("kee_kafka_producer_resets", "counter", "producers replaced after a fatal librdkafka error", {},
               self.producer_resets)
        cond = self.condition
        for kind in FATAL_KINDS:
            yield ("kee_kafka_fatal", "gauge", "1 while a condition a person must fix stops delivery "
                   "(see the kafka_fatal_condition log for the setting)", {"condition": kind},
                   1 if cond is not None and cond.kind == kind else 0)
