"""Replay source: watch envelopes from a file or stdin (a capture, or a pipe from kubectl).

Used to re-process a capture, to debug a filter, and for benchmarks: the same
pipeline as a live watch, minus the API (bench/gen_stream.py writes such input). The input is one JSON document per
line (the apiserver's watch stream), or pretty-printed documents one after
another, indented (``kubectl get events -w --output-watch-events -o json``, jq). What is
accepted, and what is reported and skipped, is the rule of docs/records.md
("Input"), the same as the live watch's: every line goes through
:func:`exporter.wire.decode_line`.

Linear in the input, whatever it holds: lines are read by the buffered reader's
C code; a multi-line document is collected with a brace count (each line scanned
once, the document decoded once when its braces balance); nothing is held
beyond MAX_DOCUMENT_BYTES.

Prompt from a pipe, batched from a file: before a read that would block (nothing
more is readable now) the sinks are flushed, so a record leaves as soon as its
line has arrived and the input pauses; a file or a fast pipe is read in big
chunks and written in big batches.
"""
from __future__ import annotations

import io
import os
import re
import select
from collections.abc import Callable
from functools import partial
from typing import Any, BinaryIO

from exporter import log
from exporter.pipeline import Pipeline, Stream
from exporter.wire import BadInput, Envelope, decode_line

#: Largest line or document kept: 10x etcd's default request limit (1.5 MiB), so no real Event is near it.
MAX_DOCUMENT_BYTES = 16 << 20
#: Read buffer: few system calls for a file, little memory.
CHUNK_BYTES = 256 << 10
#: Exit code of a replay that delivered every record it could but skipped some input (each one logged).
EXIT_SKIPPED = 4

_TOKEN = re.compile(rb'\\.|["{}]')  # what a brace count must see: escapes, quotes, braces


class _TooLong(bytes):
    """Stands for a line over MAX_DOCUMENT_BYTES (its bytes were not kept)."""


_TOO_LONG = _TooLong()


class _Document:
    """A pretty-printed JSON document being collected; braces are counted outside strings."""

    __slots__ = ("first", "parts", "size", "depth", "in_str", "over")

    def __init__(self, first: int) -> None:
        self.first = first
        self.parts: list[bytes] = []
        self.size = 0
        self.depth = 0
        self.in_str = False
        self.over = False

    def add(self, line: bytes) -> bool:
        """Take one more line; True when the document's braces balance (it is complete)."""
        depth, in_str = self.depth, self.in_str
        for tok in _TOKEN.findall(line):
            if in_str:
                if tok == b'"':
                    in_str = False
            elif tok == b'"':
                in_str = True
            elif tok == b"{":
                depth += 1
            elif tok == b"}":
                depth -= 1
        self.depth, self.in_str = depth, in_str
        self.size += len(line)
        if not self.over:
            if self.size > MAX_DOCUMENT_BYTES or type(line) is _TooLong:
                self.over, self.parts = True, []
            else:
                self.parts.append(line)
        return depth <= 0

    def text(self) -> bytes:
        return b"".join(self.parts)  # each line kept its newline


class _PromptRaw(io.RawIOBase):
    """A file descriptor that flushes the sinks before a read that would block, and restamps after it.

    Wrapped in a BufferedReader, so lines are found by C code (memchr); this
    runs only when the buffer is empty, once per CHUNK_BYTES at most.
    """

    def __init__(self, fd: int, idle: Callable[[], None], woke: Callable[[], None]) -> None:
        super().__init__()
        self._fd = fd
        self._idle = idle
        self._woke = woke
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._poll.poll(0):
            return os.readv(self._fd, (b,))  # straight into the reader's buffer: no copy
        self._idle()  # nothing waiting: what has arrived leaves now, then wait
        n = os.readv(self._fd, (b,))
        self._woke()
        return n


def _reader(src: BinaryIO, idle: Callable[[], None], woke: Callable[[], None]) -> BinaryIO:
    """``src`` read through _PromptRaw when it has a file descriptor (a pipe, a file, a tty)."""
    try:
        fd = src.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return src  # in memory: never blocks
    return io.BufferedReader(_PromptRaw(fd, idle, woke), CHUNK_BYTES)


def _rest_of_line(read: Callable[[int], bytes], head: bytes) -> bytes:
    """``head`` was cut at the read limit: skip to the end of its line; the line comes back as _TOO_LONG."""
    while head and not head.endswith(b"\n"):
        head = read(CHUNK_BYTES)
    return _TOO_LONG


