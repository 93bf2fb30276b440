"""A sink that batches: encode each record in send(), group by count/bytes/time, one worker delivers each batch.

The shape of every request/response sink (OTLP today; Elasticsearch ``_bulk`` and
webhooks next): a subclass says how a record is encoded and how one batch is sent;
this class does the rest on the shared machinery (exporter/sinks/delivery.py):
bounded in flight (send() blocks, interruptibly), batching, the worker thread,
retries with the shared backoff until the receiver confirms, the condition policy,
acknowledgement of a batch only when it is confirmed, drain on close.

    class MySink(BatchingSink):
        name = "mysink"
        def encode(self, seq, line, record) -> bytes: ...           # pipeline thread
        def deliver(self, frames: list[bytes], count: int) -> None:  # worker thread
            ...  # return: confirmed; raise DeliveryFailed(kind, error, condition=..., retry_after=...)
"""
from __future__ import annotations

import threading
import time
from abc import abstractmethod
from collections import deque
from collections.abc import Iterator
from typing import Any

from exporter import log
from exporter.errors import SinkFatal
from exporter.sinks.base import Condition, Metric, Sink
from exporter.sinks.delivery import Delivery
from exporter.wire import Record, record_dict


class DeliveryFailed(Exception):
    """A batch was not confirmed. ``condition`` when only a person can fix it (else transient);
    ``retry_after``: the receiver's own delay (seconds), honoured as a floor of the backoff."""

    def __init__(self, kind: str, error: str, *, condition: Condition | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(error)
        self.kind, self.error, self.condition, self.retry_after = kind, error, condition, retry_after


class _Batch:
    __slots__ = ("seqs", "frames", "size", "born")

    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.frames: list[bytes] = []
        self.size = 0
        self.born = 0.0


class BatchingSink(Sink):
    """See the module docstring. Subclasses call ``super().__init__`` last (it starts the worker)."""

    def __init__(self, delivery: Delivery, *, batch_max_records: int, batch_max_bytes: int,
                 linger_seconds: float) -> None:
        self.delivery = delivery
        self._max_records = max(1, int(batch_max_records))
        self._max_bytes = max(1, int(batch_max_bytes))
        self._linger = max(0.0, float(linger_seconds))
        self._cv = threading.Condition(threading.Lock())
        self._cur = _Batch()
        self._sealed: deque[_Batch] = deque()
        self._closing = False
        # metrics: requests confirmed, time in them, failed attempts by kind
        self.requests = 0
        self.request_seconds = 0.0
        self.last_request_seconds = 0.0
        self.failures: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-delivery", daemon=True)
        self._thread.start()

    # --- what a subclass writes -------------------------------------------------------

    @abstractmethod
    def encode(self, seq: int, line: bytes, record: dict[str, Any]) -> bytes:
        """One record -> its bytes in a request (pipeline thread; the hot path)."""

    @abstractmethod
    def deliver(self, frames: list[bytes], count: int) -> None:
        """Send one batch; return when the receiver confirmed it, raise DeliveryFailed otherwise (worker thread)."""

    def cancel(self) -> None:
        """close() gave up: abort a deliver() in progress if the transport can (optional)."""

    def release(self) -> None:
        """After the worker stopped: close connections (optional)."""

    def describe(self) -> dict[str, Any]:
        """Fields naming the receiver in log lines (no secrets)."""
        return {}

    def sink_metrics(self) -> Iterator[Metric]:
        """Metrics of this sink beyond the shared ones (optional)."""
        return iter(())

    condition_kinds: tuple[str, ...] = ()

    # --- the pipeline side ------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        self._add(seq, self.encode(seq, line, record))

    def send_struct(self, seq: int, line: bytes, record: Record) -> None:
        self._add(seq, self.encode_struct(seq, line, record))

    def encode_struct(self, seq: int, line: bytes, record: Record) -> bytes:
        """encode() from the record's struct, for a subclass with ``reads_struct`` (default: the dict)."""
        return self.encode(seq, line, record_dict(record))

    def _add(self, seq: int, frame: bytes) -> None:
        """Admit one encoded record (blocks while the in-flight bounds are reached) and batch it."""
        n = len(frame)
        self.delivery.admit(seq, n)
        with self._cv:
            cur = self._cur
            if cur.seqs and cur.size + n > self._max_bytes:
                self._seal()
                cur = self._cur
            if not cur.seqs:
                cur.born = time.monotonic()
                self._cv.notify_all()  # the worker starts this batch's linger timer
            cur.seqs.append(seq)
            cur.frames.append(frame)
            cur.size += n
            if len(cur.seqs) >= self._max_records:
                self._seal()

    def _seal(self) -> None:
        """Close the current batch for delivery (lock held)."""
        self._sealed.append(self._cur)
        self._cur = _Batch()
        self._cv.notify_all()

    def flush(self) -> None:
        with self._cv:
            if self._cur.seqs:
                self._seal()

    def acked(self) -> int:
        return self.delivery.watermark()

    def in_flight(self) -> int:
        return self.delivery.in_flight()[0]

    @property
    def fatal(self) -> SinkFatal | None:
        return self.delivery.fatal

    @property
    def condition(self) -> Condition | None:
        return self.delivery.condition

    def interrupt(self) -> None:
        self.delivery.interrupt()

    def close(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.interrupt()
        with self._cv:
            self._closing = True
            if self._cur.seqs:
                self._seal()
            self._cv.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.delivery.abort()
            self.cancel()
            with self._cv:
                self._cv.notify_all()
            self._thread.join(5.0)
        try:
            self.release()
        except Exception as exc:  # noqa: BLE001 - closing connections must not hide undelivered records
            log.warning("sink_release_failed", sink=self.name, error=self.delivery.redact(exc)[:300])
        if self.delivery.in_flight()[0]:
            self.delivery.undelivered(timeout, **self.describe())
        log.info("sink_closed", sink=self.name, confirmed=self.delivery.confirmed, requests=self.requests,
                 retries=self.delivery.retries)

    def metrics(self) -> Iterator[Metric]:
        yield from self.delivery.metrics(self.condition_kinds)
        yield from self.sink_metrics()

    # --- the worker ---------------------------------------------------------------------

    def _next(self) -> _Batch | None:
        with self._cv:
            while True:
                if self.delivery.aborted:
                    return None
                if self._sealed:
                    return self._sealed.popleft()
                cur = self._cur
                if cur.seqs:
                    wait = cur.born + self._linger - time.monotonic()
                    if self._closing or wait <= 0:
                        self._seal()
                        continue
                    self._cv.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cv.wait()

    def _run(self) -> None:
        while True:
            batch = self._next()
            if batch is None or not self._deliver(batch):
                return

    def _deliver(self, batch: _Batch) -> bool:
        """Deliver until confirmed (True), or until close gives up (False). Never drops, never acks a failure."""
        d = self.delivery
        frames, count = batch.frames, len(batch.seqs)
        attempt = 0
        while True:
            t0 = time.monotonic()
            retry_after = None
            try:
                self.deliver(frames, count)
            except DeliveryFailed as f:
                kind, retry_after = f.kind, f.retry_after
                if f.condition is not None:
                    d.report(f.condition, f.error, records=count, **self.describe())
                else:
                    d.transient(kind, f.error, records=count, attempt=attempt + 1, **self.describe())
            except Exception as exc:  # noqa: BLE001 - a transport surprise: retried like any failure
                kind = "exception"
                d.transient(kind, f"{type(exc).__name__}: {exc}", records=count, attempt=attempt + 1,
                            **self.describe())
            else:
                dt = time.monotonic() - t0
                self.requests += 1
                self.request_seconds += dt
                self.last_request_seconds = dt
                d.confirm_many(batch.seqs, batch.size)
                if attempt:
                    log.info("sink_delivery_recovered", sink=self.name, records=count, attempts=attempt + 1)
                return True
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if d.aborted:
                return False
            delay = d.retry_delay(attempt, retry_after)
            attempt += 1
            if d.sleep(delay):
                return False
