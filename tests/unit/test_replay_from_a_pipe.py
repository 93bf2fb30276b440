"""`replay -` from a live pipe: each record leaves as soon as its line arrived and the input pauses; a fast
input is still written in batches (the README's `kubectl get events -w ... | kube-event-exporter replay -`)."""
from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.sources import replay

ROOT = Path(__file__).parents[2]


def line(i: int) -> bytes:
    obj = {"kind": "Event", "apiVersion": "v1", "reason": "X",
           "metadata": {"uid": f"u{i}", "resourceVersion": str(i + 1)}}
    return orjson.dumps({"type": "ADDED", "object": obj}) + b"\n"


def read_line(fd: int, buf: bytearray, timeout: float) -> bytes | None:
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        buf.extend(chunk)
    i = buf.index(b"\n")
    out = bytes(buf[:i])
    del buf[:i + 1]
    return out


def test_each_record_leaves_within_100_ms_of_its_line_while_the_pipe_stays_open():
    p = subprocess.Popen([sys.executable, "-m", "exporter", "replay", "-"], cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        buf = bytearray()
        fd = p.stdout.fileno()
        p.stdin.write(line(0))
        p.stdin.flush()
        assert read_line(fd, buf, 30) is not None, "the first record never came (held in a buffer?)"
        latencies = []
        for i in range(1, 6):
            time.sleep(0.2)  # the input pauses, the pipe stays open
            t0 = time.monotonic()
            p.stdin.write(line(i))
            p.stdin.flush()
            got = read_line(fd, buf, 5)
            assert got is not None, f"record {i} held while the input paused"
            latencies.append(time.monotonic() - t0)
            assert orjson.loads(got)["event"]["uid"] == f"u{i}"
        assert statistics.median(latencies) < 0.1, latencies
        p.stdin.close()
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


class Counting:
    """A sink that notes each send and each flush, with the time."""
    name = "counting"

    def __init__(self):
        self.sent: list[float] = []
        self.flushed: list[tuple[float, int]] = []  # (time, records sent so far)

    def send(self, seq, data, record):
        self.sent.append(time.monotonic())

    def flush(self):
        self.flushed.append((time.monotonic(), len(self.sent)))

    def acked(self):
        return len(self.sent)

    def close(self, timeout):
        pass


def replay_from_pipe(writer) -> Counting:
    r, w = os.pipe()
    sink = Counting()
    t = threading.Thread(target=writer, args=(w,), daemon=True)
    t.start()
    with os.fdopen(r, "rb") as src:
        replay.run(Pipeline([sink], stats=Stats(), live=False), src)
    t.join(10)
    return sink


def test_a_fast_input_is_written_in_batches_not_line_by_line():
    data = b"".join(line(i) for i in range(20_000))

    def writer(w: int) -> None:
        with os.fdopen(w, "wb") as out:
            out.write(data)

    sink = replay_from_pipe(writer)
    assert len(sink.sent) == 20_000
    assert len(sink.flushed) < 200, len(sink.flushed)  # ~100 records per flush at the very least


def test_a_pause_in_the_input_flushes_what_arrived_before_waiting():
    written: list[float] = []

    def writer(w: int) -> None:
        with os.fdopen(w, "wb", buffering=0) as out:
            for i in range(3):
                written.append(time.monotonic())
                out.write(line(i))
                time.sleep(0.3)

    sink = replay_from_pipe(writer)
    for i, t in enumerate(written):
        first_flush = next(ft for ft, n in sink.flushed if n >= i + 1)
        assert first_flush - t < 0.1, (i, first_flush - t)
