"""The delivery machinery every sink is built on: bounds, acknowledgement, retries, conditions, shutdown.

One :class:`Delivery` per sink holds what would otherwise be rewritten, differently,
in each sink:

- **bounded in flight** -- at most ``max_records`` records and ``max_bytes`` bytes
  sent and unconfirmed; ``admit()`` blocks the pipeline (backpressure) until there
  is room, and is interruptible: ``interrupt()`` (shutdown) makes it raise
  SinkInterrupted at once, and a fatal sink raises SinkFatal instead of waiting.
- **ordered acknowledgement** -- :class:`exporter.acks.OrderedAcks`: ``confirm()``
  in any order, ``watermark()`` in order. Only a confirmed record is acknowledged.
- **one backoff** -- :class:`exporter.backoff.Backoff` (the watch's too);
  ``sleep()`` waits it out and returns early when close gives up (``abort()``).
- **one fatal-condition policy** (docs/design.md, "Sinks: failures"):
  *transient* errors (receiver down, timeouts) are retried with backoff, logged at
  most every TRANSIENT_LOG_INTERVAL per kind; *conditions* a person must fix
  (credentials, ACLs, a missing topic, a wrong URL, a record too large) are held and
  retried in place, logged at error level naming the setting and the fix at once and
  every CONDITION_LOG_INTERVAL while they last, and shown by
  ``kee_sink_condition{sink,condition}`` = 1; the process does not exit for them
  (a restart would resume from the same checkpoint into the same error). Only a sink
  that can never deliver again in this process (stdout's reader is gone) is
  ``broken()``: ``fatal`` is set and the runner stops with exit 1. Either way nothing
  unconfirmed is acknowledged, so the checkpoint stays before it.
- **shutdown** -- ``undelivered()`` logs what close() could not deliver and raises
  SinkFatal (exit 1; the records are sent again at the next start).
- **metrics** common to all sinks, labelled by sink.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from exporter import log
from exporter.acks import OrderedAcks
from exporter.backoff import Backoff
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.sinks.base import Condition, Metric, SinkInterrupted

#: Seconds between two error logs of the same lasting condition (loud, not a flood).
CONDITION_LOG_INTERVAL = 30.0
#: Seconds between two warnings of the same transient error kind (a broker down fails every few ms).
TRANSIENT_LOG_INTERVAL = 10.0
#: A condition is cleared once deliveries succeed and it has not recurred for this many seconds.
CLEAR_AFTER = 5.0
#: Seconds a blocked admit() waits (or serves the sink's events) before re-checking interrupt/fatal.
WAIT_SLICE = 0.1


def _no_redact(text: Any) -> str:
    return str(text)


class Delivery:
    """The shared delivery state of one sink. See the module docstring."""

    def __init__(self, sink: str, *, max_records: int, max_bytes: int, backoff: Backoff,
                 stats: Stats | None = None, redact: Callable[[Any], str] = _no_redact) -> None:
        self.sink = sink
        self.max_records = max(1, int(max_records))
        self.max_bytes = max(1, int(max_bytes))
        self.backoff = backoff
        self.stats = stats if stats is not None else Stats()
        self.redact = redact
        self.acks = OrderedAcks()
        self._interrupted = threading.Event()
        self._aborted = threading.Event()
        self.fatal: SinkFatal | None = None
        self.condition: Condition | None = None
        self._condition_since = 0.0
        self._condition_seen = 0.0
        self._condition_logged = 0.0
        self._ok_at_seen = 0      # successes counted when the condition was last seen
        self._oks = 0             # successes of sinks that confirm without the window (stdout)
        self._transient_logged: dict[str, float] = {}
        # metrics
        self.retries = 0
        self.blocked_seconds = 0.0
        self._blocked_since: float | None = None

    # --- the window: bounded, ordered, interruptible ----------------------------------

    def admit(self, seq: int, size: int, serve: Callable[[float], Any] | None = None) -> None:
        """Count one record in flight; block first while the bounds are reached (backpressure).

        ``serve(seconds)`` is called while waiting instead of sleeping, for sinks whose
        confirmations are served on the sending thread (librdkafka's poll).
        """
        self.wait_room(size, serve)
        self.acks.expect(seq, size)

    def wait_room(self, size: int, serve: Callable[[float], Any] | None = None) -> None:
        """Block while the bounds are reached (``admit`` without the count; alone, for a sink that counts its
        records in with ``expect_many`` once a batch of them is closed: the Kafka sink's groups)."""
        acks = self.acks
        if len(acks.pending) >= self.max_records or (acks.pending and acks.bytes + size > self.max_bytes):
            self._wait_room(size, serve)

    def expect_many(self, seqs: list[int], size: int = 0) -> None:
        """Count a closed batch of records in flight at once (increasing seqs, newer than all before)."""
        self.acks.expect_many(seqs, size)

    def _wait_room(self, size: int, serve: Callable[[float], Any] | None) -> None:
        acks = self.acks
        self._blocked_since = t0 = time.monotonic()
        try:
            while len(acks.pending) >= self.max_records or (acks.pending and acks.bytes + size > self.max_bytes):
                self.check_open()
                if serve is not None:
                    serve(WAIT_SLICE)
                else:
                    acks.wait_room(self.max_records, self.max_bytes, size, WAIT_SLICE)
        finally:
            self._blocked_since = None
            self.blocked_seconds += time.monotonic() - t0

    def check_open(self) -> None:
        """Raise SinkInterrupted after interrupt(), or the SinkFatal of a broken sink."""
        if self._interrupted.is_set():
            raise SinkInterrupted(f"{self.sink} sink interrupted while waiting (records in flight: "
                                  f"{self.acks.in_flight()})")
        if self.fatal is not None:
            raise self.fatal

    def confirm(self, seq: int, size: int = 0) -> None:
        """One record delivered (any order). Hot path: a sink may call ``acks.done`` itself, the same thing."""
        self.acks.done(seq, size)

    def confirm_many(self, seqs: list[int], size: int = 0) -> None:
        """A batch delivered."""
        self.acks.done_many(seqs, size)
        if self.condition is not None:
            self.check_recovered()

    def ok(self) -> None:
        """A delivery succeeded (for sinks that confirm without the window, e.g. stdout)."""
        self._oks += 1
        if self.condition is not None:
            self.check_recovered()

    def watermark(self) -> int:
        return self.acks.watermark()

    @property
    def confirmed(self) -> int:
        """Records confirmed so far (kee_records_emitted)."""
        return self.acks.confirmed

    def in_flight(self) -> tuple[int, int]:
        return self.acks.in_flight(), self.acks.bytes

    # --- shutdown -------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Shutdown: a blocked admit() raises SinkInterrupted (records already held are still delivered)."""
        self._interrupted.set()
        self.acks.notify()

    @property
    def interrupted(self) -> bool:
        return self._interrupted.is_set()

    def abort(self) -> None:
        """close() gave up: retry loops stop (what is held stays unacknowledged)."""
        self._aborted.set()
        self.interrupt()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def sleep(self, seconds: float) -> bool:
        """Wait before a retry; True when aborted meanwhile (stop retrying)."""
        return self._aborted.wait(seconds)

    def undelivered(self, timeout: float, held: tuple[int, int] | None = None, **context: Any) -> None:
        """close() is left with unconfirmed records: log it, count it, raise SinkFatal (exit 1).

        ``held``: (records, bytes) for a sink that keeps no per-record window (stdout's buffer)."""
        n, nbytes = held if held is not None else self.in_flight()
        cond = self.condition
        self.stats.error(self.sink, "undelivered_at_close")
        log.error("sink_undelivered_at_close", sink=self.sink, records=n, bytes=nbytes, watermark=self.watermark(),
                  timeout_seconds=timeout, condition=cond.kind if cond else None,
                  setting=cond.setting if cond else None, **context,
                  action="not acknowledged: the checkpoint stays before them; they are sent again at the next start")
        raise SinkFatal(self.sink, cond.setting if cond else f"sinks.{self.sink}",
                        f"{n} records not delivered within {timeout:.0f}s" + (f" ({cond.kind})" if cond else ""))

    # --- failures: one policy -------------------------------------------------------------

    def retry_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The backoff before retry number ``attempt`` (0: the first) of one record or batch; counts a retry."""
        self.retries += 1
        return self.backoff.delay(attempt, retry_after)

    def transient(self, kind: str, error: Any, **context: Any) -> None:
        """A failure that time may fix (receiver down, timeout): counted; a warning per kind every 10 s."""
        self.stats.error(self.sink, kind)
        now = time.monotonic()
        if now - self._transient_logged.get(kind, -1e9) >= TRANSIENT_LOG_INTERVAL:
            self._transient_logged[kind] = now
            log.warning("sink_delivery_failed_retrying", sink=self.sink, kind=kind,
                        error=self.redact(error)[:500], in_flight=self.acks.in_flight(), **context)

    def report(self, cond: Condition, error: Any, *, count: bool = True, **context: Any) -> None:
        """A condition a person must fix: held and retried; loud at once, then every 30 s; metric = 1."""
        if count:
            self.stats.error(self.sink, cond.kind)
        now = time.monotonic()
        self._condition_seen = now
        self._ok_at_seen = self.acks.confirmed + self._oks
        first = self.condition is None or self.condition.kind != cond.kind
        if first:
            self.condition, self._condition_since = cond, now
        if first or now - self._condition_logged >= CONDITION_LOG_INTERVAL:
            self._condition_logged = now
            log.error("sink_condition", sink=self.sink, condition=cond.kind, setting=cond.setting, fix=cond.fix,
                      error=self.redact(error)[:500], in_flight=self.acks.in_flight(),
                      for_seconds=round(now - self._condition_since, 1), **context,
                      action="records are held and retried with backoff; the checkpoint does not advance; "
                             f"metric kee_sink_condition{{sink=\"{self.sink}\",condition=\"{cond.kind}\"}}=1")

    def check_recovered(self) -> None:
        """Clear the condition once deliveries succeed again and it has not recurred for CLEAR_AFTER s."""
        cond = self.condition
        if cond is None:
            return
        now = time.monotonic()
        if self.acks.confirmed + self._oks > self._ok_at_seen and now - self._condition_seen > CLEAR_AFTER:
            self.condition = None
            log.info("sink_recovered", sink=self.sink, condition=cond.kind,
                     after_seconds=round(now - self._condition_since, 1))

    def broken(self, setting: str, problem: str, **context: Any) -> SinkFatal:
        """This sink can never deliver again in this process: set ``fatal`` (the runner stops, exit 1)."""
        if self.fatal is None:
            self.fatal = SinkFatal(self.sink, setting, problem)
            self.stats.error(self.sink, "broken")
            log.error("sink_fatal", sink=self.sink, setting=setting, error=self.redact(problem)[:500],
                      in_flight=self.acks.in_flight(), **context,
                      action="the exporter stops (exit 1); what was not delivered is not acknowledged and is "
                             "sent again at the next start")
            self.acks.notify()
            self.stats.notify()  # the runner looks at every sink's fatal now, not at its next wake-up
        return self.fatal

    # --- metrics ----------------------------------------------------------------------------

    def metrics(self, kinds: Iterable[str] = (), held: tuple[int, int] | None = None,
                confirmed: int | None = None) -> Iterator[Metric]:
        """Samples every sink has; ``kinds``: every condition kind this sink knows (a gauge each).

        ``held`` and ``confirmed`` for a sink that keeps no per-record window (stdout)."""
        self.check_recovered()
        n, nbytes = held if held is not None else self.in_flight()
        since = self._blocked_since
        blocked = self.blocked_seconds + (time.monotonic() - since if since is not None else 0.0)
        lab = {"sink": self.sink}
        yield ("kee_records_emitted", "counter", "records confirmed by a sink", lab,
               self.confirmed if confirmed is None else confirmed)
        yield ("kee_sink_in_flight_records", "gauge", "records handed to a sink and not yet confirmed", lab, n)
        yield ("kee_sink_in_flight_bytes", "gauge", "bytes of records held by a sink until confirmed", lab, nbytes)
        yield ("kee_sink_backpressure_seconds", "counter", "seconds the watch waited for room in a sink", lab, blocked)
        yield ("kee_sink_retries", "counter", "deliveries attempted again after a failure (never dropped)", lab,
               self.retries)
        cond = self.condition
        for kind in sorted(set(kinds) | ({cond.kind} if cond else set())):
            yield ("kee_sink_condition", "gauge", "1 while a condition only a person can fix holds a sink's "
                   "records (see the sink_condition log for the setting)", {"sink": self.sink, "condition": kind},
                   1 if cond is not None and cond.kind == kind else 0)
        yield ("kee_sink_fatal", "gauge", "1 when a sink can never deliver again in this process (the exporter "
               "stops)", lab, 1 if self.fatal is not None else 0)
