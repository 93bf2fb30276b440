"""Benchmark: CPU per Event of an enabled webhook sink (grouping, folding, rate limit) on replay, vs stdout alone.

    python -m bench.webhook [-n 100000] [--runs 3]

The same cached gen_stream.py stream is replayed alternately with stdout alone and with
stdout plus one generic webhook posting to a local receiver (a thread of this process,
127.0.0.1) with the default filter (type!=Normal), grouping and window; the difference in
the exporter's own CPU (user+sys from /usr/bin/time) divided by the records is the cost.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench.common import REPO, count_lines, exporter_argv, log, median, run_measured, stream, wait_venv
from bench.replay import _check, replay_done


def _receiver() -> tuple[ThreadingHTTPServer, list[int]]:
    got: list[int] = []

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(len(self.rfile.read(int(self.headers.get("Content-Length") or 0))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, got


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    wait_venv()
    src = stream(a.n)
    n = count_lines(src)
    srv, got = _receiver()
    hook = [{"name": "bench", "preset": "generic", "url": f"http://127.0.0.1:{srv.server_address[1]}/hook"}]
    variants = {"stdout": exporter_argv("replay", str(src)),
                "stdout+webhook": exporter_argv("replay", str(src), "--set", f"sinks.webhook={json.dumps(hook)}")}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(a.runs):
        for name in (list(variants) if i % 2 == 0 else list(reversed(variants))):
            r = run_measured(variants[name], cwd=REPO)
            _check(r, name)
            done = replay_done(r.stderr)
            cpu[name].append(r.cpu)
            wall[name].append(r.wall)
            log(f"{name}: cpu {r.cpu:.2f}s wall {r.wall:.2f}s occurrences {done.get('occurrences')}")
    srv.shutdown()
    base, hooked = median(cpu["stdout"]), median(cpu["stdout+webhook"])
    out = {"lines": n, "runs": a.runs, "cpu_seconds_median": {"stdout": base, "stdout+webhook": hooked},
           "wall_seconds_median": {k: median(v) for k, v in wall.items()},
           "us_per_event": {"stdout": base / n * 1e6, "stdout+webhook": hooked / n * 1e6,
                            "webhook_added": (hooked - base) / n * 1e6},
           "messages_posted_total": len(got)}
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
