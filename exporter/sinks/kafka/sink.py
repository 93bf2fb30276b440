"""Kafka sink: every record delivered and confirmed by a delivery report before the checkpoint moves.

docs/kafka.md is the user's view; this is the design. Built on exporter/sinks/delivery.py
(bounds, ordered acknowledgement, backoff, the condition policy, shutdown).

    send(seq, line, record)
      | bounds: records held (counted in) + those of the open group >= max_in_flight_records / _bytes
      |   -> seal, Delivery.wait_room (backpressure, serving delivery reports meanwhile; interruptible)
      v
    Producer.produce(topic, value, key, headers, callback=the current _Group)
      | the record joins the group (its seq and value: topic, key and headers are derived from the
      | value again if it has to go on its own); a group is sealed every POLL_EVERY sends, at flush()
      | (the source is about to wait), when send() waits for room, or by the poller thread when it
      | stayed open across two of its rounds. Sealing counts its records in flight at once
      | (Delivery.expect_many: one lock per group, not one per record)
      .
      .  Producer.poll() -> delivery reports: on the sending thread every POLL_EVERY sends and while
      .  it waits for room; on the poller thread when the sending thread is idle (a quiet watch)
      v
    delivered -> counted by its group (no lock, no per-record bookkeeping); once every record of a
                 sealed group is reported: Delivery.confirm_many(its seqs) -> acked() watermark moves
    failed    -> the record leaves its group as a _Msg of its own (found by its value);
                 classify (errors.py): transient | condition (loud, metric)
              -> re-produced after backoff with its own callback (never dropped, never acknowledged)

One callback object per group rather than one per record: a delivery report costs a
counter step instead of a per-record lookup, lock and acknowledgement (issue 16).
Success reports stay on (no ``delivery.report.only.error``): without them a record is
known delivered only once librdkafka's whole queue has drained (``len(producer) == 0``),
which a steady stream never reaches before the in-flight bound, so confirmation would
come in stop-and-go bursts of max_in_flight_records; docs/kafka.md, "Performance".
librdkafka retries on its own (idempotently, in order) for up to delivery_timeout_ms;
after that, or for an error it does not retry, the delivery report carries the error
and the sink re-produces the record after the shared backoff. A producer-level fatal
error (idempotence broken: err.fatal()) replaces the producer and re-produces
everything not yet confirmed (for a group still open: all of its records; duplicates
possible). Secrets are masked in every text logged (config.Redactor).
"""
from __future__ import annotations

import heapq
import itertools
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
from exporter.wire import Record, record_dict

#: A group is sealed at this many records, and the sending thread then polls the producer...
POLL_EVERY = 64
#: ... and while it did so within this many seconds, the poller thread leaves the reports to it.
MAIN_POLL_GRACE = 0.05
#: Longest wait at close for librdkafka to hand back the reports of purged records (seconds).
RELEASE_SECONDS = 2.0


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


class _Group:
    """Records produced one after another with one delivery callback: the group itself.

    A success report only steps ``count`` (itertools.count: one C call, atomic under the GIL,
    so two threads serving reports at once never lose a step); the group is complete when
    the count reaches ``total`` = its records + 1, the +1 being the seal's own step (so
    whoever steps last, a report or the seal, completes it, exactly once). A failed record
    leaves the group (``failed``) and is retried on its own; ``dead`` once completed or
    replaced (a producer reset): later reports about it are ignored.
    """
    __slots__ = ("sink", "seqs", "values", "size", "count", "total", "lats", "failed", "dead", "requeue", "born")

    def __init__(self, sink: KafkaSink) -> None:
        self.sink = sink
        self.seqs: list[int] = []
        #: the records' values only: topic, key and headers are derived from the value again on the rare
        #: failure path (KafkaSink._msg_of), not kept per record on the hot path
        self.values: list[bytes] = []
        self.size = 0
        self.count = itertools.count(1).__next__
        self.total = 0                   # set when sealed
        self.lats: list[float | None] = []
        self.failed: set[int] | None = None
        self.dead = False
        self.requeue = False             # a failure report could not be matched: produce all again
        self.born = time.monotonic()

    def __call__(self, err: KafkaError | None, kmsg: Any) -> None:  # confluent_kafka's on_delivery(err, msg)
        if self.sink._released:
            return  # the sink closed: reports of the purged queue (KafkaSink._release)
        if err is None:
            try:
                self.lats.append(kmsg.latency())
            except AttributeError:  # a report without its message: it counts all the same
                pass
            if self.count() == self.total:
                self.sink._group_done(self)
        else:
            self.sink._group_failed(self, err, kmsg)

    def find(self, kmsg: Any) -> int | None:
        """The index of the record a failure report is about (by value: the key and headers derive from it),
        not yet failed."""
        value = kmsg.value()
        failed = self.failed or ()
        for i, v in enumerate(self.values):
            if v == value and i not in failed:
                return i
        return None


