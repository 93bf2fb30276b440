"""Ordered acknowledgements: a sink's confirmations -> its watermark -> each stream's committable resourceVersion.

Two halves of one rule, kept in one module: :class:`OrderedAcks` turns a sink's
out-of-order confirmations into an in-order watermark (the highest seq up to which
everything is confirmed); :class:`Ledger` turns the minimum watermark of all sinks into
the resourceVersion a checkpoint may save.

A watch stream advances through positions (resourceVersions). Some positions
carry a record (an Event occurrence handed to the sinks under a seq), others
carry none (a BOOKMARK, a filtered-out event, a DELETED, the end of a LIST).
The checkpoint may move to a position only once every record up to it is
confirmed by every sink; a later confirmation never moves it past an earlier
unconfirmed record (Vector's ordered finalizer, in resourceVersion terms).

The ledger stores (seq of the last record handed out before the position, rv).
Given the minimum sink watermark W, the committable rv is that of the newest
entry whose seq <= W. Entries are pruned as they are passed, so memory is
bounded by what is in flight.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Collection


def rv_key(rv: str) -> tuple[int, str]:
    """Order opaque resourceVersions: by length, then lexicographically.

    kube-apiserver RVs are decimal integers of arbitrary size; never parse them
    into a fixed-width int (api-concepts: opaque, but orderable from 1.35).
    """
    return (len(rv), rv)


def rv_newer(a: str, b: str | None) -> bool:
    """True when resourceVersion a is strictly after b (None is before all)."""
    return b is None or (len(a), a) > (len(b), b)


class Ledger:
    """Positions of one stream, and the one committable rv derived from them.

    Its own small lock: the source appends while the checkpointer advances, and the
    checkpointer must never wait for the pipeline's lock (a sink blocked by
    backpressure holds that one for as long as its outage lasts).
    """

    __slots__ = ("_entries", "_lock", "committed", "add")

    def __init__(self, start_rv: str | None = None) -> None:
        self._entries: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        #: ``add((seq, rv))``: :meth:`position` for a seq newer than every entry's (a record just handed
        #: out), on the hot path: one deque append, no lock (append and advance's popleft are atomic and
        #: work at opposite ends; the one writer, the pipeline, holds its own lock).
        self.add = self._entries.append
        #: The rv up to which everything is confirmed (what a checkpoint saves).
        self.committed: str | None = start_rv

    def position(self, last_seq: int, rv: str) -> None:
        """The stream reached rv; the last record handed out so far has last_seq."""
        with self._lock:
            entries = self._entries
            if entries and entries[-1][0] == last_seq:
                entries[-1] = (last_seq, rv)
            else:
                entries.append((last_seq, rv))

    def advance(self, watermark: int) -> str | None:
        """Move ``committed`` to the newest position covered by the watermark."""
        with self._lock:
            entries = self._entries
            while entries and entries[0][0] <= watermark:
                self.committed = entries.popleft()[1]
            return self.committed

    def pending(self) -> int:
        return len(self._entries)


class OrderedAcks:
    """Turns out-of-order confirmations of seqs into an in-order watermark, and counts what is held.

    Seqs handed to one sink are increasing but not necessarily contiguous (other
    records may have been filtered out before this sink): ``expect(seq, size)`` records
    every seq sent, in increasing order (the pipeline's order; ``expect_many`` a run of them
    at once), ``done(seq, size)`` every seq confirmed, in any order. The watermark is the seq
    just below the oldest unconfirmed one, or the last sent when all are done.
    ``size`` (bytes) is only summed, for the sinks' in-flight byte bound.
    Thread-safe: delivery callbacks may run on another thread.

    ``pending`` is a deque in seq order (expects come in increasing order): the oldest is
    ``pending[0]`` and leaves by popleft, O(1), where a heap cost O(log n) per record.
    A seq may be confirmed before it is expected (a sink that expects a batch of records
    once the batch is closed, and one of them was confirmed on its own meanwhile): it waits
    in ``_done`` and leaves ``pending`` as soon as it is at the front.
    """

    __slots__ = ("_lock", "pending", "_done", "_last_sent", "_cond", "_waiters", "bytes", "confirmed")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        #: Sent seqs, oldest first, until they and all before them are confirmed (read-only outside: len() is
        #: the in-flight count of the sinks' bound, lock-free).
        self.pending: deque[int] = deque()
        self._done: set[int] = set()   # confirmed seqs still above the oldest pending
        self._last_sent = 0
        self._waiters = 0  # threads in wait_for: wake-ups cost ~2 us, so only when someone waits
        #: Bytes sent and not yet confirmed (as given to expect/done).
        self.bytes = 0
        #: Records confirmed so far.
        self.confirmed = 0

    def expect(self, seq: int, size: int = 0) -> None:
        with self._lock:
            self.pending.append(seq)
            self._last_sent = seq
            self.bytes += size

    def expect_many(self, seqs: Collection[int], size: int = 0) -> None:
        """``expect`` for a run of increasing seqs, all newer than any expected before (one lock)."""
        if not seqs:
            return
        with self._cond:
            pending, done = self.pending, self._done
            pending.extend(seqs)
            self._last_sent = pending[-1]
            self.bytes += size
            if done:  # some were confirmed before they were expected
                while pending and pending[0] in done:
                    done.discard(pending.popleft())
                if self._waiters:
                    self._cond.notify_all()

    def done(self, seq: int, size: int = 0) -> None:
        with self._cond:
            self._done.add(seq)
            self.bytes -= size
            self.confirmed += 1
            pending, done = self.pending, self._done
            while pending and pending[0] in done:
                done.discard(pending.popleft())
            if self._waiters:
                self._cond.notify_all()

    def done_many(self, seqs: Collection[int], size: int = 0) -> None:
        """``done`` for a whole delivered batch: one lock and one wake-up instead of one per seq."""
        with self._cond:
            self._done.update(seqs)
            self.bytes -= size
            self.confirmed += len(seqs)
            pending, done = self.pending, self._done
            while pending and pending[0] in done:
                done.discard(pending.popleft())
            if self._waiters:
                self._cond.notify_all()

    def in_flight(self) -> int:
        """Records sent and not yet confirmed (read without the lock: a snapshot). ``len(pending)``, what
        the sinks' in-flight bound counts, also holds those confirmed after an unconfirmed one."""
        return len(self.pending) - len(self._done)

    def watermark(self) -> int:
        with self._lock:
            if self.pending:
                return self.pending[0] - 1
            return self._last_sent

    def wait_below(self, limit: int, timeout: float | None = None) -> bool:
        """Block until fewer than ``limit`` records are unconfirmed (False on timeout)."""
        return self.wait_room(limit, 1 << 62, 0, timeout)

    def wait_room(self, max_records: int, max_bytes: int, size: int, timeout: float | None) -> bool:
        """Block until one more record of ``size`` bytes fits (or nothing is held); False on timeout."""
        with self._cond:
            self._waiters += 1
            try:
                return self._cond.wait_for(
                    lambda: not self.pending or (len(self.pending) < max_records
                                                  and self.bytes + size <= max_bytes), timeout)
            finally:
                self._waiters -= 1

    def notify(self) -> None:
        """Wake every waiter (an interrupt: they re-check why they wait)."""
        with self._cond:
            self._cond.notify_all()
