"""Stdout sink: JSON lines for Promtail/Alloy/Fluent Bit to ship into Loki or Elasticsearch.

A record is acknowledged once it is written to the file descriptor (the pipe to the
container runtime's log file), never before: records are buffered and written in
bursts (when the buffer is full or the source is about to wait), and a burst that
fails to write stays held, unacknowledged, until it is written.

Failures (the policy of exporter/sinks/delivery.py):
- the reader is gone (EPIPE, ECONNRESET) or the descriptor is unusable (EBADF,
  EINVAL): the sink is *broken*; ``fatal`` is set, send() raises SinkFatal, the
  exporter stops with exit 1, and the checkpoint stays before the unwritten lines;
- anything else (ENOSPC, EDQUOT, EIO, EAGAIN...): a *condition*; the burst is held
  and the write retried with backoff, blocking the pipeline (backpressure) until it
  succeeds, the sink is interrupted (shutdown), or close() gives up.
"""
from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from exporter.backoff import Backoff
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.sinks.base import Condition, Metric, Sink
from exporter.sinks.delivery import Delivery

#: Seconds before the first retry of a failed write, and the cap: a freed disk is used within 5 s.
RETRY_INITIAL, RETRY_MAX = 0.1, 5.0
#: errno values after which stdout can never be written again (the reader exited, the fd is unusable).
BROKEN = {errno.EPIPE, errno.ECONNRESET, errno.EBADF, errno.EINVAL}
NO_SPACE = Condition("no_space", "stdout's destination", "free space on the file system stdout is written to")
IO_ERROR = Condition("io_error", "stdout's destination", "check the device or file stdout is written to")
CONDITIONS = {errno.ENOSPC: NO_SPACE, errno.EDQUOT: NO_SPACE, errno.EIO: IO_ERROR}
WRITE_ERROR = Condition("write_error", "stdout's destination", "check where stdout is redirected")


class StdoutSink(Sink):
    name = "stdout"
    reads_record = False  # writes ``line`` only

    def __init__(self, out: BinaryIO | None = None, buffer_bytes: int = 65536, *, stats: Stats | None = None) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        try:
            self._fd: int | None = self._out.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None
        self._limit = buffer_bytes
        self.delivery = Delivery(self.name, max_records=1 << 62, max_bytes=buffer_bytes,
                                 backoff=Backoff(RETRY_INITIAL, RETRY_MAX), stats=stats)
        self.stats = self.delivery.stats
        self._buf: list[bytes] = []     # taken, not yet written
        self._size = 0
        self._last_seq = 0              # last seq taken
        self._held: memoryview | None = None  # a burst whose write failed: what is left of it
        self._held_seq = 0              # last seq in the held burst
        self._held_n = 0
        self._acked = 0
        self.written = 0

    # --- the pipeline side ------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        self._buf.append(line)
        self._last_seq = seq
        self._size += len(line)
        if self._size >= self._limit:
            if self.delivery.fatal is not None:
                raise self.delivery.fatal
            self._drain(None, raise_=True)

    def flush(self) -> None:
        if self._buf or self._held is not None:
            # After interrupt() (shutdown) one attempt, no waiting: close() retries until its timeout.
            self._drain(time.monotonic() if self.delivery.interrupted else None, raise_=not self.delivery.interrupted)

    def acked(self) -> int:
        return self._acked

    @property
    def fatal(self) -> SinkFatal | None:
        return self.delivery.fatal

    def interrupt(self) -> None:
        self.delivery.interrupt()

    def close(self, timeout: float) -> None:
        if not self._drain(time.monotonic() + timeout, raise_=False):
            self.delivery.undelivered(timeout, held=self._held_counts())

    # --- writing ----------------------------------------------------------------------------

    def _drain(self, deadline: float | None, *, raise_: bool) -> bool:
        """Write the held burst and the buffer; True when all is written. On failure: retry with backoff
        until written, the deadline, an interrupt (raise_: SinkInterrupted) or a broken descriptor."""
        d = self.delivery
        attempt = 0
        while True:
            fatal = d.fatal
            if fatal is not None:
                if raise_:
                    raise fatal
                return False
            try:
                self._write_all()
                return True
            except OSError as exc:
                self._failed(exc)
            if d.fatal is not None:
                continue
            if raise_:
                d.check_open()
            delay = d.retry_delay(attempt)
            attempt += 1
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                delay = min(delay, left)
            if d.sleep(delay):
                return False

    def _write_all(self) -> None:
        if self._held is None:
            if not self._buf:
                return
            self._held = memoryview(b"".join(self._buf))
            self._held_seq, self._held_n = self._last_seq, len(self._buf)
            self._buf.clear()
            self._size = 0
        self._write_held()
        self.delivery.ok()
        self._acked = self._held_seq
        self.written += self._held_n
        self._held = None
        if self._buf:  # taken while the held burst was retried
            self._write_all()

    def _write_held(self) -> None:
        view = self._held
        assert view is not None
        if self._fd is not None:
            self._out.flush()
            while view:
                view = self._held = view[os.write(self._fd, view):]
        else:
            self._out.write(view)
            self._out.flush()

    def _failed(self, exc: OSError) -> None:
        n, nbytes = self._held_counts()
        if exc.errno in BROKEN:
            self.delivery.broken("where stdout goes (the reader)", f"stdout cannot be written: {exc.strerror or exc} "
                                 f"({errno.errorcode.get(exc.errno or 0, exc.errno)}: the reader is gone or the "
                                 "descriptor is unusable)", unwritten_records=n, unwritten_bytes=nbytes)
        else:
            self.delivery.report(CONDITIONS.get(exc.errno or 0, WRITE_ERROR), f"{exc.strerror or exc}",
                                 unwritten_records=n, unwritten_bytes=nbytes)

    def _held_counts(self) -> tuple[int, int]:
        held = self._held
        return (self._held_n if held is not None else 0) + len(self._buf), \
            (len(held) if held is not None else 0) + self._size

    # --- metrics ------------------------------------------------------------------------------

    def metrics(self) -> Iterator[Metric]:
        yield from self.delivery.metrics(kinds=("no_space", "io_error", "write_error"), held=self._held_counts(),
                                         confirmed=self.written)
