"""Where documents the cluster rejected for good go (sinks.elasticsearch.on_rejected=dead_letter).

One JSON line per document: the rejection (id, index, HTTP status, error type
and reason) and the record itself, so it can be fixed and re-indexed. Written to
stdout, stderr or appended to a file, flushed and (for a file) fsynced before
the record is acknowledged: the checkpoint never passes a record that is
neither in the index nor here.
"""
from __future__ import annotations

import os
import sys
import threading

from exporter import wire


class DeadLetter:
    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._file = None
        if target == "stdout":
            self._fd = sys.stdout.fileno()
        elif target == "stderr":
            self._fd = sys.stderr.fileno()
        else:
            self._file = open(target, "ab")  # noqa: SIM115 - kept open for the sink's life
            self._fd = self._file.fileno()

    def write(self, entries: list[tuple[str, str, int, str | None, str | None, bytes]]) -> None:
        """(id, index, status, error type, reason, document JSON) per rejected document; raises OSError."""
        lines = []
        for rec_id, index, status, etype, reason, document in entries:
            head = wire.dumps({"dead_letter": "elasticsearch", "id": rec_id, "index": index, "status": status,
                                 "error_type": etype, "reason": reason})
            lines.append(head[:-1] + b',"document":' + document.rstrip(b"\n") + b"}\n")
        view = memoryview(b"".join(lines))
        with self._lock:
            while view:
                view = view[os.write(self._fd, view):]
            if self._file is not None:
                os.fsync(self._fd)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
