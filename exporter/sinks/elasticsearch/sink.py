"""The Elasticsearch / OpenSearch sink: records into _bulk, acknowledged per item.

Delivery (docs/elasticsearch.md): ``send()`` encodes the record into one bulk
item (bulk.py) and adds it to the current batch; one worker thread sends sealed
batches (by count, bytes or age) and acknowledges a record only when its item
answered 2xx (:class:`OrderedAcks` turns that into the checkpoint watermark).
Connection errors, 429 and 5xx answers (whole request or single items) are
retried with capped exponential backoff, only the items that failed, forever:
nothing is dropped, and while the cluster is away ``send()`` blocks once
``max_in_flight_records``/``_bytes`` are held (backpressure on the watch).

A document the cluster rejects for good (400 mapping conflict, ...) is logged
with its id and reason, counted (kee_elasticsearch_rejected_records) and, by
``on_rejected``: ``dead_letter`` writes it to ``dead_letter`` and acknowledges
it (the stream and the checkpoint go on); ``hold`` keeps it and sends it again
every ``retry_backoff_max_seconds`` (other records go on, the checkpoint stays
before it, so a restart after the mapping is fixed delivers it).

Re-delivery after a crash sends the same ``_id`` to the same index (the index
name comes from the record's stable fields), so it overwrites: documents =
distinct occurrences.
"""
from __future__ import annotations

import random
import threading
import time
import zlib
from collections import deque
from typing import Any

import orjson

from exporter import log
from exporter.errors import ExporterError, SinkFatal
from exporter.sinks.base import OrderedAcks
from exporter.sinks.elasticsearch import bulk, template
from exporter.sinks.elasticsearch.deadletter import DeadLetter
from exporter.sinks.elasticsearch.transport import Transport, TransportError

#: Request-level answers only a person can fix (credentials, a wrong URL path), and the setting to check.
FATAL_STATUSES = {401: "sinks.elasticsearch.username / password / api_key", 403: "sinks.elasticsearch credentials",
                  404: "sinks.elasticsearch.url", 405: "sinks.elasticsearch.url"}
#: How long such answers must last before the sink reports itself fatal (a key rotation may be under way).
FATAL_AFTER_SECONDS = 60.0


class SinkInterrupted(ExporterError):
    """send() was waiting for room when the sink was interrupted or closed (shutdown)."""


class _Item:
    __slots__ = ("seq", "id", "index", "data")

    def __init__(self, seq: int, rec_id: str, index: str, data: bytes) -> None:
        self.seq, self.id, self.index, self.data = seq, rec_id, index, data


class _Batch:
    __slots__ = ("items", "size", "born")

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.size = 0
        self.born = 0.0


