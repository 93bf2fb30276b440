"""Kafka sink: every record delivered and confirmed by a delivery report before the checkpoint moves.

docs/kafka.md is the user's view; this is the design. Built on exporter/sinks/delivery.py
(bounds, ordered acknowledgement, backoff, the condition policy, shutdown).

    send(seq, line, record)
      | Delivery.admit: wait while in flight >= max_in_flight_records / _bytes (backpressure,
      |   serving delivery reports meanwhile; interruptible)
      | remember the message in _pending (to produce it again)
      v
    Producer.produce(topic, value, key, headers, on_delivery)   (BufferError: poll, retry)
      .
      .  Producer.poll() -> delivery report: on the sending thread every POLL_EVERY sends and while
      .  it waits for room; on the poller thread when the sending thread is idle (a quiet watch)
      v
    delivered -> Delivery.confirm(seq)            -> acked() watermark moves
    failed    -> classify (errors.py): transient | condition (loud, metric)
              -> re-produce after backoff (never dropped, never acknowledged)

librdkafka retries on its own (idempotently, in order) for up to delivery_timeout_ms;
after that, or for an error it does not retry, the delivery report carries the error
and the sink re-produces the record after the shared backoff. A producer-level fatal
error (idempotence broken: err.fatal()) replaces the producer and re-produces
everything still pending. Secrets are masked in every text logged (config.Redactor).
"""
from __future__ import annotations

import heapq
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from exporter import log
from exporter.backoff import Backoff
from exporter.errors import ConfigError, SinkFatal
from exporter.metrics import Stats
from exporter.settings import KafkaSettings
from exporter.sinks.base import Condition, Metric, Sink
from exporter.sinks.delivery import Delivery
from exporter.sinks.kafka.client import KafkaError, KafkaException, LogBridge, Producer, error_of
from exporter.sinks.kafka.config import check_settings, producer_config
from exporter.sinks.kafka.encode import TopicTemplate, build_headers, message_key
from exporter.sinks.kafka.errors import CONDITION_KINDS, TOO_LARGE, classify, err_kind

#: The sending thread polls the producer every this many sends...
POLL_EVERY = 64
#: ... and while it did so within this many seconds, the poller thread leaves the reports to it.
MAIN_POLL_GRACE = 0.05


class _Msg:
    """One record held until delivered: what is needed to produce it again.

    It is also its own delivery callback (no partial per record: fewer objects for the garbage collector).
    A report counts only if this very object is still the pending one for its seq: after a producer reset
    the pending record is a copy, and late reports about the original are ignored.
    """
    __slots__ = ("seq", "topic", "value", "key", "headers", "size", "t0", "attempts", "due", "report")

    def __init__(self, seq: int, topic: str, value: bytes, key: bytes | None,
                 headers: list[tuple[str, bytes]] | None, size: int, t0: float,
                 report: Callable[[_Msg, KafkaError | None], None]) -> None:
        self.seq, self.topic, self.value, self.key, self.headers = seq, topic, value, key, headers
        self.size, self.t0, self.report = size, t0, report
        self.attempts = 0
        self.due = 0.0

    def __call__(self, err: KafkaError | None, _kmsg: Any) -> None:  # confluent_kafka's on_delivery(err, msg)
        self.report(self, err)

    def copy(self) -> _Msg:
        m = _Msg(self.seq, self.topic, self.value, self.key, self.headers, self.size, self.t0, self.report)
        m.attempts = self.attempts
        return m

    def __lt__(self, other: _Msg) -> bool:  # heap order: due time, then seq
        return (self.due, self.seq) < (other.due, other.seq)

    def record_id(self) -> str | None:
        """The record's id, for a log line about this one record (failure path only)."""
        try:
            rid = json.loads(self.value).get("id")
        except (ValueError, AttributeError):
            return None
        return str(rid) if rid is not None else None