class KafkaSink(Sink):
    """See the module docstring."""

    name = "kafka"
    reads_struct = True  # the pipeline builds no record dict for it (send_struct = send)

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
        self._acks = self.delivery.acks               # its ``pending`` and ``bytes`` are read on the hot path
        self._max_records = self.delivery.max_records
        self._max_bytes = self.delivery.max_bytes
        self._serve_cb = self._serve                  # one bound method, not one per send
        self._confirm = self.delivery.acks.done       # Delivery.confirm without a call in between (hot path)
        self._lock = threading.Lock()                 # _pending, _retry and the groups, against the reports
        self._main_polled = 0.0                       # when it last did (the poller thread then stays idle)
        self._header_cache: dict[tuple[Any, ...], list[tuple[str, bytes]]] = {}
        self._key_headers = self._meta_fn(cfg.key, cfg.headers)
        self._pending: dict[int, _Msg] = {}   # seq -> record on its own (failed once) not yet delivered
        self._groups: set[_Group] = set()      # groups not yet complete (the open one included)
        self._group = self._new_group()        # the open group: send() adds to it
        self._seen_open: _Group | None = None  # the open group the poller saw last round
        self._retry: list[_Msg] = []           # heap by due time: failed records waiting for their backoff
        self._reset_needed: str | None = None
        self._largest_refused: _Msg | None = None  # the largest record refused as too large (named in the log)
        self._closing = False
        self._released = False  # set by close(): delivery reports from then on are ignored
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
        """The source is about to wait: seal the open group (librdkafka sends after linger_ms; delivery reports
        come on the poller thread)."""
        self._seal()

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

    def send(self, seq: int, line: bytes, record: dict[str, Any] | Record) -> None:
        """Also send_struct: the record as its dict or as its struct (key, topic and headers read either)."""
        size = len(line)
        # The in-flight bounds count the open group too: its records are counted in (Delivery.expect_many)
        # when it is sealed, one lock for the group instead of one per record.
        acks, g = self._acks, self._group
        n = len(acks.pending) + len(g.seqs)
        if n >= self._max_records or (acks.bytes + g.size + size > self._max_bytes and n):
            self._seal()
            self.delivery.wait_room(size, self._serve_cb)  # backpressure (interruptible), serving reports
        topic = self._fixed_topic or self.topic.render(record)
        value = line[:-1]
        key, headers = self._key_headers(record)
        with self._lock:
            g = self._group
            try:  # positional: produce(topic, value, key, partition, callback, on_delivery, timestamp, headers)
                self._producer.produce(topic, value, key, -1, g, None, 0, headers)
            except (BufferError, KafkaException):
                # librdkafka's queue is full, or it refused the record: the per-record path handles it,
                # counted in after the open group (seqs are counted in in order)
                sealed = self._seal_locked()
                m = self._pending[seq] = _Msg(seq, topic, value, key, headers, size, time.monotonic(),
                                              self._on_delivery)
                acks.expect(seq, size)
                msg: _Msg | None = m
            else:
                seqs = g.seqs
                seqs.append(seq)
                g.values.append(value)
                g.size += size
                if len(seqs) < POLL_EVERY:
                    return
                sealed, msg = self._seal_locked(), None
        if sealed is not None and sealed.count() == sealed.total:
            self._group_done(sealed)
        if msg is not None:
            self._produce(msg)
            return
        # A full group was sealed: serve delivery reports on this thread while it is busy sending, cheaper than
        # handing the GIL back and forth with the poller thread, which then stays idle (_poll_once).
        self._main_polled = time.monotonic()
        self._producer.poll(0)

    send_struct = send

    def _serve(self, timeout: float) -> None:
        """What send() does while it waits for room: seal the open group, serve delivery reports."""
        self._seal()
        self._main_polled = time.monotonic()
        self._producer.poll(timeout)

    # -- groups -------------------------------------------------------------------------

    def _new_group(self) -> _Group:
        """A new open group (lock held, or before the poller starts)."""
        g = _Group(self)
        self._groups.add(g)
        return g

    def _seal(self) -> None:
        """Close the open group: its record count is final; it completes once all are reported."""
        with self._lock:
            g = self._seal_locked()
        if g is not None and g.count() == g.total:
            self._group_done(g)

    def _seal_locked(self) -> _Group | None:
        """_seal under the lock (held): the sealed group, counted in flight (in seq order: groups are sealed
        one after another under the lock), or None when the open one is empty. The caller steps its count."""
        g = self._group
        if not g.seqs:
            return None
        g.total = len(g.seqs) + 1
        self.delivery.expect_many(g.seqs, g.size)
        self._group = self._new_group()
        return g

    def _group_done(self, g: _Group) -> None:
        """Every record of a sealed group is reported: acknowledge those delivered."""
        with self._lock:
            if g.dead:
                return
            g.dead = True
            self._groups.discard(g)
            self.latency_sum += sum(x for x in g.lats if x is not None)
            failed = g.failed
            if g.requeue:  # a failure report matched none of its records: produce them all again
                again = self._split(g, range(len(g.seqs)))
        if g.requeue:
            for m in again:
                self._schedule_retry(m)
            return
        if failed:
            keep = [i for i in range(len(g.seqs)) if i not in failed]
            self.delivery.confirm_many([g.seqs[i] for i in keep], sum(len(g.values[i]) + 1 for i in keep))
        else:
            self.delivery.confirm_many(g.seqs, g.size)

    def _split(self, g: _Group, indexes: Any) -> list[_Msg]:
        """Records of a group as records on their own, to produce again (lock held)."""
        out = []
        failed = g.failed or ()
        for i in indexes:
            if i in failed:
                continue
            m = self._pending[g.seqs[i]] = self._msg_of(g.seqs[i], g.values[i], g.born)
            out.append(m)
        return out

    def _msg_of(self, seq: int, value: bytes, t0: float) -> _Msg:
        """A record of a group on its own: topic, key and headers derived again from its value, which is the
        record's JSON (what send() derived them from; records.bound cut the record itself, not a copy)."""
        try:
            record = json.loads(value)
        except ValueError:  # never for a record (its value is its JSON); a stranger's bytes go on all the same
            record = {}
        if type(record) is not dict:
            record = {}
        topic = self._fixed_topic or self.topic.render(record)
        key, headers = self._key_headers(record)
        return _Msg(seq, topic, value, key, headers, len(value) + 1, t0, self._on_delivery)

    def _group_failed(self, g: _Group, err: KafkaError, kmsg: Any) -> None:
        """A record of a group failed: it leaves the group and is retried on its own."""
        msg = None
        try:
            with self._lock:
                if g.dead:
                    return  # a report about a record produced again since (a producer reset)
                i = g.find(kmsg) if kmsg is not None else None
                if i is None:
                    g.requeue = True
                else:
                    msg = self._split(g, (i,))[0]
                    if g.failed is None:
                        g.failed = set()
                    g.failed.add(i)
            if msg is not None:
                self._failed(msg, err, err.str())
            else:
                self.failed += 1
                self.delivery.transient(err_kind(err), err.str())
        except Exception as exc:  # noqa: BLE001 - a lost report would stall the watermark for good
            g.requeue = True
            self.stats.error("kafka", "delivery_callback")
            log.error("kafka_delivery_callback_failed", error=self.redact(exc)[:300])
        if g.count() == g.total:
            self._group_done(g)

    def _headers_for(self, record: dict[str, Any] | Record) -> list[tuple[str, bytes]]:
        """build_headers, cached: (type, reason, namespace, cluster) repeat across records."""
        if type(record) is dict:
            ev = record.get("event")
            k = (record.get("type"), record.get("reason"), ev.get("namespace") if type(ev) is dict else None,
                 record.get("cluster"))
        elif isinstance(record, Record):
            k = (record.type, record.reason, record.event.namespace, record.cluster)
        else:
            k = (None, None, None, None)
        h = self._header_cache.get(k)
        if h is None:
            h = build_headers(record if type(record) is dict else
                              record_dict(record) if isinstance(record, Record) else {})
            if len(self._header_cache) > 4096:
                self._header_cache.clear()
            self._header_cache[k] = h
        return h

    def _meta_fn(self, key_mode: str, headers: bool) -> Callable[[dict[str, Any] | Record],
                                                                 tuple[bytes | None, list[tuple[str, bytes]] | None]]:
        """record (its dict or its struct) -> (key, headers) in one call (message_key and _headers_for, which
        it equals, share the record's ``event``)."""
        key_of, cache = self._key, self._header_cache
        if not headers:
            return lambda record: (key_of(record), None)
        headers_for = self._headers_for

        def event_uid(record: dict[str, Any] | Record) -> tuple[bytes | None, list[tuple[str, bytes]] | None]:
            if type(record) is dict:
                try:  # subscripts: a record has every field (schemas/record.v1), and they are cheaper than get()
                    ev = record["event"]
                    uid = ev["uid"]
                    h = cache.get((record["type"], record["reason"], ev["namespace"], record["cluster"]))
                except (KeyError, TypeError):  # not a whole record (a test's): the careful way
                    return key_of(record), headers_for(record)
            elif isinstance(record, Record):  # the struct (send_struct): attribute reads
                sev = record.event
                uid = sev.uid
                h = cache.get((record.type, record.reason, sev.namespace, record.cluster))
            else:
                return key_of(record), headers_for(record)
            return uid.encode() if uid else None, h if h is not None else headers_for(record)
        if key_mode == "event_uid":
            return event_uid
        return lambda record: (key_of(record), headers_for(record))

    def _produce(self, msg: _Msg, register: bool = False) -> None:
        """Hand one record on its own to librdkafka (``register``: a new one, into _pending). Never called with the
        lock held (poll runs callbacks)."""
        if register:
            with self._lock:
                self._pending[msg.seq] = msg
        while True:
            producer = self._producer
            try:
                producer.produce(msg.topic, msg.value, msg.key, -1, msg, None, 0, msg.headers)
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
        if self._released:
            return  # the sink closed: reports of the purged queue (_release)
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
        g = self._group
        if g is self._seen_open:  # open across two rounds (a sender that went quiet without flush): seal it
            self._seal()
        self._seen_open = self._group if self._group.seqs else None
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
        """The producer hit a fatal error (err.fatal()): replace it, produce everything not confirmed again."""
        why, self._reset_needed = self._reset_needed, None
        old = self._producer
        self.producer_resets += 1
        with self._lock:  # send() produces under the lock: nothing reaches the old producer after its purge
            try:
                old.purge(in_queue=True, in_flight=True, blocking=False)
            except Exception:  # noqa: BLE001 - the old producer is being discarded anyway
                pass
            self._seal_locked()  # the open group's records are counted in flight before they go on their own
            self._producer = self._new_producer()
            pending = []
            for seq in sorted(self._pending):
                m = self._pending[seq] = self._pending[seq].copy()  # reports about the old copy are ignored
                pending.append(m)
            for g in self._groups:  # reports about them are ignored; their records go again on their own
                g.dead = True
                pending.extend(self._split(g, range(len(g.seqs))))
            self._groups.clear()
            self._group = self._new_group()
            self._retry.clear()
        pending.sort(key=lambda m: m.seq)
        log.error("kafka_producer_reset", error=self.redact(why)[:500], in_flight=len(pending),
                  action="a new producer re-sends every record not yet delivered (duplicates possible)")
        try:
            old.poll(0)  # its reports (purged) are ignored
        except Exception:  # noqa: BLE001
            pass
        for m in pending:
            self.delivery.retries += 1
            self._produce(m)

    # -- shutdown ---------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Deliver what is in flight for up to timeout seconds; what is left stays unacknowledged (SinkFatal)."""
        self._closing = True
        self.interrupt()
        self._seal()
        deadline = time.monotonic() + timeout
        acks = self.delivery.acks
        while acks.in_flight() and time.monotonic() < deadline:
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
        if acks.in_flight():
            self.delivery.abort()
            self.delivery.undelivered(timeout)
        self._release()
        log.info("kafka_sink_closed", delivered=self.delivery.confirmed, retried=self.delivery.retries,
                 failed=self.failed)

    def _release(self) -> None:
        """Empty librdkafka's queues now, while the interpreter is whole. A producer still holding
        records (brokers refused them: wrong password, all down) is otherwise destroyed at exit and
        calls its delivery reports back into a finalizing interpreter: SIGSEGV seen in CI
        (test_sasl_wrong_password_cli_reports_a_clear_error, exit -11 instead of 1)."""
        self._released = True
        try:
            producer = self._producer
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            deadline = time.monotonic() + RELEASE_SECONDS
            while True:  # the purged records' reports run here (and are ignored)
                producer.poll(0.05)
                if not len(producer) or time.monotonic() >= deadline:
                    break
        except Exception as exc:  # noqa: BLE001 - closing: nothing more to deliver
            log.warning("kafka_release_failed", error=self.redact(exc)[:300])

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