class ElasticsearchSink:
    name = "elasticsearch"

    def __init__(self, cfg: Any, *, stats: Any = None, env: dict[str, str] | None = None,
                 transport: Transport | None = None) -> None:
        check_settings(cfg, env)
        self.cfg = cfg
        self.stats = stats
        self._index = bulk.IndexName(cfg.index)
        self._op = cfg.op_type
        self._prefixes: dict[str, bytes] = {}
        self._t = transport if transport is not None else Transport(cfg, env)
        self._gzip = cfg.compression == "gzip"
        self._bulk_path = f"/_bulk?filter_path={bulk.FILTER_PATH}"
        self._dead = DeadLetter(cfg.dead_letter) if cfg.on_rejected == "dead_letter" else None
        self._acks = OrderedAcks()
        self._cv = threading.Condition(threading.Lock())
        self._cur = _Batch()
        self._sealed: deque[_Batch] = deque()
        self._held: list[_Item] = []
        self._held_due = 0.0
        self._records = 0  # held until confirmed: in batches, being sent, or held after a rejection
        self._bytes = 0
        self._closing = False
        self._interrupted = False
        self._abort = threading.Event()
        self._max_records = int(cfg.batch_max_records)
        self._max_bytes = int(cfg.batch_max_bytes)
        self._linger = float(cfg.batch_timeout_seconds)
        self._limit_records = int(cfg.max_in_flight_records)
        self._limit_bytes = int(cfg.max_in_flight_bytes)
        self._backoff0 = float(cfg.retry_backoff_initial_seconds)
        self._backoff_max = max(self._backoff0, float(cfg.retry_backoff_max_seconds))
        #: Set when delivery cannot succeed until a person acts; the runner stops the exporter (exit 1).
        self.fatal: SinkFatal | None = None
        self._fatal_since: float | None = None
        self._template_ok = not cfg.manage_template
        # metrics
        self.exported = 0
        self.requests = 0
        self.failures: dict[str, int] = {}
        self.retries = 0
        self.rejected = 0
        self.dead_lettered = 0
        self.blocked = 0
        self.request_seconds = 0.0
        self.sent_bytes = 0
        self._thread = threading.Thread(target=self._run, name="elasticsearch-bulk", daemon=True)
        self._thread.start()
        log.info("elasticsearch_sink_started", index=cfg.index, op_type=cfg.op_type, compression=cfg.compression,
                 on_rejected=cfg.on_rejected, manage_template=cfg.manage_template, **self._t.describe())

    # --- pipeline side ---------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        index = self._index.render(record)
        prefix = self._prefixes.get(index)
        if prefix is None:
            if len(self._prefixes) > 4096:
                self._prefixes.clear()
            prefix = self._prefixes[index] = bulk.action_prefix(self._op, index, self.cfg.pipeline)
        rec_id = record.get("id") or ""
        data = bulk.encode(prefix, rec_id, record.get("timestamp"), line)
        n = len(data)
        with self._cv:
            if self._full(n):
                self.blocked += 1
                while self._full(n):
                    if self._interrupted or self._abort.is_set():
                        raise SinkInterrupted(f"elasticsearch sink interrupted while waiting for room "
                                              f"(records in flight: {self._records})")
                    self._cv.wait(1.0)
            self._acks.expect(seq)
            cur = self._cur
            if cur.items and cur.size + n > self._max_bytes:
                self._seal()
                cur = self._cur
            if not cur.items:
                cur.born = time.monotonic()
                self._cv.notify_all()  # the worker starts this batch's linger timer
            cur.items.append(_Item(seq, rec_id, index, data))
            cur.size += n
            self._records += 1
            self._bytes += n
            if len(cur.items) >= self._max_records:
                self._seal()

    def _full(self, n: int) -> bool:
        return self._records >= self._limit_records or (self._records > 0 and self._bytes + n > self._limit_bytes)

    def _seal(self) -> None:
        """Close the current batch for sending (lock held)."""
        self._sealed.append(self._cur)
        self._cur = _Batch()
        self._cv.notify_all()

    def flush(self) -> None:
        with self._cv:
            if self._cur.items:
                self._seal()

    def acked(self) -> int:
        return self._acks.watermark()

    def in_flight(self) -> int:
        with self._cv:
            return self._records

    def interrupt(self) -> None:
        """Make a send() blocked by backpressure raise SinkInterrupted (shutdown while the cluster is down)."""
        with self._cv:
            self._interrupted = True
            self._cv.notify_all()

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            self._closing = True
            if self._cur.items:
                self._seal()
            self._cv.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self._abort.set()
            with self._cv:
                self._cv.notify_all()
        self._thread.join(5.0)
        with self._cv:
            held, left = len(self._held), self._records - len(self._held)
        self._t.close()
        if self._dead is not None:
            self._dead.close()
        if held:
            log.error("elasticsearch_close_held", records=held,
                      note="rejected documents held by on_rejected=hold: the checkpoint stays before them")
        if left:
            if self.stats is not None:
                self.stats.error("elasticsearch", "undelivered_at_close")
            log.error("elasticsearch_close_undelivered", records=left, timeout_seconds=timeout, url=self._t.url,
                      note="not acknowledged: the checkpoint stays before them; they are sent again after a restart")
            raise SinkFatal("elasticsearch", "sinks.elasticsearch.url",
                            f"{left} records not delivered within {timeout:.0f}s")
        log.info("elasticsearch_sink_closed", exported=self.exported, requests=self.requests, retries=self.retries,
                 rejected=self.rejected)

    # --- worker --------------------------------------------------------------------------

    def _next(self) -> list[_Item] | None:
        with self._cv:
            while True:
                if self._abort.is_set():
                    return None
                now = time.monotonic()
                if self._held and now >= self._held_due and not self._closing:
                    items, self._held = self._held, []
                    return items
                if self._sealed:
                    return self._sealed.popleft().items
                cur = self._cur
                waits = []
                if self._held and not self._closing:
                    waits.append(self._held_due - now)
                if cur.items:
                    wait = cur.born + self._linger - now
                    if self._closing or wait <= 0:
                        self._seal()
                        continue
                    waits.append(wait)
                elif self._closing:
                    return None
                self._cv.wait(min(waits) if waits else None)

    def _run(self) -> None:
        while True:
            if not self._template_ok and not self._install_template():
                return
            items = self._next()
            if items is None or not self._deliver(items):
                return

    def _backoff(self, attempt: int) -> float:
        return min(self._backoff_max, self._backoff0 * (2 ** min(attempt, 30))) * random.uniform(0.8, 1.2)

    def _install_template(self) -> bool:
        """PUT the shipped index template before the first document; retried like a request. False: aborted."""
        attempt = 0
        while not self._abort.is_set():
            error: str
            status = 0
            try:
                status, body = self._t.request("GET", "/")
                if status == 200:
                    flavour = template.distribution(orjson.loads(body))
                    doc = template.fitted(template.load(), flavour, self.cfg.template_patterns)
                    status, body = self._t.request("PUT", f"/_index_template/{self.cfg.template_name}",
                                                   orjson.dumps(doc), {"Content-Type": "application/json"})
                    if status == 200:
                        self._template_ok = True
                        self._fatal_since = None
                        log.info("elasticsearch_template_installed", name=self.cfg.template_name, flavour=flavour,
                                 patterns=self.cfg.template_patterns)
                        return True
                error = f"HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
            except TransportError as exc:
                error = str(exc)
            except ValueError as exc:  # GET / answered something that is not JSON
                error = f"bad answer to GET /: {exc}"
            self._watch_fatal(status, error)
            if self.stats is not None:
                self.stats.error("elasticsearch", "template")
            delay = self._backoff(attempt)
            attempt += 1
            log.warning("elasticsearch_template_failed", error=error, attempt=attempt, url=self._t.url,
                        retry_in_seconds=round(delay, 2))
            if self._abort.wait(delay):
                return False
        return False

    def _deliver(self, items: list[_Item]) -> bool:
        """Send until every item is acknowledged, dead-lettered or held (True), or close gives up (False)."""
        attempt = 0
        while items:
            body = b"".join(it.data for it in items)
            headers = {"Content-Type": "application/x-ndjson"}
            if self._gzip:
                z = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: gzip framing; level 1: ~8x on Event JSON
                body = z.compress(body) + z.flush()
                headers["Content-Encoding"] = "gzip"
            t0 = time.monotonic()
            status = 0
            try:
                status, resp = self._t.request("POST", self._bulk_path, body, headers)
            except TransportError as exc:
                kind, error = "connection", str(exc)
            else:
                if status == 200:
                    try:
                        outcomes = bulk.parse_items(resp, len(items))
                    except bulk.BadResponse as exc:
                        kind, error = "bad_response", str(exc)
                    else:
                        self.requests += 1
                        self.sent_bytes += len(body)
                        self.request_seconds += time.monotonic() - t0
                        self._fatal_since = None
                        left = self._settle(items, outcomes)
                        if not left:
                            if attempt:
                                log.info("elasticsearch_bulk_recovered", records=len(items), attempts=attempt + 1)
                            return True
                        kind = "item_retry"
                        first = outcomes[items.index(left[0])] if outcomes else None
                        error = f"{len(left)} of {len(items)} items to retry, first: {first}"
                        items = left
                else:
                    kind = "http_429" if status == 429 else ("http_5xx" if status >= 500 else "http_4xx")
                    error = f"HTTP {status}: {resp[:300].decode('utf-8', 'replace')}"
            self.failures[kind] = self.failures.get(kind, 0) + 1
            self._watch_fatal(status, error)
            if self.stats is not None:
                self.stats.error("elasticsearch", kind)
            if self._abort.is_set():
                return False
            delay = self._backoff(attempt)
            attempt += 1
            self.retries += 1
            log.warning("elasticsearch_bulk_failed", records=len(items), attempt=attempt, error=error,
                        seconds=round(time.monotonic() - t0, 3), url=self._t.url, retry_in_seconds=round(delay, 2))
            if self._abort.wait(delay):
                return False
        return True

    def _settle(self, items: list[_Item], outcomes: list[bulk.Outcome] | None) -> list[_Item]:
        """Acknowledge the stored items, apply on_rejected to the rejected ones; return those to retry."""
        if outcomes is None:
            self._done(items)
            return []
        done: list[_Item] = []
        retry: list[_Item] = []
        rejected: list[tuple[_Item, bulk.Outcome]] = []
        for it, o in zip(items, outcomes):
            c = bulk.classify(o, self._op)
            if c == bulk.OK:
                done.append(it)
            elif c == bulk.RETRY:
                retry.append(it)
            else:
                rejected.append((it, o))
        if rejected:
            policy = self.cfg.on_rejected
            for it, o in rejected:
                log.error("elasticsearch_document_rejected", id=it.id, index=it.index, status=o.status,
                          error_type=o.error_type, reason=(o.reason or "")[:500], policy=policy)
            self.rejected += len(rejected)
            if self.stats is not None:
                self.stats.error("elasticsearch", "rejected")
            if self._dead is not None:
                try:
                    self._dead.write([(it.id, it.index, o.status, o.error_type, o.reason, _document(it.data))
                                      for it, o in rejected])
                except OSError as exc:
                    log.error("elasticsearch_dead_letter_failed", target=self._dead.target, error=str(exc),
                              records=len(rejected), note="not acknowledged: sent again")
                    if self.stats is not None:
                        self.stats.error("elasticsearch", "dead_letter")
                    retry.extend(it for it, _ in rejected)
                else:
                    self.dead_lettered += len(rejected)
                    done.extend(it for it, _ in rejected)
            else:
                with self._cv:
                    if not self._held:
                        self._held_due = time.monotonic() + self._backoff_max
                    self._held.extend(it for it, _ in rejected)
        self._done(done)
        return retry

    def _done(self, items: list[_Item]) -> None:
        if not items:
            return
        self._acks.done_many([it.seq for it in items])
        self.exported += len(items)
        size = sum(len(it.data) for it in items)
        with self._cv:
            self._records -= len(items)
            self._bytes -= size
            self._cv.notify_all()

    def _watch_fatal(self, status: int, error: str) -> None:
        """Request-level 401/403/404/405 lasting FATAL_AFTER_SECONDS set ``fatal``: the runner then stops
        (exit 1, checkpoint kept) instead of retrying silently for ever. Retries go on until then."""
        if status not in FATAL_STATUSES:
            self._fatal_since = None
            return
        now = time.monotonic()
        if self._fatal_since is None:
            self._fatal_since = now
        elif self.fatal is None and now - self._fatal_since >= FATAL_AFTER_SECONDS:
            setting = FATAL_STATUSES[status]
            self.fatal = SinkFatal("elasticsearch", setting, f"the cluster keeps answering {error}")
            log.error("elasticsearch_fatal_condition", status=status, error=error, setting=setting,
                      seconds=round(now - self._fatal_since))

    # --- metrics -----------------------------------------------------------------------

    def metrics(self):
        yield ("kee_records_emitted", "counter", "records confirmed by a sink", {"sink": self.name}, self.exported)
        yield ("kee_elasticsearch_bulk_requests", "counter", "_bulk requests answered 200", {}, self.requests)
        for kind in ("connection", "http_429", "http_5xx", "http_4xx", "bad_response", "item_retry"):
            yield ("kee_elasticsearch_bulk_failures", "counter",
                   "_bulk attempts with something to retry (never dropped), by kind", {"kind": kind},
                   self.failures.get(kind, 0))
        yield ("kee_elasticsearch_bulk_retries", "counter", "_bulk requests sent again after a failure", {},
               self.retries)
        yield ("kee_elasticsearch_rejected_records", "counter",
               "documents the cluster rejected for good (mapping conflict, 400), see on_rejected",
               {"policy": self.cfg.on_rejected}, self.rejected)
        yield ("kee_elasticsearch_dead_lettered_records", "counter", "rejected documents written to dead_letter",
               {}, self.dead_lettered)
        yield ("kee_elasticsearch_held_records", "gauge",
               "rejected documents held by on_rejected=hold (the checkpoint waits for them)", {}, len(self._held))
        yield ("kee_elasticsearch_in_flight_records", "gauge", "records handed to the sink and not yet confirmed",
               {}, self._records)
        yield ("kee_elasticsearch_in_flight_bytes", "gauge", "encoded bytes held until confirmed", {}, self._bytes)
        yield ("kee_elasticsearch_backpressure_waits", "counter",
               "times send() blocked because the in-flight bound was reached", {}, self.blocked)
        yield ("kee_elasticsearch_request_seconds", "counter", "seconds spent in answered _bulk requests", {},
               self.request_seconds)
        yield ("kee_elasticsearch_sent_bytes", "counter", "request body bytes of answered _bulk requests "
               "(after compression)", {}, self.sent_bytes)
        yield ("kee_elasticsearch_fatal", "gauge", "1 while the cluster answers what only a person can fix "
               "(see the elasticsearch_fatal_condition log)", {}, 1 if self.fatal is not None else 0)


