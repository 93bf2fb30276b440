"""The stdout sink never acknowledges a line it failed to write (issue 10): a closed pipe, /dev/full, an I/O
error; the checkpoint (pipeline.commit) stays before the unwritten lines, and the failure is reported.

Real file descriptors (a pipe whose reader is closed, the kernel's /dev/full), no mocks of os.write.
"""
from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from exporter import wire
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.sinks.base import SinkInterrupted
from exporter.sinks.stdout import StdoutSink

ROOT = Path(__file__).resolve().parents[2]


def ev(rv: int):
    return wire.event({"apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "BackOff",
                       "message": "x" * 200, "metadata": {"uid": f"u{rv}", "resourceVersion": str(rv),
                                                           "namespace": "ns"}})


def metric(s, name, **labels):
    for n, _kind, _doc, lab, value in s.metrics():
        if n == name and all(lab.get(k) == v for k, v in labels.items()):
            return value
    raise KeyError(name)


def test_written_lines_are_acknowledged_in_order():
    out = io.BytesIO()
    sink = StdoutSink(out, buffer_bytes=100)
    p = Pipeline([sink], stats=Stats(), live=False)
    s = p.stream("k", "1")
    for rv in range(2, 12):
        p.handle(s, "ADDED", ev(rv))
    p.flush()
    assert p.commit() == {"k": "11"} and out.getvalue().count(b"\n") == 10
    assert metric(sink, "kee_records_emitted", sink="stdout") == 10


def test_closed_pipe_is_fatal_and_the_checkpoint_stays_before_the_unwritten_lines():
    r, w = os.pipe()
    os.close(r)  # the reader is gone: every write is EPIPE
    with os.fdopen(w, "wb") as out:
        sink = StdoutSink(out, buffer_bytes=1 << 20)
        p = Pipeline([sink], stats=Stats(), live=False)
        s = p.stream("k", "1")
        for rv in range(2, 6):
            p.handle(s, "ADDED", ev(rv))
        with capture_logs() as logs, pytest.raises(SinkFatal) as ei:
            p.flush()  # the source is about to wait: the burst is written, and fails
        assert "EPIPE" in str(ei.value)
        assert sink.fatal is not None and sink.acked() == 0
        assert p.commit() == {"k": "1"}          # not moved past a line that never left the process
        assert any(e["event"] == "sink_fatal" and e["sink"] == "stdout" for e in logs)
        with pytest.raises(SinkFatal):
            p.handle(s, "ADDED", ev(6))          # nothing more is taken...
            p.flush()
        with pytest.raises(SinkFatal):
            sink.close(0.2)                      # ...and the drain reports what was not written
        assert p.commit() == {"k": "1"}
        assert metric(sink, "kee_sink_fatal", sink="stdout") == 1
        assert sink.stats.errors[("stdout", "broken")] == 1


def test_dev_full_is_retried_with_backpressure_never_acknowledged_and_reported_at_close():
    with open("/dev/full", "wb") as out:  # every write: ENOSPC
        sink = StdoutSink(out, buffer_bytes=512)
        p = Pipeline([sink], stats=Stats(), live=False)
        s = p.stream("k", "1")
        errs: list[BaseException] = []

        def source():
            try:
                for rv in range(2, 50):
                    p.handle(s, "ADDED", ev(rv))
            except SinkInterrupted as e:
                errs.append(e)
        with capture_logs() as logs:
            t = threading.Thread(target=source, daemon=True)
            t.start()
            time.sleep(0.5)
            assert t.is_alive()                  # blocked retrying the write: backpressure, not a loss
            assert sink.acked() == 0 and p.commit() == {"k": "1"}
            assert sink.fatal is None            # a full disk may be freed: a condition, not fatal
            assert metric(sink, "kee_sink_condition", condition="no_space") == 1
            assert metric(sink, "kee_sink_retries", sink="stdout") >= 2
            sink.interrupt()                     # SIGTERM
            t.join(2)
            assert not t.is_alive() and errs
            with pytest.raises(SinkFatal):
                sink.close(0.3)
        loud = [e for e in logs if e["event"] == "sink_condition"]
        assert len(loud) == 1 and loud[0]["condition"] == "no_space" and loud[0]["log_level"] == "error"
        assert any(e["event"] == "sink_undelivered_at_close" and e["records"] > 0 for e in logs)
        assert p.commit() == {"k": "1"}


class Flaky(io.RawIOBase):
    """A destination without a file descriptor whose first writes fail with EIO."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.data = b""

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EIO, "Input/output error")
        self.data += bytes(b)
        return len(b)


def test_a_failed_write_is_retried_and_acknowledged_only_once_written_no_loss_no_duplicate():
    out = Flaky(failures=2)
    sink = StdoutSink(out, buffer_bytes=1 << 20)
    p = Pipeline([sink], stats=Stats(), live=False)
    s = p.stream("k", "1")
    for rv in range(2, 8):
        p.handle(s, "ADDED", ev(rv))
    assert sink.acked() == 0
    p.flush()  # fails twice (io_error), then written
    assert p.commit() == {"k": "7"}
    assert out.data.count(b"\n") == 6 and len(set(out.data.splitlines())) == 6
    assert sink.stats.errors[("stdout", "io_error")] == 2


def replay_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", "replay", *args]


def watch_lines(n: int) -> bytes:
    import json
    return b"".join(json.dumps({"type": "ADDED", "object": {
        "apiVersion": "v1", "kind": "Event", "reason": "R", "message": "m" * 300,
        "metadata": {"uid": f"u{i}", "resourceVersion": str(1000 + i)}}}).encode() + b"\n" for i in range(n))


def test_replay_into_a_closed_pipe_exits_1_and_says_so(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(watch_lines(2000))
    r, w = os.pipe()
    os.close(r)
    try:
        res = subprocess.run(replay_argv(str(src)), stdout=w, stderr=subprocess.PIPE, cwd=ROOT, timeout=60)
    finally:
        os.close(w)
    assert res.returncode == 1, res.stderr[-2000:]
    assert b'"sink_fatal"' in res.stderr and b"EPIPE" in res.stderr
    assert b"Traceback" not in res.stderr


def test_replay_to_dev_full_reports_the_condition_and_exits_1_on_sigterm(tmp_path):
    import signal
    src = tmp_path / "in.jsonl"
    src.write_bytes(watch_lines(2000))
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(replay_argv(str(src)), stdout=full, stderr=subprocess.PIPE, cwd=ROOT)
        err = b""
        try:
            deadline = time.monotonic() + 30
            os.set_blocking(proc.stderr.fileno(), False)
            while b'"sink_condition"' not in err and time.monotonic() < deadline:
                err += proc.stderr.read() or b""
                time.sleep(0.1)
            assert b'"no_space"' in err
            assert proc.poll() is None           # held and retried, not exited, not acknowledged
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        os.set_blocking(proc.stderr.fileno(), True)
        err += proc.stderr.read()
    assert proc.returncode == 1, err[-2000:]
    assert b'"sink_undelivered_at_close"' in err and b"Traceback" not in err
