"""The watch loop's edge cases, against a scripted HTTP server speaking the apiserver's protocol.

The real apiserver is in tests/integration; here each answer is chosen by the
test, so the rare ones (429 with Retry-After, an in-stream 410, a silent
connection, garbage lines) happen on demand and fast.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from exporter.kube.client import KubeClient
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.settings import KubernetesSettings
from exporter.sources.kubernetes import WatchSource


def event(rv, name="e"):
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event", "reason": "R", "type": "Normal", "note": name,
            "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": str(rv)}}


class Script:
    """Answers, in order, to each request; every request is recorded."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests: list[dict] = []
        self.done = threading.Event()

    def next(self, query):
        self.requests.append(query)
        if not self.answers:
            self.done.set()
            return ("hang", None)
        return self.answers.pop(0)


@pytest.fixture
def server():
    holder = {}

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):  # noqa: N802
            q = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            kind, payload = holder["script"].next(q)
            if kind == "json":
                status, body, headers = payload
                raw = json.dumps(body).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            elif kind == "stream":  # lines, then the server closes the watch
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in payload:
                    data = (line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
            elif kind == "silent":  # headers, then nothing at all
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                time.sleep(payload)
            else:  # hang until the test ends
                time.sleep(1.5)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    holder["url"] = f"http://127.0.0.1:{srv.server_address[1]}"
    yield holder
    srv.shutdown()


class Sink:
    name = "mem"

    def __init__(self):
        self.records, self.last = [], 0

    def send(self, seq, line, record):
        self.records.append(record)
        self.last = seq

    def flush(self):
        pass

    def acked(self):
        return self.last

    def close(self, timeout):
        pass


def run_source(server, tmp_path, answers, start_rv=None, **settings):
    script = holder_script = Script(answers)
    server["script"] = holder_script
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                              "clusters": [{"name": "c", "cluster": {"server": server["url"]}}],
                              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                              "users": [{"name": "u", "user": {"token": "t"}}]}))
    s = KubernetesSettings(**{"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.05,
                              "inactivity_timeout_seconds": 1.0,
                              "watch_list": "false", **settings})
    sink, stats = Sink(), Stats()
    pipe = Pipeline([sink], stats=stats, live=False)
    stop = threading.Event()
    src = WatchSource(KubeClient(kubeconfig=str(kc)), pipe, s, pipe.stream("k", start_rv), None, stop)
    t = threading.Thread(target=src.run, daemon=True)
    t.start()
    script.done.wait(15)
    stop.set()
    t.join(10)
    return script, sink, stats, pipe, src


LIST = ("json", (200, {"kind": "EventList", "metadata": {"resourceVersion": "10"},
                       "items": [event(5, "a"), event(7, "b")]}, {}))


def test_list_then_watch_from_the_list_rv_with_bookmarks(server, tmp_path):
    script, sink, stats, pipe, _ = run_source(server, tmp_path, [
        LIST,
        ("stream", [{"type": "ADDED", "object": event(11, "c")},
                    {"type": "BOOKMARK", "object": {"kind": "Event", "apiVersion": "events.k8s.io/v1",
                                                    "metadata": {"resourceVersion": "15"}}}]),
    ])
    assert [r["event"]["name"] for r in sink.records] == ["a", "b", "c"]
    assert "watch" not in script.requests[0] and script.requests[1]["resourceVersion"] == "10"
    assert script.requests[1]["allowWatchBookmarks"] == "true"
    assert script.requests[2]["resourceVersion"] == "15"  # a routine close resumes from the bookmark
    assert pipe.commit() == {"k": "15"}


def test_in_stream_410_relists_and_skips_what_was_already_delivered(server, tmp_path):
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    script, sink, stats, pipe, _ = run_source(server, tmp_path, [
        ("stream", [{"type": "ADDED", "object": event(21, "x")}, gone]),
        ("json", (200, {"metadata": {"resourceVersion": "30"},
                        "items": [event(21, "x"), event(25, "y"), event(3, "old")]}, {})),
    ], start_rv="20")
    assert [r["event"]["name"] for r in sink.records] == ["x", "y"]
    assert stats.relists == 1 and stats.gaps == 1 and stats.relist_deduplicated == 2
    assert script.requests[2]["resourceVersion"] == "30"


