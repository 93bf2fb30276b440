"""Benchmark 5: our exporter and its peers watching the same real apiserver load (issue 16, goals 1 and 8).

Watchers, all on one namespace of one etcd + kube-apiserver (loopback), running at the same time:

- ours: `python -m exporter run` (stdout to a file, file checkpoint);
- the OpenTelemetry Collector's contrib `k8s_events` receiver (otelcol-kee from scripts/testbin's cache,
  file exporter);
- resmoio's kubernetes-event-exporter, kube-eventer and eventrouter, from binaries whose paths are given
  on the command line (`--peer resmoio=PATH --peer kube-eventer=PATH --peer eventrouter=PATH`); a peer
  without a path is skipped and the result says so. Their code is not in this repository.

Measures, per watcher: CPU per Event from /proc/PID/stat deltas at each asked rate (including the highest
rate the apiserver sustains here, found by a closed-loop POST probe), RSS at the start and the end, the
Event-creation -> output latency (arrival seen by polling each watcher's output), and a restart test:
every watcher SIGKILLed at once while Events flow, kept down, restarted; lost and duplicated Events
counted per watcher. A watcher that fails to start or dies is reported, never fatal to the others.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from bench import common
from bench.common import RssSampler, log, median, percentile, proc_cpu, proc_cpu_split, proc_hwm_kb, vmrss_kb

#: Peers taken from binaries given on the command line: key -> (label, upstream commit the label refers to).
EXTERNAL = {
    "resmoio": ("resmoio kubernetes-event-exporter", "907ce91"),
    "kube-eventer": ("kube-eventer (AliyunContainerService)", "0974bca"),
    "eventrouter": ("eventrouter (heptiolabs)", "eec9229"),
}
OURS = "kube-event-exporter (ours)"
OTELCOL = "OTel Collector k8s_events"


def parse_peer_args(values: Iterable[str]) -> dict[str, str]:
    """`--peer NAME=PATH` values -> {name: path}. Raises ValueError on an unknown name or a bad form."""
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        name = name.strip()
        if not sep or not path.strip():
            raise ValueError(f"--peer {v!r}: expected NAME=PATH")
        if name not in EXTERNAL:
            raise ValueError(f"--peer {v!r}: unknown peer {name!r}; known: {', '.join(EXTERNAL)}")
        out[name] = path.strip()
    return out


# -- reading each watcher's output -------------------------------------------------------------

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: the benchmark's involvedObject uids (EventPoster), never an Event's own uid
INVOLVED_PREFIX = b"00000000-0000-4000-8000-"


def _json_path(*keys: str) -> Callable[[bytes], list[str]]:
    def extract(line: bytes) -> list[str]:
        import orjson
        try:
            v = orjson.loads(line)
            for k in keys:
                v = v[k]
        except (ValueError, KeyError, TypeError):
            return []
        return [v] if isinstance(v, str) else []
    return extract


def otlp_uids(line: bytes) -> list[str]:
    """One OTLP/JSON export request (a line of the Collector's file exporter) -> the k8s.event.uid values."""
    import orjson
    try:
        req = orjson.loads(line)
    except ValueError:
        return []
    out = []
    for rl in req.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for lr in sl.get("logRecords", []):
                for kv in lr.get("attributes", []):
                    if kv.get("key") == "k8s.event.uid":
                        out.append(kv.get("value", {}).get("stringValue", ""))
    return out


def klog_event_uid(line: bytes) -> list[str]:
    """kube-eventer's log sink: one Event per line, Go's %+v of the Event (its ObjectMeta, uid included,
    comes before the involvedObject). The first uid-shaped token that is not a benchmark involvedObject uid."""
    for m in UUID.finditer(line):
        if not m.group().startswith(INVOLVED_PREFIX):
            return [m.group().decode()]
    return []


_ABS_PATH = re.compile(r"(?:/[\w.+@-]+){2,}/?")


def scrub(text: str) -> str:
    """Error text as stored in the document: absolute paths of this machine replaced by <path>."""
    return _ABS_PATH.sub("<path>", text)


class Tally:
    """Every uid a watcher wrote: how many times, and when it was first seen (time.time())."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.first: dict[str, float] = {}
        self.lines = 0

    def add(self, uids: Iterable[str], t: float) -> None:
        for u in uids:
            self.count[u] += 1
            self.first.setdefault(u, t)

    def seen(self, want: Iterable[str]) -> int:
        return sum(1 for u in want if u in self.count)

    def snapshot(self) -> Counter[str]:
        return Counter(self.count)


def restart_counts(tally_before: Counter, tally_after: Counter, round_uids: Iterable[str]) -> dict:
    """Lost and duplicated Events of a restart test.

    round_uids: the Events created during the test (before, while and after the watcher was down).
    lost = created during the test, never written; duplicated = written more than once (extra copies);
    re_emitted = extra copies, written after the restart, of Events from before the test."""
    round_uids = list(round_uids)
    rs = set(round_uids)
    lost = sum(1 for u in round_uids if tally_after.get(u, 0) == 0)
    dup = sum(tally_after[u] - 1 for u in round_uids if tally_after.get(u, 0) > 1)
    re_emitted = 0
    for u, n in tally_after.items():
        was = tally_before.get(u, 0)
        if u not in rs and was > 0 and n > was:
            re_emitted += n - was
    return {"created": len(round_uids), "lost": lost, "duplicated": dup, "re_emitted_earlier": re_emitted}


class Watcher:
    """One watcher process: how to (re)start it, where its Events go and how to read their uids."""

    def __init__(self, name: str, out_path: Path, extract: Callable[[bytes], list[str]], workdir: Path):
        self.name, self.out_path, self.extract, self.workdir = name, out_path, extract, workdir
        self.tally = Tally()
        self._pos = 0
        self._buf = b""
        self.error: str | None = None     # why it was dropped (failed to start, died)
        self.starts = 0

    # to override
    def _launch(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def stderr_tail(self) -> str:
        return ""

    def start(self) -> None:
        self.starts += 1
        self._launch()

    def poll_output(self, t: float) -> None:
        try:
            with open(self.out_path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except OSError:
            return
        if not data:
            return
        self._pos += len(data)
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            if line.strip():
                self.tally.lines += 1
                self.tally.add(self.extract(line), t)


class ProcWatcher(Watcher):
    """A plain subprocess writing its Events to stdout (or, with events_on_stderr, to stderr)."""

    def __init__(self, name: str, argv: list[str], workdir: Path, extract, env: dict | None = None,
                 cwd: Path | None = None, events_on_stderr: bool = False):
        out = workdir / ("events.log" if events_on_stderr else "events.jsonl")
        super().__init__(name, out, extract, workdir)
        self.argv, self.env, self.cwd, self.events_on_stderr = argv, env, cwd, events_on_stderr
        self.proc: subprocess.Popen | None = None

    def _launch(self) -> None:
        from bench.kube import _die_with_parent
        with open(self.out_path, "ab") as out, open(self.workdir / "stderr.log", "ab") as err:
            err.write(f"\n===== start {self.starts}: {' '.join(self.argv)}\n".encode())
            err.flush()
            self.proc = subprocess.Popen(self.argv, stdout=err if self.events_on_stderr else out,
                                         stderr=out if self.events_on_stderr else err,
                                         stdin=subprocess.DEVNULL, env={**os.environ, **(self.env or {})},
                                         cwd=self.cwd or self.workdir, preexec_fn=_die_with_parent)

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def stderr_tail(self) -> str:
        p = self.workdir / ("events.log" if self.events_on_stderr else "stderr.log")
        try:
            text = p.read_bytes()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""
        rc = self.proc.poll() if self.proc else None
        return (f"exit status {rc}; " if rc is not None else "") + text


class CollectorWatcher(Watcher):
    def __init__(self, cp, ns: str, workdir: Path):
        from bench.kube import _components
        comps = _components()
        self.col = comps.Collector.k8s_events(cp, namespaces=[ns], workdir=workdir)
        super().__init__(OTELCOL, self.col.output_path, otlp_uids, workdir)

    def _launch(self) -> None:
        self.col.start()

    def pid(self) -> int | None:
        return self.col.process.pid

    def alive(self) -> bool:
        return self.col.process.alive()

    def kill(self) -> None:
        self.col.kill()

    def stop(self) -> None:
        self.col.stop()

    def stderr_tail(self) -> str:
        try:
            return self.col.process.log_path.read_bytes()[-1500:].decode("utf-8", "replace")
        except OSError:
            return ""


def _free_port() -> int:
    from bench.kube import _components
    return _components().free_port()


def make_watchers(cp, ns: str, workdir: Path, binaries: dict[str, str]) -> tuple[list[Watcher], dict[str, str]]:
    """Ours, the Collector and each external peer with a binary; {label: why skipped} for the others."""
    skipped: dict[str, str] = {}
    kubeconfig = str(cp.kubeconfig)
    ws: list[Watcher] = []

    d = workdir / "ours"
    d.mkdir(parents=True, exist_ok=True)
    ws.append(ProcWatcher(OURS, common.exporter_argv("run", "--kubeconfig", kubeconfig, "--namespace", ns,
                                                     "--listen", "127.0.0.1:0", "--log-level", "warning",
                                                     "--checkpoint-file", str(d / "checkpoint.json")),
                          d, _json_path("event", "uid"), cwd=common.EXPORTER_ROOT))
    try:
        d = workdir / "otelcol"
        d.mkdir(parents=True, exist_ok=True)
        ws.append(CollectorWatcher(cp, ns, d))
    except Exception as e:  # noqa: BLE001 - the binary may be missing; the others still run
        skipped[OTELCOL] = f"{type(e).__name__}: {e}"

    for key, (label, _) in EXTERNAL.items():
        binp = binaries.get(key)
        if not binp:
            skipped[label] = "no binary given (--peer " + key + "=PATH)"
            continue
        if not (os.path.isfile(binp) and os.access(binp, os.X_OK)):
            skipped[label] = f"--peer {key}=PATH: not an executable file"
            continue
        d = workdir / key
        d.mkdir(parents=True, exist_ok=True)
        if key == "resmoio":
            # namespace filter; stdout receiver (the whole Event as JSON); no GET of the involved object
            # (the benchmark's Pods do not exist); logs (JSON, errors only) go to stderr.
            cfg = d / "config.yaml"
            cfg.write_text(json.dumps({"logLevel": "error", "logFormat": "json", "namespace": ns,
                                       "maxEventAgeSeconds": 60, "omitLookup": True,
                                       "route": {"routes": [{"match": [{"receiver": "dump"}]}]},
                                       "receivers": [{"name": "dump", "stdout": {}}]}))
            ws.append(ProcWatcher(label, [binp, f"-conf={cfg}", f"-kubeconfig={kubeconfig}",
                                          f"-metrics-address=127.0.0.1:{_free_port()}"],
                                  d, _json_path("metadata", "uid")))
        elif key == "kube-eventer":
            # no namespace option: it watches every namespace (only the benchmark writes Events on this
            # control plane); log sink = klog on stderr, one Event per line; 5 s is its shortest --frequency.
            source = f"--source=kubernetes:?inClusterConfig=false&localKubeConfig={kubeconfig}"
            ws.append(ProcWatcher(label, [binp, source, "--sink=log", "--frequency=5s", "--healthz-ip=127.0.0.1",
                                          f"--healthz-port={_free_port()}"],
                                  d, klog_event_uid, events_on_stderr=True))
        elif key == "eventrouter":
            # reads ./config.json; no namespace option (every namespace); stdout sink = one JSON line per Event
            (d / "config.json").write_text(json.dumps({"kubeconfig": kubeconfig, "sink": "stdout"}))
            ws.append(ProcWatcher(label, [binp, "-logtostderr", f"-listen-address=127.0.0.1:{_free_port()}"],
                                  d, _json_path("event", "metadata", "uid"), cwd=d))
    return ws, skipped


# -- load -------------------------------------------------------------------------------------

class Load:
    """Creates Events at a fixed rate (open loop) over several kept-alive connections."""

    def __init__(self, cp, ns: str, conns: int = 4):
        from bench.kube import EventPoster
        self.posters = [EventPoster(cp, ns) for _ in range(conns)]
        self.sent: dict[str, tuple[float, float]] = {}   # uid -> (before the POST, response read)
        self.errors = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        for p in self.posters:
            p.close()

    def run(self, rate: float | None, count: int | None = None, duration: float | None = None,
            reason: str = "BenchPeers", stop: threading.Event | None = None) -> tuple[list[str], float]:
        """POST `count` Events (or for `duration` s) at `rate`/s (None: as fast as the connections go).
        Returns (uids in creation order, seconds taken)."""
        uids: list[str] = []
        nxt = [0]
        t0 = time.monotonic()

        def worker(poster) -> None:
            while stop is None or not stop.is_set():
                with self._lock:
                    i = nxt[0]
                    nxt[0] += 1
                if count is not None and i >= count:
                    return
                due = t0 + (i / rate if rate else 0.0)
                if duration is not None and max(due, time.monotonic()) - t0 >= duration:
                    return
                d = due - time.monotonic()
                if d > 0:
                    time.sleep(d)
                try:
                    uid, a, b = poster.post(reason)
                except Exception:  # noqa: BLE001 - counted; the load goes on
                    with self._lock:
                        self.errors += 1
                    continue
                with self._lock:
                    self.sent[uid] = (a, b)
                    uids.append(uid)
        threads = [threading.Thread(target=worker, args=(p,), daemon=True) for p in self.posters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return uids, time.monotonic() - t0


# -- the benchmark ----------------------------------------------------------------------------

class Bench:
    def __init__(self, cp, ns: str, watchers: list[Watcher], poll_s: float = 0.01):
        self.cp, self.ns, self.watchers = cp, ns, watchers
        self.dropped: dict[str, str] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.poll_s = poll_s
        self.reader = threading.Thread(target=self._read_loop, daemon=True, name="peers-reader")

    def _read_loop(self) -> None:
        while not self._halt.is_set():
            t = time.time()
            with self._lock:
                for w in self.watchers:
                    w.poll_output(t)
            self._halt.wait(self.poll_s)

    def live(self) -> list[Watcher]:
        return [w for w in self.watchers if w.name not in self.dropped]

    def check_alive(self, expect_down: Iterable[str] = ()) -> None:
        for w in self.live():
            if w.name not in expect_down and not w.alive():
                self.dropped[w.name] = f"died: {w.stderr_tail()}"
                log(f"peers: {w.name} DIED; dropped from the rest of the run")

    def wait_seen(self, want: list[str], timeout: float, ws: list[Watcher] | None = None,
                  quiet_s: float = 0.0) -> dict[str, float]:
        """Until every watcher in ws has written every uid in want (or timeout): {name: seconds taken}.
        quiet_s > 0: also stop waiting for a watcher once its output has not grown for quiet_s."""
        ws = list(ws if ws is not None else self.live())
        t0 = time.monotonic()
        done: dict[str, float] = {}
        last_lines = {w.name: (w.tally.lines, t0) for w in ws}
        while len(done) < len(ws) and time.monotonic() - t0 < timeout:
            now = time.monotonic()
            with self._lock:
                for w in ws:
                    if w.name in done:
                        continue
                    if w.tally.seen(want) == len(want):
                        done[w.name] = now - t0
                    elif quiet_s:
                        n, since = last_lines[w.name]
                        if w.tally.lines != n:
                            last_lines[w.name] = (w.tally.lines, now)
                        elif now - since > quiet_s:
                            done[w.name] = now - t0
            self.check_alive()
            ws = [w for w in ws if w.name not in self.dropped]
            time.sleep(0.2)
        return done


def _cpu(pid: int | None) -> float | None:
    return None if pid is None else proc_cpu(pid)


def bench_peers(cp, binaries: dict[str, str] | None = None, events: int = 2000, rates: Iterable = (100,),
                rounds: int = 3, idle_s: float = 5.0, restart: bool = True, restart_rate: float = 100.0,
                down_s: float = 5.0, conns: int = 4, max_probe_s: float = 8.0, probe_conns: int = 8) -> dict:
    """rates: Events/s per phase; "max" = the rate a closed-loop probe (probe_conns connections, max_probe_s)
    reaches with every watcher running; the phase then asks that rate open-loop over `conns` connections."""
    common.wait_venv()
    binaries = dict(binaries or {})
    ns = cp.create_namespace(f"bench-peers-{uuid.uuid4().hex[:5]}")
    workdir = Path(cp.dir) / f"bench-peers-{ns}"
    workdir.mkdir(exist_ok=True)
    watchers, skipped = make_watchers(cp, ns, workdir, binaries)
    out: dict = {"version": 2, "events": events, "rounds": rounds, "idle_s": idle_s, "conns": conns,
                 "skipped": skipped, "failed": {}, "phases": [], "peers": {},
                 "upstream": {EXTERNAL[k][0]: EXTERNAL[k][1] for k in EXTERNAL if EXTERNAL[k][0] not in skipped}}
    for name, why in skipped.items():
        log(f"peers: {name} skipped: {why}")
    b = Bench(cp, ns, watchers)
    load = Load(cp, ns, conns)
    samplers: dict[str, RssSampler] = {}
    try:
        for w in watchers:
            try:
                w.start()
            except Exception as e:  # noqa: BLE001 - reported, the others go on
                b.dropped[w.name] = f"failed to start: {type(e).__name__}: {e}; {w.stderr_tail()}"
        b.reader.start()
        time.sleep(2.0)
        b.check_alive()
        # ready = each has written a warm-up Event created after it started (kube-eventer: within 5 s)
        warm, _ = load.run(None, count=1, reason="BenchWarmup")
        ready = b.wait_seen(warm, 60)
        for w in b.live():
            if w.name not in ready:
                b.dropped[w.name] = f"not ready within 60 s (warm-up Event not written): {w.stderr_tail()}"
        for name, why in b.dropped.items():
            log(f"peers: {name}: {why[:500]}")
        out["failed"] = dict(b.dropped)
        time.sleep(2.0)
        ws = b.live()
        if not any(w.name == OURS for w in ws):
            raise RuntimeError(f"our exporter did not start: {b.dropped.get(OURS)}")
        rss_start = {w.name: (vmrss_kb(w.pid()) or 0) / 1024 for w in ws}
        for w in ws:
            samplers[w.name] = RssSampler(w.pid(), 0.2)
            samplers[w.name].start()
        idle0 = {w.name: _cpu(w.pid()) for w in ws}
        time.sleep(idle_s)
        idle = {w.name: (_cpu(w.pid()) - idle0[w.name]) / idle_s for w in ws
                if idle0[w.name] is not None and _cpu(w.pid()) is not None}

        for rate_spec in rates:
            phase: dict = {"asked": str(rate_spec), "rounds": [], "watchers": {}}
            if str(rate_spec) == "max":
                probe = Load(b.cp, b.ns, probe_conns)
                try:
                    uids, took = probe.run(None, duration=max_probe_s, reason="BenchProbe")
                finally:
                    probe.close()
                rate = len(uids) / took
                phase["probe"] = {"events": len(uids), "seconds": took, "rate": rate, "conns": probe_conns,
                                  "post_errors": probe.errors}
                log(f"peers: closed-loop probe, {probe_conns} connections: {rate:.0f} Events/s")
                b.wait_seen(uids, 30, quiet_s=8)
            else:
                rate = float(rate_spec)
            phase["rate"] = rate
            per: dict[str, list] = {}
            for rnd in range(rounds):
                ws = b.live()
                c0 = {w.name: proc_cpu_split(w.pid()) for w in ws}
                err0 = load.errors
                uids, took = load.run(rate, count=events)
                done = b.wait_seen(uids, 30, ws)
                c1 = {w.name: proc_cpu_split(w.pid()) for w in ws}
                post_ms = [(load.sent[u][1] - load.sent[u][0]) * 1000 for u in uids]
                rinfo = {"events": len(uids), "seconds": took, "achieved_rate": len(uids) / took,
                         "post_errors": load.errors - err0, "post_p50_ms": percentile(post_ms, 50),
                         "post_p99_ms": percentile(post_ms, 99)}
                phase["rounds"].append(rinfo)
                for w in ws:
                    if c0[w.name] is None or c1[w.name] is None:
                        continue
                    cpu = sum(c1[w.name]) - sum(c0[w.name])
                    sys_s = c1[w.name][1] - c0[w.name][1]
                    lat = [(w.tally.first[u] - load.sent[u][1]) * 1000 for u in uids if u in w.tally.first]
                    lat0 = [(w.tally.first[u] - load.sent[u][0]) * 1000 for u in uids if u in w.tally.first]
                    per.setdefault(w.name, []).append({
                        "received": w.tally.seen(uids), "cpu_s": cpu, "sys_s": sys_s,
                        "us_per_event": cpu / max(1, len(uids)) * 1e6, "all_seen_after_s": done.get(w.name),
                        "lat_p50_ms": percentile(lat, 50), "lat_p99_ms": percentile(lat, 99),
                        "lat_max_ms": max(lat, default=float("nan")),
                        "lat_p99_from_post_start_ms": percentile(lat0, 99),
                        "rss_mib": (vmrss_kb(w.pid()) or 0) / 1024})
                    log(f"peers {rate:.0f}/s round {rnd + 1}/{rounds} {w.name}: {w.tally.seen(uids)}/{len(uids)}, "
                        f"{cpu / max(1, len(uids)) * 1e6:.0f} us/Event, p99 {percentile(lat, 99):.0f} ms")
            for name, rs in per.items():
                phase["watchers"][name] = {
                    "received": [r["received"] for r in rs], "us_per_event": [r["us_per_event"] for r in rs],
                    "us_per_event_median": median(r["us_per_event"] for r in rs),
                    "sys_share": (sum(r["sys_s"] for r in rs) / sum(r["cpu_s"] for r in rs)
                                  if sum(r["cpu_s"] for r in rs) else None),
                    "lat_p50_ms": median(r["lat_p50_ms"] for r in rs),
                    "lat_p99_ms": [r["lat_p99_ms"] for r in rs], "lat_max_ms": max(r["lat_max_ms"] for r in rs),
                    "lat_p99_from_post_start_ms": [r["lat_p99_from_post_start_ms"] for r in rs],
                    "all_seen_after_s": [r["all_seen_after_s"] for r in rs],
                    "rss_mib": [round(r["rss_mib"], 1) for r in rs]}
            phase["achieved_rate"] = median(r["achieved_rate"] for r in phase["rounds"])
            out["phases"].append(phase)

        rss_end = {w.name: (vmrss_kb(w.pid()) or 0) / 1024 for w in b.live()}
        for w in watchers:
            if w.name in samplers:
                rss = samplers.pop(w.name).stop()
                out["peers"][w.name] = {
                    "rss_start_mib": rss_start.get(w.name), "rss_end_mib": rss_end.get(w.name),
                    "max_sampled_rss_mib": max(rss, default=0) / 1024,
                    "hwm_mib": (proc_hwm_kb(w.pid()) or 0) / 1024 if w.alive() else None,
                    "idle_cpu_ms_per_s": idle.get(w.name, 0.0) * 1000}
        if restart:
            out["restart"] = restart_test(b, load, restart_rate, down_s)
        for name, why in b.dropped.items():
            out["failed"].setdefault(name, why)
    finally:
        for smp in samplers.values():
            try:
                smp.stop()
            except Exception:  # noqa: BLE001 - never skip stopping the peers
                pass
        b._halt.set()
        load.close()
        for w in watchers:
            try:
                w.stop()
            except Exception as e:  # noqa: BLE001
                log(f"stopping {w.name}: {e}")
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    out["ratios"] = ratios(out)
    out["skipped"] = {k: scrub(v) for k, v in out["skipped"].items()}
    out["failed"] = {k: scrub(v) for k, v in out["failed"].items()}
    return out


def restart_test(b: Bench, load: Load, rate: float, down_s: float, before_s: float = 5.0,
                 after_s: float = 5.0) -> dict:
    """Events at `rate` for before_s + down_s + after_s; every live watcher SIGKILLed after before_s,
    restarted down_s later; then wait until each has written them all or has been quiet for 10 s."""
    ws = b.live()
    before = {w.name: w.tally.snapshot() for w in ws}
    stop = threading.Event()
    created: list[str] = []

    def post() -> None:
        uids, _ = load.run(rate, duration=before_s + down_s + after_s, reason="BenchRestart", stop=stop)
        created.extend(uids)
    t = threading.Thread(target=post, daemon=True)
    t.start()
    time.sleep(before_s)
    for w in ws:
        try:
            w.kill()
        except Exception as e:  # noqa: BLE001
            log(f"killing {w.name}: {e}")
    t_kill = time.monotonic()
    log(f"peers restart: SIGKILLed {len(ws)} watchers; down {down_s:.0f} s while Events flow at {rate:.0f}/s")
    time.sleep(down_s)
    restarted = []
    for w in ws:
        try:
            w.start()
            restarted.append(w)
        except Exception as e:  # noqa: BLE001 - counted as it is: nothing more written
            b.dropped[w.name] = f"did not restart: {type(e).__name__}: {e}"
    down = time.monotonic() - t_kill
    t.join()
    b.wait_seen(created, 60, restarted, quiet_s=12)
    time.sleep(1.0)
    res: dict = {"rate": rate, "down_s": down, "created": len(created), "watchers": {}}
    with b._lock:
        for w in ws:
            c = restart_counts(before[w.name], w.tally.snapshot(), created)
            c["restarted"] = w in restarted and w.alive()
            res["watchers"][w.name] = c
            log(f"peers restart {w.name}: lost {c['lost']}, duplicated {c['duplicated']}, "
                f"re-emitted earlier {c['re_emitted_earlier']}")
    return res


def ratios(out: dict) -> dict:
    """Per phase: our CPU/Event over the best (lowest) peer's."""
    res = {}
    for ph in out.get("phases", []):
        w = ph["watchers"]
        if OURS not in w:
            continue
        peers = {n: v["us_per_event_median"] for n, v in w.items() if n != OURS}
        if not peers:
            continue
        best = min(peers, key=peers.get)
        res[ph["asked"]] = {"rate": ph["rate"], "ours_us": w[OURS]["us_per_event_median"], "best_peer": best,
                            "best_peer_us": peers[best], "ratio": w[OURS]["us_per_event_median"] / peers[best]}
    return res