def _document(data: bytes) -> bytes:
    """The document half of a bulk item (after the action line)."""
    return data[data.index(b"\n") + 1:]


def check_settings(cfg: Any, env: dict[str, str] | None = None) -> None:
    """Fail at start, naming the field, for what would only fail at the first request."""
    from exporter.errors import ConfigError
    if not cfg.url:
        raise ConfigError("sinks.elasticsearch.url", "Elasticsearch is enabled but no url is set",
                          "set sinks.elasticsearch.url to http(s)://host:9200")
    bulk.IndexName(cfg.index)
    for name in ("batch_timeout_seconds",):
        if float(getattr(cfg, name)) < 0:
            raise ConfigError(f"sinks.elasticsearch.{name}", "is negative", "use 0 or more seconds")
    for name in ("request_timeout_seconds", "retry_backoff_initial_seconds", "retry_backoff_max_seconds"):
        if float(getattr(cfg, name)) <= 0:
            raise ConfigError(f"sinks.elasticsearch.{name}", "must be greater than 0", "use a positive number of seconds")
    if cfg.on_rejected == "dead_letter" and cfg.dead_letter not in ("stdout", "stderr"):
        try:
            with open(cfg.dead_letter, "ab"):
                pass
        except OSError as exc:
            raise ConfigError("sinks.elasticsearch.dead_letter", f"cannot append to {cfg.dead_letter}: "
                              f"{exc.strerror}", "give a writable file path, or stdout / stderr") from exc
    Transport(cfg, env)
