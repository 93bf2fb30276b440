"""The peers benchmark's command line and its counting (bench/peers.py), without any process.

Not a timed test: the lost/duplicated arithmetic and the parsing of each watcher's output are what
the figures in docs/BENCHMARKS.md rest on, so they are checked on hand-made outputs here.
"""
from __future__ import annotations

from collections import Counter

import orjson
import pytest

from bench.__main__ import public_command
from bench.peers import (
    Tally,
    Watcher,
    _json_path,
    klog_event_uid,
    otlp_uids,
    parse_peer_args,
    restart_counts,
    scrub,
)

A, B, C, D = (f"{i}1111111-2222-4333-8444-555566667777" for i in range(4))


def test_peer_paths_from_the_command_line():
    got = parse_peer_args(["resmoio=/opt/r", "kube-eventer=bin/ke", "eventrouter = ./er "])
    assert got == {"resmoio": "/opt/r", "kube-eventer": "bin/ke", "eventrouter": "./er"}
    assert parse_peer_args([]) == {}
    for bad in ("resmoio", "resmoio=", "fluentd=/x"):
        with pytest.raises(ValueError):
            parse_peer_args([bad])


def test_the_stored_command_names_no_path_of_the_machine():
    cmd = public_command(["--only", "peers", "--peer", "resmoio=/srv/a/b", "--peer=eventrouter=/srv/c",
                          "--json", "/srv/out.json", "--peer-rates", "100,max"])
    assert cmd == ("python -m bench --only peers --peer resmoio=PATH --peer eventrouter=PATH --json FILE "
                   "--peer-rates 100,max")
    msg = scrub("open /srv/x/peer: permission denied")
    assert "/srv" not in msg and "permission denied" in msg


def test_uids_read_from_each_watchers_output():
    assert _json_path("event", "uid")(orjson.dumps({"event": {"uid": A}})) == [A]           # ours
    assert _json_path("metadata", "uid")(orjson.dumps({"metadata": {"uid": B}})) == [B]     # resmoio
    assert _json_path("event", "metadata", "uid")(b'{"verb":"ADDED","event":{"metadata":{"uid":"%s"}}}'
                                                  % C.encode()) == [C]                     # eventrouter
    assert _json_path("event", "uid")(b'{"level":"warning"}') == [] == _json_path("a")(b"not json")
    # kube-eventer: the Event's own uid comes before the involvedObject's (the benchmark's fixed prefix)
    line = (b"&Event{ObjectMeta:{bench-1  ns-1  /api/v1/x " + D.encode() + b" 123 0 2026-12-02} "
            b"InvolvedObject:{Pod ns-1 bench-pod-3 00000000-0000-4000-8000-000000000003 v1  } Reason:BenchPeers")
    assert klog_event_uid(line) == [D]
    assert klog_event_uid(b"I1202 04:00:00 EventBatch     Timestamp: 2026-12-02") == []
    req = {"resourceLogs": [{"scopeLogs": [{"logRecords": [
        {"attributes": [{"key": "k8s.event.uid", "value": {"stringValue": A}}]},
        {"attributes": [{"key": "k8s.event.name", "value": {"stringValue": "x"}},
                        {"key": "k8s.event.uid", "value": {"stringValue": B}}]}]}]}]}
    assert otlp_uids(orjson.dumps(req)) == [A, B]


def test_partial_lines_wait_for_their_end(tmp_path):
    out = tmp_path / "out.jsonl"
    w = Watcher("w", out, _json_path("event", "uid"), tmp_path)
    out.write_bytes(orjson.dumps({"event": {"uid": A}}) + b"\n" + b'{"event": {"ui')
    w.poll_output(1.0)
    assert dict(w.tally.count) == {A: 1}
    with open(out, "ab") as f:
        f.write(b'd": "%s"}}\n' % B.encode() + orjson.dumps({"event": {"uid": A}}) + b"\n")
    w.poll_output(2.0)
    assert dict(w.tally.count) == {A: 2, B: 1} and w.tally.first == {A: 1.0, B: 2.0}


def test_lost_duplicated_and_re_emitted_after_a_restart():
    t = Tally()
    t.add([A, B], 0.0)               # earlier phases
    before = t.snapshot()
    t.add([C], 1.0)                  # the test's first Event, before the kill
    t.add([A, C], 2.0)               # after the restart: A again (earlier), C again (duplicate); D never
    got = restart_counts(before, t.snapshot(), [C, D])
    assert got == {"created": 2, "lost": 1, "duplicated": 1, "re_emitted_earlier": 1}
    assert restart_counts(Counter(), Counter({C: 1, D: 1}), [C, D]) == {
        "created": 2, "lost": 0, "duplicated": 0, "re_emitted_earlier": 0}
