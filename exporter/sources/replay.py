"""Replay source: watch-envelope JSON lines from a file or stdin.

The format ``kubectl get events -A --watch --output-watch-events -o json`` prints
(one envelope per line, or pretty-printed objects one after another) and
../shared/bench/gen_stream.py writes. Used to re-process a capture, to debug a
filter, and for benchmarks: the same pipeline as a live watch, minus the API.
"""
from __future__ import annotations

from typing import BinaryIO

import orjson

from exporter import log
from exporter.pipeline import Pipeline


def run(pipeline: Pipeline, src: BinaryIO, *, stream_key: str = "replay") -> None:
    stream = pipeline.stream(stream_key, None)
    handle = pipeline.handle
    loads = orjson.loads
    stats = pipeline.stats
    pending = b""  # a multi-line (pretty-printed) JSON document being collected
    for lineno, line in enumerate(src, 1):
        if pending:
            pending += line
            try:
                env = loads(pending)
            except orjson.JSONDecodeError:
                if len(pending) > 64 << 20:
                    _bad(stats, lineno, "document over 64 MiB")
                    pending = b""
                continue
            pending = b""
        else:
            try:
                env = loads(line)
            except orjson.JSONDecodeError:
                if line.strip() in (b"", b"\n"):
                    continue
                if line.lstrip().startswith(b"{"):
                    pending = line  # kubectl -o json without --output-watch-events pretty-prints
                    continue
                _bad(stats, lineno, "not JSON")
                continue
        if type(env) is not dict:
            _bad(stats, lineno, "not a JSON object")
            continue
        obj = env.get("object")
        etype = env.get("type")
        if type(obj) is not dict:
            if env.get("kind") in ("Event",) and "metadata" in env:  # a bare Event (kubectl -o json without watch events)
                obj, etype = env, "ADDED"
            else:
                _bad(stats, lineno, "no 'object' in the envelope")
                continue
        if etype == "ERROR":
            stats.error("replay", "watch_error_envelope")
            log.warning("replay_error_envelope", line=lineno, status=str(obj.get("message"))[:200])
            continue
        handle(stream, etype, obj)
    if pending:
        _bad(stats, lineno, "truncated JSON at end of input")
    pipeline.flush()


def _bad(stats, lineno: int, why: str) -> None:
    stats.decode_errors += 1
    if stats.decode_errors <= 10 or stats.decode_errors % 1000 == 0:
        log.warning("replay_line_skipped", line=lineno, reason=why, total=stats.decode_errors)