class _Replay:
    """One replay: a stream in the pipeline, a line count, and the document being collected."""

    def __init__(self, pipeline: Pipeline, stream: Stream) -> None:
        self.pipeline = pipeline
        self.stream = stream
        self.stats = pipeline.stats

    def skip(self, kind: str, detail: str, line: int, last_line: int | None = None) -> None:
        """Input that cannot be an envelope: counted (kee_decode_errors, kee_errors) and logged with its line."""
        self.stats.decode_errors += 1
        where: dict[str, Any] = {"line": line} if last_line is None or last_line == line else \
            {"line": line, "last_line": last_line}
        self.pipeline.report("replay_input_skipped", "input", kind, detail=detail, **where)

    def nulled(self, paths: tuple[str, ...], line: int) -> None:
        self.pipeline.report("replay_values_nulled", "input", "value_nulled", line=line, paths=list(paths[:20]))

    def emit(self, env: Envelope, line: int) -> None:
        if env.type == "ERROR":
            obj = env.object
            self.pipeline.report("replay_error_envelope", "replay", "watch_error_envelope", line=line,
                                 code=obj.code, status=str(obj.message)[:200])
        else:
            self.pipeline.handle(self.stream, env.type, env.object)

    def decode(self, text: bytes, line: int, last_line: int | None = None) -> None:
        try:
            env, nulled = decode_line(text)
        except BadInput as exc:
            self.skip(exc.kind, exc.detail, line, last_line)
            return
        if nulled:
            self.nulled(nulled, line)
        self.emit(env, line)

    def refused(self, text: bytes, exc: BadInput, line: int) -> _Document | None:
        """A line decode_line refused: blank, too long, the start of a pretty-printed document, or bad."""
        if type(text) is _TooLong:
            self.skip("line_too_long", f"a line over {MAX_DOCUMENT_BYTES} bytes", line)
        elif exc.kind == "not_json" and text.lstrip().startswith(b"{"):
            doc = _Document(line)
            if not doc.add(text):
                return doc  # kubectl -o json pretty-prints one document over many lines
            self.skip(exc.kind, exc.detail, line)
        elif text.strip():
            self.skip(exc.kind, exc.detail, line)
        return None

    def more(self, doc: _Document, text: bytes, line: int) -> _Document | None:
        """One more line of a multi-line document; None once it is complete (or given up)."""
        if text[:1] == b"{":
            # Inside an indented document no line starts at column 0 with "{": a document that
            # starts here means the one being collected was cut short.
            if text.rstrip() == b"{":
                self.skip("document_incomplete", "a document cut short by the next one", doc.first, line - 1)
                doc = _Document(line)
                doc.add(text)
                return doc
            try:
                env, nulled = decode_line(text)
            except BadInput as exc:
                if exc.kind != "not_json":
                    self.skip("document_incomplete", "a document cut short by the next one", doc.first, line - 1)
                    self.skip(exc.kind, exc.detail, line)
                    return None
            else:
                self.skip("document_incomplete", "a document cut short by the next one", doc.first, line - 1)
                if nulled:
                    self.nulled(nulled, line)
                self.emit(env, line)
                return None
        if not doc.add(text):
            return doc
        if doc.over:
            self.skip("document_too_large", f"a document over {MAX_DOCUMENT_BYTES} bytes", doc.first, line)
        else:
            self.decode(doc.text(), doc.first, line)
        return None


def run(pipeline: Pipeline, src: BinaryIO, *, stream_key: str = "replay") -> int:
    """Replay every envelope of ``src`` through ``pipeline``; returns how many inputs were skipped."""
    stream = pipeline.stream(stream_key, None)
    r = _Replay(pipeline, stream)
    stats = pipeline.stats
    skipped_before = stats.decode_errors + stats.unknown_envelopes
    handle, tick, commit, decode = pipeline.handle, pipeline.tick, pipeline.commit, decode_line

    def idle() -> None:  # the next read would block: what has arrived leaves now
        pipeline.flush()
        commit()

    reader = _reader(src, idle, tick)
    limit = MAX_DOCUMENT_BYTES + 1  # a line this long without its newline is over the bound
    readline = reader.readline
    lineno = 0
    doc: _Document | None = None
    for line in iter(partial(readline, limit), b""):
        lineno += 1
        if not lineno & 255:
            tick()
            commit()  # prunes the ledger: memory stays flat however long the input
        if len(line) == limit and line[-1:] != b"\n":
            line = _rest_of_line(reader.readline, line)
        if doc is None:
            try:
                env, nulled = decode(line)
            except BadInput as exc:
                doc = r.refused(line, exc, lineno)
                continue
            if nulled:
                r.nulled(nulled, lineno)
            etype = env.type
            if etype == "ERROR":
                r.emit(env, lineno)
            else:
                handle(stream, etype, env.object)
        else:
            doc = r.more(doc, line, lineno)
    if doc is not None:
        r.skip("document_truncated", "end of input inside a document", doc.first, lineno)
    pipeline.flush()
    commit()
    skipped = stats.decode_errors + stats.unknown_envelopes - skipped_before
    if skipped:
        log.warning("replay_input_skipped_total", skipped=skipped, lines=lineno,
                    consequence=f"every other record was delivered; exit code {EXIT_SKIPPED}")
    return skipped