def test_http_410_on_the_watch_relists_too(server, tmp_path):
    script, sink, stats, _, _ = run_source(server, tmp_path, [
        ("json", (410, {"kind": "Status", "code": 410, "reason": "Expired"}, {})),
        ("json", (200, {"metadata": {"resourceVersion": "40"}, "items": [event(35, "z")]}, {})),
    ], start_rv="20")
    assert [r["event"]["name"] for r in sink.records] == ["z"] and stats.relists == 1


def test_429_retry_after_is_honoured_and_the_same_rv_is_retried(server, tmp_path):
    t0 = time.monotonic()
    script, sink, stats, _, _ = run_source(server, tmp_path, [
        ("json", (429, {"kind": "Status", "code": 429, "details": {"retryAfterSeconds": 1}}, {"Retry-After": "1"})),
        ("json", (500, {"kind": "Status", "code": 500, "message": "etcd blip"}, {})),
        ("stream", [{"type": "ADDED", "object": event(21, "ok")}]),
    ], start_rv="20")
    assert time.monotonic() - t0 >= 1.0
    assert [q["resourceVersion"] for q in script.requests[:3]] == ["20", "20", "20"]
    assert [r["event"]["name"] for r in sink.records] == ["ok"]
    assert stats.errors[("kubernetes", "http_429")] == 1 and stats.errors[("kubernetes", "http_500")] == 1


def test_a_silent_connection_is_dropped_after_the_inactivity_timeout(server, tmp_path):
    script, sink, stats, _, _ = run_source(server, tmp_path, [
        ("silent", 3),
        ("stream", [{"type": "ADDED", "object": event(21, "after")}]),
    ], start_rv="20", inactivity_timeout_seconds=0.5)
    assert stats.watch_restarts.get("inactivity", 0) >= 1
    assert [r["event"]["name"] for r in sink.records] == ["after"]


def test_garbage_and_odd_lines_in_the_stream_are_counted_not_fatal(server, tmp_path):
    odd = event(22, "odd")
    odd["deprecatedCount"] = "many"
    script, sink, stats, _, src = run_source(server, tmp_path, [
        ("stream", [b"{not json", {"type": "ADDED", "object": odd}, {"type": "ADDED", "object": event(23, "fine")}]),
    ], start_rv="20")
    assert [r["event"]["name"] for r in sink.records] == ["odd", "fine"]
    assert stats.decode_errors == 1 and src.fatal is None


def test_forbidden_at_start_is_fatal_for_the_source(server, tmp_path):
    script, sink, stats, _, src = run_source(server, tmp_path, [
        ("json", (403, {"kind": "Status", "code": 403, "message": "events is forbidden"}, {})),
    ])
    assert src.fatal is not None and getattr(src.fatal, "status", None) == 403


def test_watch_list_falls_back_to_list_when_the_server_refuses_it(server, tmp_path):
    script, sink, stats, _, src = run_source(server, tmp_path, [
        ("json", (422, {"kind": "Status", "code": 422, "message": "sendInitialEvents unsupported"}, {})),
        LIST,
    ], watch_list="auto")
    assert script.requests[0].get("sendInitialEvents") == "true"
    assert "watch" not in script.requests[1]
    assert [r["event"]["name"] for r in sink.records] == ["a", "b"] and src.watch_list is False


def test_watch_list_initial_state_commits_at_the_end_bookmark(server, tmp_path):
    end = {"type": "BOOKMARK", "object": {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {
        "resourceVersion": "50", "annotations": {"k8s.io/initial-events-end": "true"}}}}
    script, sink, stats, pipe, _ = run_source(server, tmp_path, [
        ("stream", [{"type": "ADDED", "object": event(44, "p")}, {"type": "ADDED", "object": event(41, "q")}, end,
                    {"type": "ADDED", "object": event(51, "r")}]),
    ], watch_list="true")
    assert [r["event"]["name"] for r in sink.records] == ["p", "q", "r"]
    assert script.requests[1]["resourceVersion"] == "51"
    assert pipe.commit() == {"k": "51"}


# --- one input rule, live and replay alike (docs/records.md, "Input") ---------------------------------

