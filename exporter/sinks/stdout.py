"""Stdout sink: JSON lines for Promtail/Alloy/Fluent Bit to ship into Loki or Elasticsearch.

A record is acknowledged once it is written and flushed to the file descriptor
(the pipe to the container runtime's log file). Records are buffered and written
in bursts, flushed when the buffer is full or the source is about to wait.
"""
from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO


class StdoutSink:
    name = "stdout"

    def __init__(self, out: BinaryIO | None = None, buffer_bytes: int = 65536) -> None:
        self._out = out if out is not None else sys.stdout.buffer
        try:
            self._fd = self._out.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None
        self._buf: list[bytes] = []
        self._size = 0
        self._limit = buffer_bytes
        self._last_seq = 0
        self._acked = 0
        self.written = 0
        self.failed = 0

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        self._buf.append(line)
        self._last_seq = seq
        self._size += len(line)
        if self._size >= self._limit:
            self.flush()

    def flush(self) -> None:
        if self._buf:
            data = b"".join(self._buf)
            n = len(self._buf)
            self._buf.clear()
            self._size = 0
            self._write(data)
            self.written += n
        self._acked = self._last_seq

    def _write(self, data: bytes) -> None:
        if self._fd is not None:
            self._out.flush()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        else:
            self._out.write(data)
            self._out.flush()

    def acked(self) -> int:
        return self._acked

    def close(self, timeout: float) -> None:
        self.flush()

    def metrics(self):
        yield ("kee_records_emitted", "counter", "records confirmed by a sink", {"sink": self.name}, self.written)
