"""The checkpoint is the minimum of what every sink confirmed; filtered and bookmarked positions still count."""
from exporter import wire
from exporter.acks import OrderedAcks
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.transforms.filters import build


class ManualSink:
    """A sink whose confirmations the test gives by hand, in any order."""
    name = "manual"

    def __init__(self):
        self.acks = OrderedAcks()
        self.got = []

    def send(self, seq, line, record):
        self.acks.expect(seq)
        self.got.append(seq)

    def flush(self):
        pass

    def acked(self):
        return self.acks.watermark()

    def close(self, timeout):
        pass


def ev(rv, etype="Warning", reason="BackOff", count=1, uid=None):
    return wire.event({"apiVersion": "v1", "kind": "Event", "type": etype, "reason": reason, "count": count,
                       "metadata": {"uid": uid or f"u{rv}", "resourceVersion": str(rv), "namespace": "ns"}})


def bookmark(rv):
    return wire.event({"kind": "Event", "apiVersion": "v1", "metadata": {"resourceVersion": str(rv)}})


def test_checkpoint_is_the_minimum_over_sinks_and_never_passes_an_unconfirmed_record():
    a, b = ManualSink(), ManualSink()
    p = Pipeline([a, b], stats=Stats(), live=False)
    s = p.stream("k", "100")
    for rv in (101, 102, 103):
        p.handle(s, "ADDED", ev(rv))
    p.handle(s, "BOOKMARK", bookmark(110))
    assert p.commit() == {"k": "100"}
    a.acks.done(1), a.acks.done(2), a.acks.done(3)
    assert p.commit() == {"k": "100"}  # b confirmed nothing yet
    b.acks.done(3)  # out of order
    assert p.commit() == {"k": "100"}
    b.acks.done(1)
    assert p.commit() == {"k": "101"}
    b.acks.done(2)
    assert p.commit() == {"k": "110"}  # the bookmark after record 3 too


def test_filtered_and_deleted_events_advance_the_position_without_reaching_sinks():
    a = ManualSink()
    p = Pipeline([a], stats=Stats(), predicate=build(types=["Warning"]), live=False)
    s = p.stream("k", None)
    p.handle(s, "ADDED", ev(5, etype="Normal"))
    p.handle(s, "DELETED", ev(6))
    assert a.got == [] and p.commit() == {"k": "6"}
    assert p.stats.filtered == 1 and p.stats.deleted == 1


def test_initial_state_commits_only_at_its_end():
    a = ManualSink()
    p = Pipeline([a], stats=Stats(), live=False)
    s = p.stream("k", None)
    p.begin_initial(s)
    p.handle(s, "ADDED", ev(50))
    p.handle(s, "ADDED", ev(20))  # list order is key order, not RV order
    a.acks.done(1), a.acks.done(2)
    assert p.commit() == {"k": None}
    p.end_initial(s, "60")
    assert p.commit() == {"k": "60"}


def test_count_delta_mode_drops_unchanged_updates_and_reports_deltas():
    a = ManualSink()
    sent = []
    a.send = lambda seq, line, rec: sent.append(rec)
    p = Pipeline([a], stats=Stats(), recurring="count_delta", live=False)
    s = p.stream("k", None)
    p.handle(s, "ADDED", ev(1, uid="x", count=1))
    p.handle(s, "MODIFIED", ev(2, uid="x", count=4))
    p.handle(s, "MODIFIED", ev(3, uid="x", count=4))  # e.g. an annotation change
    p.handle(s, "MODIFIED", ev(4, uid="x", count=2))  # recreated: a fresh start
    assert [(r["count"], r["count_delta"]) for r in sent] == [(1, 1), (4, 3), (2, 2)]


def test_closed_pipeline_takes_nothing_more():
    a = ManualSink()
    p = Pipeline([a], stats=Stats(), live=False)
    s = p.stream("k", "1")
    p.close()
    p.handle(s, "ADDED", ev(2))
    assert a.got == [] and p.commit() == {"k": "1"}


def test_a_long_replay_keeps_no_per_record_state():
    import io
    import json

    from exporter.sinks.stdout import StdoutSink
    from exporter.sources import replay
    lines = b"".join(json.dumps({"type": "ADDED", "object": {
        "apiVersion": "v1", "kind": "Event", "reason": "R",
        "metadata": {"uid": f"u{i}", "resourceVersion": str(1000 + i)}}}).encode() + b"\n" for i in range(5000))
    out = io.BytesIO()
    p = Pipeline([StdoutSink(out, buffer_bytes=4096)], stats=Stats(), live=False)
    replay.run(p, io.BytesIO(lines))
    assert out.getvalue().count(b"\n") == 5000
    assert p.streams["replay"].ledger.pending() == 0  # pruned as it went: memory does not grow with input
    assert p.streams["replay"].ledger.committed == "5999"


def test_commit_and_close_do_not_wait_for_a_sink_blocked_by_backpressure():
    import threading
    release = threading.Event()

    class Full(ManualSink):
        def send(self, seq, line, record):
            super().send(seq, line, record)
            release.wait(10)  # a sink at its in-flight bound (e.g. Kafka down)

    sink = Full()
    p = Pipeline([sink], stats=Stats(), live=False)
    s = p.stream("k", "1")
    t = threading.Thread(target=p.handle, args=(s, "ADDED", ev(2)), daemon=True)
    t.start()
    while not sink.got:
        pass
    done = threading.Event()

    def checkpoint_and_close():
        p.commit()
        p.close()
        done.set()
    threading.Thread(target=checkpoint_and_close, daemon=True).start()
    assert done.wait(2), "commit()/close() waited for the blocked sink"
    assert p.commit() == {"k": "1"}  # the blocked record is not confirmed: no progress
    assert p.quiesce(0.2) is False  # the source is still inside send()
    release.set()
    t.join(5)
    assert p.quiesce(0.2) is True  # now flushing cannot race with a send
