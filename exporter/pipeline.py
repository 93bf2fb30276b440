"""The data path, top to bottom: source -> normalise -> filter -> encode -> sinks.

Sources (exporter/sources/) call :meth:`Pipeline.handle` for every watch
envelope, in stream order. Here a record is born (records.normalise), may be
dropped by a filter (transforms/filters), is encoded once to a JSON line and is
handed to every sink under one sequence number. Sinks confirm by watermark
(sinks/base.py); :meth:`Pipeline.commit` turns the minimum watermark into each
stream's committable resourceVersion (acks.Ledger), which the checkpointer saves.

The pipeline owns each stream's initial-state flag: a source says where the
initial state (LIST or watch-list) begins and ends, the pipeline deduplicates a
relist against what was already delivered and records no position inside it.
Every record is bounded here, once, right after its one encode
(records.bound: strings cut with a marker, never dropped).

Several streams (one per watched namespace) may feed one pipeline from
different threads; the lock keeps seqs handed to sinks in increasing order.
commit() and close() never take it: a sink blocked by backpressure holds it.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from exporter import log, wire
from exporter.acks import Ledger, rv_newer
from exporter.metrics import Stats
from exporter.records import FAST_LIMIT, bound, clock, record
from exporter.sinks.base import Sink
from exporter.wire import Event, Record, record_dict

_dumps = wire.dumps
_encode_record = wire.encode_record
_OPT = wire.OPT_APPEND_NEWLINE
#: What send() gets as the record when no sink reads it (Sink.reads_record) and no filter,
#: enrichment or count_delta needs it: the dict is then never built. Never written to.
NO_RECORD: dict[str, Any] = {}
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _without_record(sink: Sink) -> Callable[[int, bytes, Record], None]:
    """send() of a sink that reads ``line`` only, beside one that takes the struct."""
    send = sink.send

    def send_line(seq: int, line: bytes, _r: Record) -> None:
        send(seq, line, NO_RECORD)
    return send_line


class Stream:
    """One watch stream's position state: its ledger and the last RV it has seen."""

    __slots__ = ("key", "ledger", "last_seen", "initial", "dedup_rv")

    def __init__(self, key: str, start_rv: str | None) -> None:
        self.key = key
        self.ledger = Ledger(start_rv)
        #: Newest RV processed from a watch (dedups a relist after 410).
        self.last_seen: str | None = start_rv
        #: True while the initial state (LIST or watch-list) is being delivered:
        #: its items come in key order, so no position is recorded until its end.
        #: Set and cleared by the Pipeline only (begin_initial / end_initial / abort_initial).
        self.initial = False
        #: During a relist: items whose RV is not newer than this were delivered already.
        self.dedup_rv: str | None = None