ODD_LINES = [
    b'{"type":"ADDED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"uid":"p","resourceVersion":"30"}}}',
    json.dumps({"type": "ADDED", "object": dict(event(31, "typed"), deprecatedCount="7", type=3)}).encode(),
    b'{"type":"ADDED","object":{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"uid":"big",'
    b'"resourceVersion":"32"},"deprecatedCount":18446744073709551616}}',
    b'{"type":"ADDED","object":{"kind":"Event","apiVersion":"events.k8s.io/v1","metadata":{"uid":"deep",'
    b'"resourceVersion":"33"},"note":' + b"[" * 1000 + b"]" * 1000 + b"}}",
    b'{"type":"ADDED","object":{"kind":"Event","apiVersion":"events.k8s.io/v1","reason":"no-metadata"}}',
    b"{not json",
    json.dumps({"type": "ADDED", "object": dict(event(35, "fine"), deprecatedLastTimestamp="yesterday")}).encode(),
]


def test_the_watch_and_replay_make_the_same_records_of_the_same_odd_lines(server, tmp_path):
    import io

    from exporter.sources import replay
    script, sink, stats, _, src = run_source(server, tmp_path, [("stream", ODD_LINES)], start_rv="20")
    replayed = Sink()
    rstats = Stats()
    replay.run(Pipeline([replayed], stats=rstats, live=False), io.BytesIO(b"\n".join(ODD_LINES)))
    live = [{k: v for k, v in r.items() if k != "observed_timestamp"} for r in sink.records]
    again = [{k: v for k, v in r.items() if k != "observed_timestamp"} for r in replayed.records]
    assert live == again and src.fatal is None
    assert [r["count"] for r in live] == [1, 2 ** 63 - 1, 1, 1, 1]
    assert live[3]["id"].startswith("hash:") and live[4]["invalid_timestamps"] == {"timestamp": "yesterday"}
    for key in (("input", "not_an_event"), ("input", "value_nulled")):
        assert stats.errors[key] == rstats.errors[key] >= 1, key
    # "{not json" is skipped by both; replay, which also reads pretty-printed documents, names it a
    # document cut short by the next line
    assert stats.errors[("input", "not_json")] == rstats.errors[("input", "document_incomplete")] == 1
    assert stats.decode_errors == rstats.decode_errors == 2


def test_a_403_before_this_stream_was_established_is_fatal_whatever_the_readiness_metric_says(server, tmp_path):
    """Control flow reads the source's own state, not the /readyz flag another stream (or a standby) set."""
    script = Script([("json", (403, {"kind": "Status", "code": 403, "message": "events is forbidden"}, {}))])
    server["script"] = script
    kc = tmp_path / "kc"
    kc.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                              "clusters": [{"name": "c", "cluster": {"server": server["url"]}}],
                              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                              "users": [{"name": "u", "user": {"token": "t"}}]}))
    stats = Stats()
    stats.ready = True  # e.g. another namespace's stream is already listed
    pipe = Pipeline([Sink()], stats=stats, live=False)
    src = WatchSource(KubeClient(kubeconfig=str(kc)), pipe, KubernetesSettings(watch_list="false"),
                      pipe.stream("k", None), "team-b", threading.Event())
    t = threading.Thread(target=src.run, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and getattr(src.fatal, "status", None) == 403


def test_a_relist_after_410_skips_what_the_watch_list_already_delivered(server, tmp_path):
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}}
    end = {"type": "BOOKMARK", "object": {"kind": "Event", "apiVersion": "events.k8s.io/v1", "metadata": {
        "resourceVersion": "60", "annotations": {"k8s.io/initial-events-end": "true"}}}}
    script, sink, stats, pipe, _ = run_source(server, tmp_path, [
        ("stream", [{"type": "ADDED", "object": event(51, "seen")}, gone]),
        ("stream", [{"type": "ADDED", "object": event(51, "seen")}, {"type": "ADDED", "object": event(55, "new")},
                    end]),
    ], start_rv="50", watch_list="true")
    assert [r["event"]["name"] for r in sink.records] == ["seen", "new"]
    assert stats.relist_deduplicated == 1 and pipe.streams["k"].initial is False
