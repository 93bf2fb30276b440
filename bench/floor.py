#!/usr/bin/env python3
"""The floor: the least CPU any Python consumer of a watch stream can spend.

For each line: parse it with orjson, and for every envelope that carries an
Event (not a BOOKMARK) write one small JSON line (the Event's metadata). An
exporter does at least that much, so the exporter's CPU seconds divided by this
script's on the same file is its overhead ratio; both run side by side,
alternating, so the ratio survives a noisy machine (bench/replay.py).

    python3 bench/floor.py stream.jsonl > /dev/null      (or the stream on stdin)
"""
from __future__ import annotations

import sys

import orjson


def main() -> None:
    src = open(sys.argv[1], "rb") if len(sys.argv) > 1 else sys.stdin.buffer  # noqa: SIM115 - process lifetime
    write = sys.stdout.buffer.write
    loads, dumps = orjson.loads, orjson.dumps
    for line in src:
        envelope = loads(line)
        if envelope["type"] == "BOOKMARK":
            continue
        write(dumps(envelope["object"]["metadata"]) + b"\n")


if __name__ == "__main__":
    main()