class Pipeline:
    def __init__(self, sinks: list[Sink], *, stats: Stats, predicate: Callable[[dict[str, Any]], bool] | None = None,
                 cluster: str | None = None,
                 max_message_bytes: int = 8192, max_record_bytes: int = 983040, recurring: str = "every",
                 live: bool = True) -> None:
        self.sinks = sinks
        self.stats = stats
        self.predicate = predicate
        self.cluster = cluster
        self.max_message_bytes = max_message_bytes
        self.max_record_bytes = max_record_bytes
        self.count_delta = recurring == "count_delta"
        self._counts: dict[str, int] = {}  # uid -> last count (count_delta mode only)
        self.live = live
        self.enrich: Any = None  # transforms/enrich.Enricher when enrich.enabled (between normalise and filter)
        self.seq = 0
        self.observed = clock.now()  # collection time of the current chunk: see tick()
        self.closed = False  # set on shutdown: nothing more is handed to sinks or recorded
        self.streams: dict[str, Stream] = {}
        self._lock = threading.Lock()
        #: No sink reads the record dict in send() (Sink.reads_record; a duck-typed sink does), and no filter
        #: or count_delta does: a record is encoded from its struct, no dict is built (the hot path).
        self._plain = (predicate is None and not self.count_delta
                       and not any(getattr(s, "reads_record", True) and not getattr(s, "reads_struct", False)
                                   for s in sinks))
        #: In the plain path, what each sink is handed when one of them takes the record's struct
        #: (Sink.reads_struct: OTLP); None when none does (every sink gets ``line`` and NO_RECORD).
        self._struct_sends: list[Callable[[int, bytes, Record], None]] | None = None
        if self._plain and any(getattr(s, "reads_struct", False) for s in sinks):
            self._struct_sends = [s.send_struct if getattr(s, "reads_struct", False) else _without_record(s)
                                  for s in sinks]

    def stream(self, key: str, start_rv: str | None) -> Stream:
        s = self.streams[key] = Stream(key, start_rv)
        return s

    # --- the hot path ---------------------------------------------------------

    def tick(self) -> None:
        """A new chunk of input arrived: stamp what follows with this collection time.

        Lines of one chunk arrived together; formatting the time once per chunk,
        not per record, is measurably cheaper on the hot path.
        """
        self.observed = clock.now()

    def handle(self, stream: Stream, etype: str, obj: Event) -> None:
        """One watch envelope (ADDED/MODIFIED/DELETED/BOOKMARK) of one stream."""
        if self.closed:
            return
        stats = self.stats
        md = obj.metadata
        rv = md.resourceVersion if md is not None else None
        if etype == "ADDED" or etype == "MODIFIED":
            if stream.initial and stream.dedup_rv and rv and not rv_newer(rv, stream.dedup_rv):
                stats.relist_deduplicated += 1  # a relist item the watch delivered before the 410
                return
            stats.received_occurrences += 1
            r = record(obj, etype == "MODIFIED", self.cluster, self.max_message_bytes, self.observed)
            if self._plain and r.invalid_timestamps is None and self.enrich is None:
                # The common case (_occurrence, inlined): no dict, no filter, one encode.
                line = _encode_record(r) + b"\n"
                size, msg = len(line), r.message
                if size <= self.max_record_bytes and (size - len(msg) if msg else size) <= FAST_LIMIT:
                    if r.message_truncated:
                        stats.truncated += 1
                    if self._send(stream, line, NO_RECORD, rv, follows_watch=True, struct=r) and self.live:
                        stats.observe_lag(r.timestamp)
                    return
            self._occurrence(stream, r, rv)
        elif etype == "BOOKMARK":
            stats.bookmarks += 1
            if stream.initial:
                if md is not None and (md.annotations or {}).get(INITIAL_EVENTS_END) == "true":
                    self.end_initial(stream, rv)
            elif rv:
                self._position(stream, rv)
        elif etype == "DELETED":
            # TTL expiry, not an occurrence: counted, never exported as one.
            stats.deleted += 1
            if self.count_delta and md is not None and md.uid is not None:
                self._counts.pop(md.uid, None)
            if rv and not stream.initial:
                self._position(stream, rv)
        else:
            stats.unknown_envelopes += 1
            self.report("watch_envelope_unknown", "input", "unknown_envelope", stream=stream.key,
                        type=str(etype)[:40], resource_version=rv)

    def _occurrence(self, stream: Stream, r: Record, rv: str | None) -> None:
        bad_times = r.invalid_timestamps
        if bad_times is not None:
            self.report("record_timestamp_invalid", "records", "invalid_timestamp", stream=stream.key, id=r.id,
                        nulled_or_replaced=bad_times)
        if not self._plain or self.enrich is not None:
            rec = record_dict(r)
            if self.count_delta and not self._delta(rec):
                self.stats.filtered += 1
                self._position_if(stream, rv)
                return
            if self.enrich is not None:  # after count_delta: a suppressed repeat costs no lookup
                self.enrich(rec)
            if self.predicate is not None and not self.predicate(rec):
                self.stats.filtered += 1
                self._position_if(stream, rv)
                return
            line = _dumps(rec, option=_OPT)
            msg = rec["message"]
        else:  # no filter, no enrichment, no sink that reads the dict: encode the struct, build no dict
            rec = NO_RECORD
            line = _encode_record(r) + b"\n"
            msg = r.message
        size = len(line)
        # records.within_field_bounds, inlined: no string but the message can be over its bound
        if size > self.max_record_bytes or (size - len(msg) if msg else size) > FAST_LIMIT:
            if rec is NO_RECORD:
                rec = record_dict(r)
            line, cut = bound(rec, line, self.max_record_bytes)
            if cut:
                self.report("record_strings_truncated", "records", "string_truncated", stream=stream.key,
                            id=rec["id"], strings_cut=cut, record_bytes=len(line))
        if rec is NO_RECORD:
            if r.message_truncated:
                self.stats.truncated += 1
            if not self._send(stream, line, rec, rv, follows_watch=True, struct=r):
                return
            if self.live:
                self.stats.observe_lag(r.timestamp)
            return
        if rec["message_truncated"]:
            self.stats.truncated += 1
        if not self._send(stream, line, rec, rv, follows_watch=True):
            return
        if self.live:
            self.stats.observe_lag(rec["timestamp"])

    def _delta(self, rec: dict[str, Any]) -> bool:
        uid = rec["event"]["uid"]
        count = rec["count"]
        if uid is None:  # nothing to follow it by: every record of it counts in full
            rec["count_delta"] = count
            return True
        prev = self._counts.get(uid)
        self._counts[uid] = count
        if prev is not None and count == prev and rec["update"]:
            return False
        rec["count_delta"] = count - prev if prev is not None and count > prev else count
        return True

    def emit(self, stream: Stream, rec: dict[str, Any], position: str | None) -> None:
        """A record born outside records.normalise (exporter/terminations.py): filter, encode, send, position.

        ``position`` is what the stream's checkpoint holds once this record is confirmed.
        """
        if self.predicate is not None and not self.predicate(rec):
            self.stats.filtered += 1
            if position:
                self.advance(stream, position)
            return
        self._send(stream, _dumps(rec, option=_OPT), rec, position, follows_watch=False)

    def _send(self, stream: Stream, line: bytes, rec: dict[str, Any], position: str | None, *,
              follows_watch: bool, struct: Record | None = None) -> bool:
        """Hand one encoded record to every sink under the next seq and record its position in the
        stream's ledger (outside an initial state); False once the pipeline is closed.

        ``follows_watch``: the position is the Event's own resourceVersion, so it is also the last one seen
        (a watch delivers changes in resourceVersion order); a derived record's position is not.
        ``struct``: the record's struct when ``rec`` is NO_RECORD (the plain path), for a sink that takes it.
        """
        with self._lock:
            if self.closed:
                return False
            self.seq = seq = self.seq + 1
            sends = self._struct_sends
            if struct is not None and sends is not None:
                for send in sends:
                    send(seq, line, struct)
            else:
                for sink in self.sinks:
                    sink.send(seq, line, rec)
            if position and not stream.initial:
                # seq is newer than every entry: a plain append (Ledger.add, no lock of its own)
                stream.ledger.add((seq, position))
                if follows_watch:
                    stream.last_seen = position
            return True

    def advance(self, stream: Stream, position: str) -> None:
        """The stream reached ``position`` without a record (a source that keeps its own resourceVersion)."""
        if stream.initial:
            return
        with self._lock:
            if not self.closed:
                stream.ledger.position(self.seq, position)

    def _position_if(self, stream: Stream, rv: str | None) -> None:
        if rv and not stream.initial:
            self._position(stream, rv)

    def _position(self, stream: Stream, rv: str) -> None:
        with self._lock:
            if self.closed:
                return
            stream.ledger.position(self.seq, rv)
            if rv_newer(rv, stream.last_seen):
                stream.last_seen = rv

    # --- reporting what goes wrong ------------------------------------------------

    def report(self, event: str, component: str, kind: str, **fields: Any) -> None:
        """Something in the input went wrong: a metric (kee_errors{component,kind}) and a log line.

        The log is rate-limited per kind (the first 10, then every 1000th, with the
        running total), so a stream of bad input cannot flood stderr; the metric counts all.
        """
        key = (component, kind)
        n = self.stats.errors.get(key, 0) + 1
        self.stats.errors[key] = n
        if n <= 10 or n % 1000 == 0:
            log.warning(event, kind=kind, total=n, **fields)

    # --- initial state (LIST or watch-list) ------------------------------------

    def begin_initial(self, stream: Stream, dedup_rv: str | None = None) -> None:
        """A LIST or watch-list starts; with ``dedup_rv`` (a relist), items not newer than it are skipped.

        A watch delivers every change in RV order, so a relisted item whose RV is
        not newer than the last one seen was delivered: dedup without any uid kept.
        """
        stream.initial = True
        stream.dedup_rv = dedup_rv

    def end_initial(self, stream: Stream, rv: str | None) -> None:
        """The initial state is complete up to rv: it becomes a position."""
        stream.initial = False
        stream.dedup_rv = None
        if rv:
            self._position(stream, rv)

    def abort_initial(self, stream: Stream) -> None:
        """The initial state ended before it was complete: no position from it (it will be listed again)."""
        stream.initial = False
        stream.dedup_rv = None

    def close(self) -> None:
        """Stop taking envelopes (sources may still be blocked in a read or in a sink's send).

        No lock: a source blocked by a sink's backpressure holds the pipeline lock.
        A record already being handed over when this is set is still delivered.
        """
        self.closed = True

    def quiesce(self, timeout: float) -> bool:
        """After close(): wait until no record is being handed to the sinks (False on timeout).

        A source may be inside a sink's send() when close() is set; flushing the sinks
        while it appends would race. Sinks blocked by backpressure must have been
        interrupted first, or this waits out its timeout.
        """
        if self._lock.acquire(timeout=timeout):
            self._lock.release()
            return True
        return False

    # --- flushing and confirmation ---------------------------------------------

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def watermark(self) -> int:
        return min((s.acked() for s in self.sinks), default=self.seq)

    def commit(self) -> dict[str, str | None]:
        """Advance every stream's committed RV to what all sinks have confirmed."""
        w = self.watermark()
        self.stats.in_flight = self.seq - w
        return {key: s.ledger.advance(w) for key, s in self.streams.items()}