class KafkaSink(Sink):
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
        self._conf, self.redact = producer_config(cfg, env)
        self._factory = producer_factory or Producer
        self.delivery = Delivery(self.name, max_records=cfg.max_in_flight_records, max_bytes=cfg.max_in_flight_bytes,
                                 backoff=Backoff(cfg.retry_backoff_initial_ms / 1000.0,
                                                 cfg.retry_backoff_max_ms / 1000.0),
                                 stats=self.stats, redact=self.redact)
        self._admit = self.delivery.admit
        self._confirm = self.delivery.acks.done       # Delivery.confirm without a call in between (hot path)
        self._lock = threading.Lock()                 # _pending and _retry, against the delivery callbacks
        self._since_poll = 0                          # sends since the sending thread last polled
        self._main_polled = 0.0                       # when it last did (the poller thread then stays idle)
        self._header_cache: dict[tuple[Any, ...], list[tuple[str, bytes]]] = {}
        self._pending: dict[int, _Msg] = {}   # seq -> record not yet delivered (in librdkafka or waiting to retry)
        self._retry: list[_Msg] = []           # heap by due time: failed records waiting for their backoff
        self._reset_needed: str | None = None
        self._largest_refused: _Msg | None = None  # the largest record refused as too large (named in the log)
        self._closing = False
        # metrics of this sink only (the shared ones are the Delivery's)
        self.failed = 0
        self.latency_sum = 0.0
        self.producer_resets = 0

        log.info("kafka_sink_starting", brokers=cfg.brokers, topic=cfg.topic, key=cfg.key, acks=self._conf["acks"],
                 idempotence=self._conf.get("enable.idempotence"), compression=cfg.compression,
                 config=self.redact.config({k: v for k, v in self._conf.items() if k != "bootstrap.servers"}))
        self._producer = self._new_producer()
        self._stop = False
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poller", daemon=True)
        self._thread.start()

    # -- the Sink interface -------------------------------------------------------------

    @property
    def fatal(self) -> SinkFatal | None:
        return self.delivery.fatal

    @property
    def condition(self) -> Condition | None:
        return self.delivery.condition

    def acked(self) -> int:
        return self.delivery.watermark()

    def in_flight(self) -> tuple[int, int]:
        return self.delivery.in_flight()

    def interrupt(self) -> None:
        """Make a send() blocked by backpressure raise SinkInterrupted (shutdown while Kafka is down)."""
        self.delivery.interrupt()

    def flush(self) -> None:
        """Nothing to do: librdkafka sends after linger_ms; delivery reports come on the poller thread."""

    # -- producer ---------------------------------------------------------------------

    def _new_producer(self) -> Any:
        conf = dict(self._conf)
        conf["error_cb"] = self._on_error
        conf["logger"] = LogBridge(self.redact)
        try:
            return self._factory(conf)
        except (KafkaException, ValueError, TypeError) as exc:
            raise ConfigError("sinks.kafka.config", f"librdkafka rejected the configuration: {self.redact(exc)}",
                              "check the librdkafka property names and values "
                              "(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)") from None

    # -- the hot path -----------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        size = len(line)
        self._admit(seq, size, self._serve)
        msg = _Msg(seq, self._fixed_topic or self.topic.render(record), line[:-1], self._key(record),
                   self._headers_for(record) if self._headers else None, size, time.monotonic(), self._on_delivery)
        self._pending[seq] = msg  # only this thread adds; reports only remove (under the lock)
        self._produce(msg)
        # Serve delivery reports on this thread while it is busy sending: cheaper than handing the GIL
        # back and forth with the poller thread, which then stays idle (_poll_once).
        self._since_poll += 1
        if self._since_poll >= POLL_EVERY:
            self._since_poll = 0
            self._main_polled = time.monotonic()
            self._producer.poll(0)

    def _serve(self, timeout: float) -> None:
        """What send() does while it waits for room: serve delivery reports."""
        self._main_polled = time.monotonic()
        self._producer.poll(timeout)

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

    def _produce(self, msg: _Msg) -> None:
        """Hand one record to librdkafka. Never called with the lock held (poll runs callbacks)."""
        while True:
            producer = self._producer
            try:
                producer.produce(msg.topic, msg.value, msg.key, headers=msg.headers, on_delivery=msg)
                return
            except BufferError:
                # librdkafka's local queue is full: serve delivery reports, then try again
                producer.poll(0.05)
                if self.delivery.interrupted:  # shutting down: leave it to the retry queue (pending, unacked)
                    self._schedule_retry(msg)
                    return
            except KafkaException as exc:  # refused before sending (e.g. over message.max.bytes)
                err = error_of(exc)
                self._failed(msg, err, str(exc))
                return

    # -- delivery reports (poller thread, or the sending thread while it polls) ---------------

    def _on_delivery(self, msg: _Msg, err: KafkaError | None) -> None:
        try:
            self._delivery(msg, err)
        except Exception as exc:  # noqa: BLE001 - a lost report would stall the watermark for good
            self.stats.error("kafka", "delivery_callback")
            log.error("kafka_delivery_callback_failed", error=self.redact(exc)[:300], seq=msg.seq)
            if err is not None and self._pending.get(msg.seq) is msg:
                self._schedule_retry(msg)

    def _delivery(self, msg: _Msg, err: KafkaError | None) -> None:
        if self._pending.get(msg.seq) is not msg:
            return  # a report from a replaced producer about a record produced again since
        if err is None:
            with self._lock:
                if self._pending.get(msg.seq) is not msg:
                    return
                del self._pending[msg.seq]
                self.latency_sum += time.monotonic() - msg.t0
            self._confirm(msg.seq, msg.size)
            return
        self._failed(msg, err, err.str())

    def _failed(self, msg: _Msg, err: KafkaError | None, text: str) -> None:
        self.failed += 1
        if err is not None and err.fatal():
            self._reset_needed = text
        cond = classify(err)
        if cond is TOO_LARGE:
            self._too_large(msg, text)
        elif cond is not None:
            self.delivery.report(cond, text)
        else:
            self.delivery.transient(err_kind(err) if err is not None else "produce", text)
        self._schedule_retry(msg)

    def _too_large(self, msg: _Msg, text: str) -> None:
        """The broker refuses a *batch* over its limit: the records batched with a large one fail too. A first
        refusal is retried (the record then mostly goes alone); a repeated one is the condition, naming the
        largest record refused (the one that does not fit), with a fix that can work (errors.TOO_LARGE)."""
        big = self._largest_refused
        if big is None or msg.size >= big.size or self._pending.get(big.seq) is not big:
            self._largest_refused = big = msg
        if msg.attempts == 0:
            self.delivery.transient("message_too_large", f"{text} (the batch it was in; retried)")
        else:
            self.delivery.report(TOO_LARGE, text, record_id=big.record_id(), record_bytes=big.size, topic=big.topic)

    def _schedule_retry(self, msg: _Msg) -> None:
        delay = self.delivery.retry_delay(msg.attempts)
        msg.attempts += 1
        msg.due = time.monotonic() + delay
        with self._lock:
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
            self.delivery.report(cond, text)
        else:
            self.delivery.transient(err_kind(err), text)

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
        wait = max(0.0, min(timeout, retry[0].due - time.monotonic())) if retry else timeout
        if time.monotonic() - self._main_polled < MAIN_POLL_GRACE:
            time.sleep(min(wait, MAIN_POLL_GRACE / 2))  # the sending thread serves the reports
        else:
            self._producer.poll(wait)
        self._retry_due()
        self.delivery.check_recovered()

    def _retry_due(self) -> None:
        now = time.monotonic()
        due: list[_Msg] = []
        with self._lock:
            retry = self._retry
            while retry and retry[0].due <= now:
                m = heapq.heappop(retry)
                if self._pending.get(m.seq) is m:
                    due.append(m)
        for m in sorted(due, key=lambda m: m.seq):
            self._produce(m)

    def _reset(self) -> None:
        """The producer hit a fatal error (err.fatal()): replace it, produce everything pending again."""
        why, self._reset_needed = self._reset_needed, None
        old = self._producer
        self.producer_resets += 1
        log.error("kafka_producer_reset", error=self.redact(why)[:500], in_flight=len(self._pending),
                  action="a new producer re-sends every record not yet delivered (duplicates possible)")
        with self._lock:
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
            self.delivery.retries += 1
            self._produce(m)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Deliver what is in flight for up to timeout seconds; what is left stays unacknowledged (SinkFatal)."""
        self._closing = True
        self.interrupt()
        deadline = time.monotonic() + timeout
        while self._pending and time.monotonic() < deadline:
            with self._lock:
                for m in self._retry:  # on the way out, do not wait for backoff: try now
                    m.due = 0.0
            self.delivery.acks.wait_below(1, min(0.1, max(0.0, deadline - time.monotonic())))
        self._stop = True
        self._thread.join(timeout=5)
        try:
            self._producer.flush(0)
        except Exception:  # noqa: BLE001
            pass
        if self._pending:
            self.delivery.abort()
            self.delivery.undelivered(timeout)
        log.info("kafka_sink_closed", delivered=self.delivery.confirmed, retried=self.delivery.retries,
                 failed=self.failed)

    # -- metrics ----------------------------------------------------------------------------

    def metrics(self) -> Iterator[Metric]:
        yield from self.delivery.metrics(CONDITION_KINDS)
        yield ("kee_kafka_delivered", "counter", "records confirmed delivered by a Kafka delivery report", {},
               self.delivery.confirmed)
        yield ("kee_kafka_failed", "counter", "failed delivery attempts (each is retried, never dropped); "
               "by kind in kee_errors{component=\"kafka\"}", {}, self.failed)
        yield ("kee_kafka_delivery_latency_seconds", "counter", "sum of seconds from send to delivery report; "
               "divide by kee_kafka_delivered for the mean", {}, self.latency_sum)
        yield ("kee_kafka_producer_resets", "counter", "producers replaced after a fatal librdkafka error", {},
               self.producer_resets)
