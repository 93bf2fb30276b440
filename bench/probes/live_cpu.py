"""Live path, two exporters side by side (a commit vs the checkout): idle CPU, CPU per Event and latency.

Issue 16, goal 1. Both exporters watch one namespace of a real etcd + kube-apiserver at the same
time, with the production set-up (metrics/health server on, file checkpoint), stdout a pipe read
line by line here (each record timestamped as it is read, as the `latency` benchmark does):

    python -m bench.probes.live_cpu --before 9719d64 [--rates 100,500,max] [--seconds 20] [--idle 20]

First `--idle` seconds with no Events (CPU per second of wall time), then each rate for
`--seconds` (core/v1 Events POSTed open-loop over one kept-alive connection; `max`: 4
connections posting back to back, the most this machine's apiserver takes). CPU is
utime+stime from /proc/PID/stat over each period, until both printed every Event; latency is
the record's arrival on stdout minus the POST's completion, p50/p99 per exporter.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import threading
import time
from pathlib import Path

from bench import common, kube
from bench.common import percentile


def _post_max(cp, ns: str, seconds: float, conns: int = 4) -> dict[str, tuple[float, float]]:
    sent: dict[str, tuple[float, float]] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker() -> None:
        poster = kube.EventPoster(cp, ns)
        try:
            while time.monotonic() < deadline:
                uid, t0, t1 = poster.post("BenchMax")
                with lock:
                    sent[uid] = (t0, t1)
        finally:
            poster.close()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git revision measured as 'before' (git archive)")
    ap.add_argument("--rates", default="100,500,max", help="Events/s, comma list; `max` = 4 connections flat out")
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of load per rate")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds idle before the load")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--no-checkpoint", action="store_true",
                    help="no checkpoint store (as the peers benchmark runs ours), not the file store")
    a = ap.parse_args()
    roots = {"before": common.use_commit(a.before), "after": common.REPO}
    common.wait_venv()
    cp = kube.start_control_plane()
    procs: dict[str, subprocess.Popen] = {}
    arrivals: dict[str, kube.Arrivals] = {}
    out: dict = {"before": a.before, "load_avg_start": os.getloadavg()[0], "idle_s": a.idle, "rates": {},
                 "checkpoint": "none" if a.no_checkpoint else "file"}
    try:
        ns = cp.create_namespace("live-cpu", wait_default_sa=False)
        work = Path(cp.dir) / "live-cpu"
        work.mkdir()
        for name, root in roots.items():
            procs[name] = subprocess.Popen(
                common.exporter_argv("run", "--kubeconfig", str(cp.kubeconfig), "--namespace", ns,
                                     "--listen", "127.0.0.1:0", "--log-level", "warning",
                                     *([] if a.no_checkpoint else ["--checkpoint-file", str(work / f"{name}.json")])),
                stdout=subprocess.PIPE, stderr=open(work / f"{name}.stderr", "wb"), stdin=subprocess.DEVNULL,
                cwd=root, preexec_fn=kube._die_with_parent)
            arrivals[name] = kube.stdout_arrivals(procs[name])
        poster = kube.EventPoster(cp, ns)
        uid, _, _ = poster.post("BenchWarmup")
        for name, arr in arrivals.items():
            if not arr.wait_for([uid], 60):
                raise RuntimeError(f"{name} did not print the warm-up Event: "
                                   + (work / f"{name}.stderr").read_text()[-2000:])
        time.sleep(2)
        c0 = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
        time.sleep(a.idle)
        c1 = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
        out["idle_cpu_ms_per_s"] = {k: round((c1[k] - c0[k]) * 1e3 / a.idle, 3) for k in procs}
        common.log(f"idle: {out['idle_cpu_ms_per_s']}")
        for rate in [x.strip() for x in a.rates.split(",") if x.strip()]:
            ca = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
            t_start = time.monotonic()
            if rate == "max":
                sent = _post_max(cp, ns, a.seconds)
            else:
                sent = {}
                for _ in kube.paced(float(rate), duration=a.seconds):
                    u, t0, t1 = poster.post("BenchLive")
                    sent[u] = (t0, t1)
            elapsed = time.monotonic() - t_start
            complete = {k: arr.wait_for(sent, 60) for k, arr in arrivals.items()}
            time.sleep(0.5)  # the last checkpoint save
            cb = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
            row: dict = {"events": len(sent), "achieved_rate": round(len(sent) / elapsed, 1),
                         "load_avg": os.getloadavg()[0], "complete": complete}
            for k, arr in arrivals.items():
                lat = [(arr.seen[u] - t1) * 1000 for u, (_t0, t1) in sent.items() if u in arr.seen]
                row[k] = {"cpu_us_per_event": round((cb[k] - ca[k]) * 1e6 / max(len(sent), 1), 1),
                          "p50_ms": round(percentile(lat, 50), 2), "p99_ms": round(percentile(lat, 99), 2),
                          "max_ms": round(max(lat, default=float("nan")), 2), "missing": len(sent) - len(lat)}
            row["after_vs_before_cpu"] = round(row["after"]["cpu_us_per_event"]
                                               / max(row["before"]["cpu_us_per_event"], 1e-9), 3)
            out["rates"][rate] = row
            common.log(f"rate {rate}: {json.dumps(row)}")
        poster.close()
    finally:
        for p in procs.values():
            common.end(p)
        for arr in arrivals.values():
            arr.halt.set()
        kube.stop(cp)
    out["load_avg_end"] = os.getloadavg()[0]
    text = json.dumps(out, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)


if __name__ == "__main__":
    main()
