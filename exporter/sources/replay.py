"""Replay source: watch-envelope JSON lines from a file or stdin.

The format ``kubectl get events -A --watch --output-watch-events -o json`` prints
(one envelope per line, or pretty-printed objects one after another) and
bench/gen_stream.py writes. Used to re-process a capture, to debug a
filter, and for benchmarks: the same pipeline as a live watch, minus the API.
"""
from __future__ import annotations

from typing import BinaryIO

import orjson

from exporter import log, wire
from exporter.pipeline import Pipeline


def run(pipeline: Pipeline, src: BinaryIO, *, stream_key: str = "replay") -> None:
    stream = pipeline.stream(stream_key, None)
    handle = pipeline.handle
    decode = wire.envelope
    stats = pipeline.stats
    pending = b""  # a multi-line (pretty-printed) JSON document being collected
    lineno = 0
    tick, commit = pipeline.tick, pipeline.commit
    for lineno, line in enumerate(src, 1):
        if not lineno & 255:
            tick()
            commit()  # prunes the ledger: memory stays flat however long the input
        if not pending:
            try:
                env = decode(line)
                etype = env.type
                if etype == "ERROR":
                    _error(stats, lineno, env.object)
                else:
                    handle(stream, etype, env.object)
                continue
            except wire.DecodeError:
                if not line.strip():
                    continue
                if line.lstrip().startswith(b"{"):
                    pending = line  # kubectl -o json pretty-prints one document over many lines
                    continue
                _bad(stats, lineno, "not JSON")
                continue
            except wire.ValidationError:
                doc = line
        else:
            pending += line
            try:
                orjson.loads(pending)
            except orjson.JSONDecodeError:
                if len(pending) > 64 << 20:
                    _bad(stats, lineno, "document over 64 MiB")
                    pending = b""
                continue
            doc, pending = pending, b""
        _slow_path(stream, handle, stats, lineno, doc)
    if pending:
        _bad(stats, lineno, "truncated JSON at end of input")
    pipeline.flush()
    commit()


def _slow_path(stream, handle, stats, lineno: int, raw: bytes) -> None:
    """A line the typed decoder refused: odd value types, a bare Event, or not an envelope at all."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        _bad(stats, lineno, "not JSON")
        return
    if not isinstance(doc, dict):
        _bad(stats, lineno, "not a JSON object")
        return
    obj, etype = doc.get("object"), doc.get("type")
    if not isinstance(obj, dict):
        if doc.get("kind") == "Event" and isinstance(doc.get("metadata"), dict):  # a bare Event (no watch envelope)
            obj, etype = doc, "ADDED"
        else:
            _bad(stats, lineno, "no 'object' in the envelope")
            return
    if not isinstance(etype, str):
        _bad(stats, lineno, "no 'type' in the envelope")
        return
    try:
        ev = wire.lenient(obj, wire.Event)
    except wire.ValidationError as exc:
        _bad(stats, lineno, f"unusable object: {exc}")
        return
    if etype == "ERROR":
        _error(stats, lineno, ev)
    else:
        handle(stream, etype, ev)


def _error(stats, lineno: int, obj) -> None:
    stats.error("replay", "watch_error_envelope")
    log.warning("replay_error_envelope", line=lineno, code=obj.code, status=str(obj.message)[:200])


def _bad(stats, lineno: int, why: str) -> None:
    stats.decode_errors += 1
    if stats.decode_errors <= 10 or stats.decode_errors % 1000 == 0:
        log.warning("replay_line_skipped", line=lineno, reason=why, total=stats.decode_errors)
