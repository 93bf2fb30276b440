"""Benchmark `watch` (issue 16, goal 2): the live watch path at full speed, without an apiserver's cost.

A local TLS HTTP server (standard library http.server + ssl, a throwaway certificate made
with the openssl CLI in a temporary directory) answers what the exporter asks an apiserver
for on one namespace: the preflight LIST (empty), then the watch. It streams a recorded
watch response - the lines of bench/gen_stream.py's stream, each line one HTTP chunk as the
apiserver sends them (``--watch-group N``: N lines per chunk), ``Transfer-Encoding: chunked`` -
as fast as TLS and the socket take it, into the real ``python -m exporter run --kubeconfig K``
(the whole source code path: kube client, de-chunking, decode, pipeline, stdout sink;
stdout is /dev/null). The exporter uses the streaming initial state (watch-list: the stream
opens with the initial-events-end BOOKMARK) and, once it has seen the last line, opens the
next watch from the last resourceVersion: the server holds that one, which tells the
benchmark the exporter has handled the whole stream.

CPU is the exporter's utime+stime from /proc/PID/stat, read just before the server writes
the first byte of the stream and when the resuming watch arrives (start-up, imports and the
preflight are outside). The floor is bench/floor.py on the same lines, read from the file
(parse each line with orjson, write one small line per Event), its start-up subtracted
(the same command on an empty file). Runs alternate which goes first.

    python -m bench --only watch [--lines 100000] [--runs 5] [--watch-group 1]
    python -m bench.watch serve --stream FILE --cert C --key K [--group N]   (the server alone)
"""
from __future__ import annotations

import argparse
import json
import os
import select
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

NAMESPACE = "bench"
START_RV = "1"
SLICE = 1 << 18  # bytes per sendall of the pre-framed body


# -- the server (its own process: its CPU is not the exporter's) ---------------------------------

def frame(lines: list[bytes], group: int) -> bytes:
    """The chunked body: ``group`` lines per chunk, then the last chunk."""
    out = []
    for i in range(0, len(lines), group):
        data = b"".join(lines[i:i + group])
        out.append(b"%x\r\n%s\r\n" % (len(data), data))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def last_rv(lines: list[bytes]) -> str:
    return str(json.loads(lines[-1])["object"]["metadata"]["resourceVersion"])


