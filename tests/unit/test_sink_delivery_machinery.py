"""The shared delivery machinery (exporter/sinks/delivery.py, batching.py, base.py, exporter/backoff.py):
one backoff, bounded and interruptible admission, one condition policy, the complete Sink interface, and a
new sink written the way docs/design.md ("Writing a sink") says, in a few lines."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from structlog.testing import capture_logs

from exporter.backoff import RETRY_AFTER_CAP, Backoff
from exporter.errors import SinkFatal
from exporter.sinks.base import Condition, Sink, SinkInterrupted
from exporter.sinks.batching import BatchingSink, DeliveryFailed
from exporter.sinks.delivery import Delivery


def test_backoff_doubles_with_jitter_within_half_and_full_and_is_capped():
    b = Backoff(1.0, 8.0)
    for attempt, full in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (10, 8.0), (100, 8.0)]:
        ds = [b.delay(attempt) for _ in range(200)]
        assert all(full / 2 <= d <= full for d in ds)
        assert max(ds) - min(ds) > full / 10          # jittered, not a fixed delay
    assert b.next() <= 1.0 and b.next() <= 2.0 and b.attempt == 2
    b.reset()
    assert b.attempt == 0


def test_backoff_honours_retry_after_as_a_floor_capped():
    b = Backoff(0.1, 1.0)
    assert b.delay(0, retry_after=7) == 7
    assert b.delay(0, retry_after=10_000) == RETRY_AFTER_CAP


def test_the_watch_the_preflight_and_the_sinks_share_one_backoff():
    import exporter.runner as runner
    import exporter.sources.kubernetes as kube
    assert kube.Backoff is Backoff and runner.Backoff is Backoff


def delivery(**kw: Any) -> Delivery:
    return Delivery("test", max_records=kw.pop("max_records", 2), max_bytes=kw.pop("max_bytes", 100),
                    backoff=Backoff(0.01, 0.02), **kw)


def test_admit_blocks_at_the_bound_until_a_confirmation():
    d = delivery()
    d.admit(1, 10)
    d.admit(2, 10)
    done = threading.Event()
    threading.Thread(target=lambda: (d.admit(3, 10), done.set()), daemon=True).start()
    assert not done.wait(0.3)
    d.confirm(1, 10)
    assert done.wait(1)
    assert d.watermark() == 1 and d.in_flight() == (2, 20)


def test_admit_byte_bound_but_a_lone_large_record_still_goes():
    d = delivery(max_records=100, max_bytes=100)
    d.admit(1, 500)  # nothing held: admitted whatever its size
    done = threading.Event()
    threading.Thread(target=lambda: (d.admit(2, 1), done.set()), daemon=True).start()
    assert not done.wait(0.2)
    d.confirm(1, 500)
    assert done.wait(1)


def test_interrupt_and_fatal_free_a_blocked_admit_at_once():
    for how, exc in (("interrupt", SinkInterrupted), ("broken", SinkFatal)):
        d = delivery(max_records=1)
        d.admit(1, 1)
        got: list[BaseException] = []

        def blocked(d: Delivery = d, got: list[BaseException] = got) -> None:
            try:
                d.admit(2, 1)
            except (SinkInterrupted, SinkFatal) as e:
                got.append(e)
        t = threading.Thread(target=blocked, daemon=True)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        d.interrupt() if how == "interrupt" else d.broken("x", "gone")
        t.join(1)
        assert got and isinstance(got[0], exc) and time.monotonic() - t0 < 0.3
        assert d.watermark() == 0  # nothing acknowledged


def test_a_condition_is_loud_once_then_every_30s_and_counted_each_time():
    d = delivery()
    cond = Condition("auth", "sinks.test.token", "rotate the token")
    with capture_logs() as logs:
        for _ in range(5):
            d.report(cond, "401 for token s3cret")
    loud = [e for e in logs if e["event"] == "sink_condition"]
    assert len(loud) == 1 and loud[0]["setting"] == "sinks.test.token" and loud[0]["fix"] == "rotate the token"
    assert d.stats.errors[("test", "auth")] == 5 and d.fatal is None


def test_the_sink_interface_is_complete_and_enforced():
    assert {"send", "flush", "acked", "fatal", "interrupt", "close", "metrics"} <= Sink.__abstractmethods__

    class Partial(Sink):
        name = "partial"

        def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None: ...
    with pytest.raises(TypeError):
        Partial()  # type: ignore[abstract]


def test_runner_and_app_use_the_interface_without_probing():
    from pathlib import Path
    root = Path(__file__).resolve().parents[2] / "exporter"
    for f in ("runner.py", "app.py"):
        text = (root / f).read_text()
        assert "getattr(sink" not in text and "hasattr(" not in text and 'getattr(s, "' not in text, f


class ListSink(BatchingSink):
    """The docs/design.md example: a sink whose receiver is a list (think: an HTTP endpoint taking JSON lines)."""

    name = "list"

    def __init__(self, fail: int = 0) -> None:
        self.got: list[bytes] = []
        self.fail = fail
        super().__init__(Delivery(self.name, max_records=100, max_bytes=1 << 20, backoff=Backoff(0.01, 0.05)),
                         batch_max_records=10, batch_max_bytes=1 << 20, linger_seconds=0.05)

    def encode(self, seq: int, line: bytes, record: dict[str, Any]) -> bytes:
        return line

    def deliver(self, frames: list[bytes], count: int) -> None:
        if self.fail:
            self.fail -= 1
            raise DeliveryFailed("http_503", "receiver busy", retry_after=None)
        self.got.extend(frames)


def test_a_new_sink_is_a_small_class_with_bounds_retries_acks_and_drain():
    sink = ListSink(fail=3)
    for i in range(1, 26):
        sink.send(i, b'{"n":%d}\n' % i, {})
    sink.close(5)
    assert sink.acked() == 25 and len(sink.got) == 25
    assert sink.failures == {"http_503": 3}
    m = {(n, tuple(lab.items())): v for n, _k, _d, lab, v in sink.metrics()}
    assert m[("kee_records_emitted", (("sink", "list"),))] == 25
    assert m[("kee_sink_retries", (("sink", "list"),))] == 3
