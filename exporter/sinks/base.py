"""The contract every sink keeps with the pipeline: accept records, confirm them.

A record is handed to a sink as (seq, line, record): seq is a pipeline-wide,
strictly increasing sequence number; line is the record already encoded as one
JSON line (bytes, trailing newline included) so that sinks that ship JSON do not
encode it again; record is the same record as a dict, for sinks that map it to
another shape (OTLP) or read fields of it (Kafka keys, topics, headers).

Acknowledgement flows back as a *watermark*: ``acked()`` returns the highest seq
such that every record with a seq at or below it is confirmed delivered. A sink
that confirms out of order (Kafka partitions, OTLP retries) keeps its own
:class:`OrderedAcks`. The checkpoint is derived from the minimum watermark of all
sinks (see exporter/acks.py), so a sink must never report a seq it has not
delivered.

Backpressure: ``send`` may block while the sink holds as much in flight as it is
allowed to; that stalls the watch instead of growing memory or dropping.
"""
from __future__ import annotations

import heapq
import threading
from typing import Any, Protocol


class Sink(Protocol):
    name: str

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        """Take one record. May block for backpressure; must not drop it."""

    def flush(self) -> None:
        """Push out what is buffered. Called when the source is about to wait."""

    def acked(self) -> int:
        """Highest seq up to which every record is confirmed delivered."""

    def close(self, timeout: float) -> None:
        """Deliver what is in flight (up to timeout seconds) and release resources."""


class OrderedAcks:
    """Turns out-of-order confirmations of seqs into an in-order watermark.

    Seqs handed to one sink are increasing but not necessarily contiguous (other
    records may have been filtered out before this sink): ``expect(seq)`` records
    every seq sent, ``done(seq)`` every seq confirmed. The watermark is the seq
    just below the oldest unconfirmed one, or the last sent when all are done.
    Thread-safe: delivery callbacks may run on another thread.
    """

    __slots__ = ("_lock", "_pending", "_done", "_last_sent", "_cond", "_waiters")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: list[int] = []  # heap of sent, unconfirmed seqs
        self._done: set[int] = set()   # confirmed seqs still above the oldest pending
        self._last_sent = 0
        self._waiters = 0  # threads in wait_below: wake-ups cost ~2 us, so only when someone waits

    def expect(self, seq: int) -> None:
        with self._lock:
            heapq.heappush(self._pending, seq)
            self._last_sent = seq

    def done(self, seq: int) -> None:
        with self._cond:
            self._done.add(seq)
            pending, done = self._pending, self._done
            while pending and pending[0] in done:
                done.discard(heapq.heappop(pending))
            if self._waiters:
                self._cond.notify_all()

    def done_many(self, seqs) -> None:
        """``done`` for a whole delivered batch: one lock and one wake-up instead of one per seq."""
        with self._cond:
            self._done.update(seqs)
            pending, done = self._pending, self._done
            while pending and pending[0] in done:
                done.discard(heapq.heappop(pending))
            if self._waiters:
                self._cond.notify_all()

    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def watermark(self) -> int:
        with self._lock:
            if self._pending:
                return self._pending[0] - 1
            return self._last_sent

    def wait_below(self, limit: int, timeout: float | None = None) -> bool:
        """Block until fewer than ``limit`` records are unconfirmed."""
        with self._cond:
            self._waiters += 1
            try:
                return self._cond.wait_for(lambda: len(self._pending) < limit, timeout)
            finally:
                self._waiters -= 1