def serve(stream: Path, cert: Path, key: Path, group: int = 1, port: int = 0, rate: float = 0.0) -> None:
    """Serve until killed; report on stdout (one JSON line each), wait for `go` on stdin before a stream.

    ``rate`` > 0: chunks are sent paced at that many per second (a live cluster's pace), not at full speed."""
    lines = stream.read_bytes().splitlines(keepends=True)
    end_bookmark = json.dumps({"type": "BOOKMARK", "object": {
        "kind": "Event", "apiVersion": "events.k8s.io/v1",
        "metadata": {"resourceVersion": START_RV, "annotations": {"k8s.io/initial-events-end": "true"}}}},
        separators=(",", ":")).encode() + b"\n"
    initial_body = frame([end_bookmark], 1)[:-5] + frame(lines, group)  # bookmark chunk, then the stream
    plain_body = frame(lines, group)
    event_list = json.dumps({"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                             "metadata": {"resourceVersion": START_RV}, "items": []}).encode()
    out_lock, go_lock = threading.Lock(), threading.Lock()

    def say(**msg) -> None:
        with out_lock:
            sys.stdout.write(json.dumps({"t": time.monotonic(), **msg}) + "\n")
            sys.stdout.flush()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _paced(self, body: bytes) -> None:
            """One chunk at a time, at `rate` chunks per second (open loop)."""
            t0, i, pos = time.monotonic(), 0, 0
            while pos < len(body):
                eol = body.index(b"\r\n", pos)
                end = eol + 2 + int(body[pos:eol], 16) + 2
                delay = t0 + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.wfile.write(body[pos:end])
                pos, i = end, i + 1

        def do_GET(self):  # noqa: N802
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if not url.path.endswith(f"/namespaces/{NAMESPACE}/events"):
                return self._reply(404, b'{"kind":"Status","code":404,"message":"not found"}')
            if q.get("watch") not in ("1", "true"):
                return self._reply(200, event_list)
            rv = q.get("resourceVersion", "")
            if q.get("sendInitialEvents") == "true" or rv in ("", START_RV):
                body = initial_body if q.get("sendInitialEvents") == "true" else plain_body
                with go_lock:  # one stream at a time, each started by the driver
                    say(event="watch", query=q)
                    if not sys.stdin.readline():
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    say(event="streaming")
                    if rate > 0:
                        self._paced(body)
                    else:
                        for i in range(0, len(body), SLICE):
                            self.wfile.write(body[i:i + SLICE])
                    say(event="sent", bytes=len(body))
                return None
            # A watch from a later resourceVersion: the exporter has handled the stream. Hold it open.
            say(event="resumed", resource_version=rv)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                while select.select([self.connection], [], [], 1.0)[0] == [] or self.connection.recv(1):
                    pass
            except OSError:
                pass
            self.close_connection = True
            return None

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    httpd.daemon_threads = True
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    say(event="listening", port=httpd.server_address[1], lines=len(lines), last_rv=last_rv(lines),
        events=sum(1 for ln in lines if b'"type":"BOOKMARK"' not in ln[:40]))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    threading.Event().wait()  # until the driver kills this process


# -- the driver ---------------------------------------------------------------------------------

def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed CA-capable certificate for 127.0.0.1 (openssl CLI; no Python crypto dependency)."""
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-sha256", "-days", "2", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
                    "-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE"],
                   check=True, capture_output=True)
    return cert, key


def kubeconfig(directory: Path, port: int, ca: Path) -> Path:
    path = directory / "kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "bench", "cluster": {"server": f"https://127.0.0.1:{port}",
                                                   "certificate-authority": str(ca)}}],
        "users": [{"name": "bench", "user": {"token": "bench-token"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}]}))
    return path


class Server:
    def __init__(self, stream: Path, directory: Path, group: int, rate: float = 0.0):
        from bench.common import python
        cert, key = make_cert(directory)
        self.ca = cert
        self.p = subprocess.Popen([python(), "-m", "bench.watch", "serve", "--stream", str(stream), "--cert",
                                   str(cert), "--key", str(key), "--group", str(group), "--rate", str(rate)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(Path(__file__).parents[1]))
        self.info = self.expect("listening", 120)

    def expect(self, event: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise RuntimeError(f"watch server: no `{event}` within {timeout} s")
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"watch server exited (rc {self.p.poll()}) waiting for `{event}`")
            msg = json.loads(line)
            if msg["event"] == event:
                return msg

    def go(self) -> None:
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def close(self) -> None:
        try:
            self.p.stdin.close()
        except OSError:
            pass
        self.p.kill()
        self.p.wait(10)


def run_exporter(server: Server, directory: Path, stdout, timeout: float = 600, root: Path | None = None,
                 idle: float = 0.0) -> dict:
    """One exporter from start to the resuming watch; CPU and wall over the stream only.

    ``root``: where `exporter` is imported from (a commit's archive); default the measured one."""
    from bench import common
    from bench.common import exporter_argv, proc_cpu_split, vmrss_kb
    kc = kubeconfig(directory, server.info["port"], server.ca)
    ck = directory / "checkpoint.json"
    ck.unlink(missing_ok=True)
    err = open(directory / "exporter.stderr", "wb")
    p = subprocess.Popen(exporter_argv("run", "--kubeconfig", str(kc), "--namespace", NAMESPACE, "--listen", "",
                                       "--log-level", "warning", "--checkpoint-file", str(ck)),
                         stdout=stdout, stderr=err, stdin=subprocess.DEVNULL, cwd=root or common.EXPORTER_ROOT)
    err.close()
    try:
        watch = server.expect("watch", 120)
        idle_cpu = None
        if idle > 0:  # the exporter waits on its watch's first byte: nothing to do
            time.sleep(1.0)
            i0 = proc_cpu_split(p.pid)
            time.sleep(idle)
            i1 = proc_cpu_split(p.pid)
            idle_cpu = (i1[0] + i1[1] - i0[0] - i0[1]) / idle
        c0 = proc_cpu_split(p.pid)
        server.go()
        t0 = server.expect("streaming", 30)["t"]
        sent = server.expect("sent", timeout)
        resumed = server.expect("resumed", timeout)
        c1 = proc_cpu_split(p.pid)
        rss = vmrss_kb(p.pid)
    except BaseException:  # noqa: BLE001 - re-raised with the exporter's stderr
        p.kill()
        p.wait(10)
        raise RuntimeError("exporter under the watch benchmark: " +
                           (directory / "exporter.stderr").read_text()[-2000:]) from None
    if resumed["resource_version"] != server.info["last_rv"]:
        raise RuntimeError(f"the exporter resumed at {resumed['resource_version']}, "
                           f"not at the stream's last {server.info['last_rv']}")
    common.end(p, 30)
    user, sys_ = c1[0] - c0[0], c1[1] - c0[1]
    return {"cpu": user + sys_, "user": user, "sys": sys_, "wall": resumed["t"] - t0,
            "send_wall": sent["t"] - t0, "rss_mib": (rss or 0) / 1024,
            "watch_list": "sendInitialEvents" in watch["query"], "rc": p.returncode, "idle_cpu_s_per_s": idle_cpu}


def bench_watch(lines: int = 100_000, runs: int = 5, group: int = 1, before: str | None = None) -> dict:
    """Exporter vs floor.py, alternating; with ``before`` (a commit) that commit's exporter too, in each round."""
    from bench.common import FLOOR, archive_commit, log, median, python, run_measured, stream, wait_venv
    wait_venv()
    src = stream(lines)
    before_sha, before_root = archive_commit(before) if before else (None, None)
    with tempfile.TemporaryDirectory(prefix="kee-bench-watch-") as tmp:
        d = Path(tmp)
        empty = d / "empty.jsonl"
        empty.write_bytes(b"")
        server = Server(src, d, group)
        events = server.info["events"]
        n = server.info["lines"]
        try:
            # untimed warm-up, stdout kept: every Event must come out
            with open(d / "out.jsonl", "wb") as out:
                run_exporter(server, d, out)
            with open(d / "out.jsonl", "rb") as f:
                emitted = sum(1 for _ in f)
            exp, flo, flo0, old = [], [], [], []
            with open(os.devnull, "wb") as devnull:
                run_measured([python(), FLOOR, src], stdout=devnull)
                for i in range(runs):
                    order = ["exp", "floor"] + (["before"] if before_root else [])
                    if i % 2:
                        order.reverse()
                    for side in order:
                        if side == "exp":
                            exp.append(run_exporter(server, d, devnull))
                        elif side == "before":
                            old.append(run_exporter(server, d, devnull, root=before_root))
                            log(f"watch run {i + 1}/{runs}: before ({before_sha}) {old[-1]['cpu']:.2f} s CPU, "
                                f"{events / old[-1]['wall']:,.0f} Events/s")
                        else:
                            flo.append(run_measured([python(), FLOOR, src], stdout=devnull))
                            flo0.append(run_measured([python(), FLOOR, empty], stdout=devnull))
                    e, f, f0 = exp[-1], flo[-1], flo0[-1]
                    log(f"watch run {i + 1}/{runs}: exporter {e['cpu']:.2f} s CPU, {events / e['wall']:,.0f} "
                        f"Events/s; floor {f.cpu:.2f} s ({f.cpu - f0.cpu:.2f} s net of start-up); "
                        f"ratio {e['cpu'] / max(f.cpu - f0.cpu, 1e-9):.2f}")
        finally:
            server.close()
    startup = median(r.cpu for r in flo0)
    floor_net = [max(f.cpu - startup, 1e-9) for f in flo]
    pair = [e["cpu"] / fn for e, fn in zip(exp, floor_net, strict=False)]
    out = {
        "lines": n, "events": events, "records": emitted, "group": group, "runs": runs,
        "watch_list": exp[0]["watch_list"],
        "exporter_cpu_s": [round(e["cpu"], 3) for e in exp], "exporter_wall_s": [round(e["wall"], 3) for e in exp],
        "exporter_sys_s": [round(e["sys"], 3) for e in exp],
        "floor_cpu_s": [round(f.cpu, 3) for f in flo], "floor_startup_cpu_s": startup,
        "exporter_cpu_median_s": median(e["cpu"] for e in exp), "floor_net_cpu_median_s": median(floor_net),
        "exporter_events_per_s": median(events / e["wall"] for e in exp),
        "exporter_events_per_cpu_s": median(events / e["cpu"] for e in exp),
        "floor_events_per_cpu_s": median(events / fn for fn in floor_net),
        "exporter_us_per_event": median(e["cpu"] for e in exp) / events * 1e6,
        "floor_us_per_event": median(floor_net) / events * 1e6,
        "pair_ratios": [round(x, 3) for x in pair], "ratio_median": median(pair),
        "exporter_rss_mib": max(e["rss_mib"] for e in exp),
    }
    if old:
        out["before"] = {
            "commit": before_sha, "cpu_s": [round(e["cpu"], 3) for e in old],
            "wall_s": [round(e["wall"], 3) for e in old],
            "events_per_s": median(events / e["wall"] for e in old),
            "events_per_cpu_s": median(events / e["cpu"] for e in old),
            "us_per_event": median(e["cpu"] for e in old) / events * 1e6,
            "ratio_to_floor": median(e["cpu"] / fn for e, fn in zip(old, floor_net, strict=False)),
            "after_vs_before": median(e["cpu"] / o["cpu"] for e, o in zip(exp, old, strict=False)),
        }
    return out


def bench_paced(rate: float, seconds: float, idle: float, rounds: int, before: str | None) -> dict:
    """Low rates, without an apiserver: idle CPU, then `rate` Events/s for `seconds`, exporters alternating."""
    from bench.common import archive_commit, log, median, stream, wait_venv
    wait_venv()
    src = stream(int(rate * seconds))
    before_sha, before_root = archive_commit(before) if before else (None, None)
    sides: dict[str, list[dict]] = {"after": []}
    if before_root:
        sides["before"] = []
    with tempfile.TemporaryDirectory(prefix="kee-bench-watch-") as tmp:
        d = Path(tmp)
        server = Server(src, d, 1, rate)
        events = server.info["events"]
        try:
            with open(os.devnull, "wb") as devnull:
                for i in range(rounds):
                    order = list(sides) if i % 2 == 0 else list(sides)[::-1]
                    for side in order:
                        r = run_exporter(server, d, devnull, root=before_root if side == "before" else None,
                                         idle=idle)
                        sides[side].append(r)
                        log(f"paced {rate}/s round {i + 1}/{rounds} {side}: idle {r['idle_cpu_s_per_s'] * 1e3:.2f} "
                            f"ms/s, {r['cpu'] / events * 1e6:.1f} us/Event")
        finally:
            server.close()
    out: dict = {"rate": rate, "seconds": seconds, "idle_s": idle, "events": events, "rounds": rounds,
                 "before_commit": before_sha}
    for side, runs in sides.items():
        out[side] = {"idle_cpu_ms_per_s": [round(r["idle_cpu_s_per_s"] * 1e3, 2) for r in runs],
                     "us_per_event": [round(r["cpu"] / events * 1e6, 1) for r in runs],
                     "us_per_event_median": median(r["cpu"] / events * 1e6 for r in runs),
                     "idle_ms_per_s_median": median(r["idle_cpu_s_per_s"] * 1e3 for r in runs)}
    return out


def table(r: dict) -> str:
    from bench.report import _f
    from bench.report import table as md_table
    rows = [["kube-event-exporter `run` (TLS watch)", _f(r["exporter_events_per_s"], "{:,.0f}"),
             _f(r["exporter_events_per_cpu_s"], "{:,.0f}"), _f(r["exporter_us_per_event"], "{:.1f}"),
             ", ".join(_f(x) for x in r["exporter_cpu_s"])],
            *([[f"before: commit {r['before']['commit']}", _f(r["before"]["events_per_s"], "{:,.0f}"),
                _f(r["before"]["events_per_cpu_s"], "{:,.0f}"), _f(r["before"]["us_per_event"], "{:.1f}"),
                ", ".join(_f(x) for x in r["before"]["cpu_s"])]] if r.get("before") else []),
            ["floor.py (file)", "-", _f(r["floor_events_per_cpu_s"], "{:,.0f}"), _f(r["floor_us_per_event"], "{:.1f}"),
             ", ".join(_f(x) for x in r["floor_cpu_s"])]]
    goal = "meets" if r["exporter_events_per_cpu_s"] >= 30_000 else "MISSES"
    text = (md_table(["process", "Events/s (wall)", "Events per CPU second", "CPU us/Event", "CPU s, each run"],
                     rows)
            + f"\n\n**CPU ratio to the floor (median of {r['runs']} side-by-side pairs): {r['ratio_median']:.2f}** "
              f"(pairs: {', '.join(_f(x) for x in r['pair_ratios'])}). {r['lines']:,} lines, {r['events']:,} Events "
              f"(envelopes other than BOOKMARK), {r['records']:,} records on stdout (warm-up run), "
              f"{r['group']} line(s) per HTTP chunk, watch-list: {r['watch_list']}. Goal >= 30,000 Events per "
              f"CPU second on one core: {goal}. Floor CPU is net of its start-up "
              f"({r['floor_startup_cpu_s']:.3f} s, the same command on an empty file); the exporter's is over "
              f"the stream only. Exporter sys share "
              f"{sum(r['exporter_sys_s']) / max(sum(r['exporter_cpu_s']), 1e-9):.0%}"
              f", RSS at the end {r['exporter_rss_mib']:.0f} MiB."
            + (f" Before ({r['before']['commit']}, same rounds): {r['before']['ratio_to_floor']:.2f}x the floor; "
               f"after / before CPU (median of the rounds' ratios): {r['before']['after_vs_before']:.2f}."
               if r.get("before") else ""))
    if r.get("paced"):
        prow = []
        for p in r["paced"]:
            for side in ("after", "before"):
                if side in p:
                    v = p[side]
                    who = "checkout" if side == "after" else f"before: commit {p['before_commit']}"
                    prow.append([f"{p['rate']:.0f}/s", who, _f(v["us_per_event_median"], "{:.0f}"),
                                 ", ".join(_f(x, "{:.0f}") for x in v["us_per_event"]),
                                 _f(max(0.0, v["idle_ms_per_s_median"]), "{:.1f}"),
                                 ", ".join(_f(max(0.0, x), "{:.1f}") for x in v["idle_cpu_ms_per_s"])])
        text += ("\n\n**Paced** (`--watch-rates`): the same server sending one chunk every 1/rate s for "
                 f"{r['paced'][0]['seconds']:.0f} s ({r['paced'][0]['events']:,} Events at the first rate), "
                 "exporters alternating, after 10 s idle (waiting on the watch's first byte). CPU from "
                 "/proc/PID/stat in 10 ms ticks (idle: 1 tick in 10 s = 1.0 ms/s).\n\n"
                 + md_table(["rate", "exporter", "CPU us/Event (median)", "each round", "idle CPU ms/s (median)",
                             "each round"], prow))
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.watch", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="the TLS watch server alone (driven over stdin/stdout)")
    s.add_argument("--stream", required=True, type=Path)
    s.add_argument("--cert", required=True, type=Path)
    s.add_argument("--key", required=True, type=Path)
    s.add_argument("--group", type=int, default=1)
    s.add_argument("--port", type=int, default=0)
    b = sub.add_parser("bench", help="the benchmark, printed (python -m bench --only watch also writes the docs)")
    b.add_argument("--lines", type=int, default=100_000)
    b.add_argument("--runs", type=int, default=3)
    b.add_argument("--group", type=int, default=1)
    b.add_argument("--before", metavar="REV", help="also run this commit's exporter in every round")
    s.add_argument("--rate", type=float, default=0.0)
    c = sub.add_parser("paced", help="idle CPU and CPU per Event at a low rate, exporters alternating")
    c.add_argument("--rate", type=float, default=100.0)
    c.add_argument("--seconds", type=float, default=20.0)
    c.add_argument("--idle", type=float, default=10.0)
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--before", metavar="REV")
    a = p.parse_args(argv)
    if a.cmd == "serve":
        serve(a.stream, a.cert, a.key, a.group, a.port, a.rate)
        return 0
    if a.cmd == "paced":
        print(json.dumps(bench_paced(a.rate, a.seconds, a.idle, a.rounds, a.before), indent=1))
        return 0
    r = bench_watch(a.lines, a.runs, a.group, a.before)
    print(json.dumps(r, indent=1))
    print(table(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
