"""CPU of two exporter sources (file checkpoint) side by side: idle, then under the same Event load.

Why: the file checkpoint now follows every ack within 0.2 s (up to 5 saves/s, two fsyncs
each) where it saved every 5 s; this says what that costs per Event and when idle:

    python -m bench.probes.checkpoint_cpu --before a71709b [--rate 100] [--seconds 20] [--idle 20]

Both exporters watch one namespace at the same time (stdout to /dev/null); CPU from
/proc/PID/stat (utime+stime) over the idle period, then over the load period.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from bench import common, kube


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git revision measured as 'before' (git archive)")
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds of load")
    ap.add_argument("--idle", type=float, default=20.0, help="seconds idle before the load")
    a = ap.parse_args()
    roots = {"before": common.use_commit(a.before), "after": common.EXPORTER_ROOT}
    cp = kube.start_control_plane()
    procs: dict[str, subprocess.Popen] = {}
    try:
        ns = cp.create_namespace("ckpt-cpu", wait_default_sa=False)
        work = Path(cp.dir) / "ckpt-cpu"
        work.mkdir()
        with open(os.devnull, "wb") as devnull:
            for name, root in roots.items():
                procs[name] = subprocess.Popen(
                    common.exporter_argv("run", "--kubeconfig", str(cp.kubeconfig), "--namespace", ns, "--listen", "",
                                         "--log-level", "warning", "--checkpoint-file", str(work / f"{name}.json")),
                    stdout=devnull, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, cwd=root)
        time.sleep(8)  # both started and watching
        c0 = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
        time.sleep(a.idle)
        c1 = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
        poster = kube.EventPoster(cp, ns)
        n = 0
        for _ in kube.paced(a.rate, duration=a.seconds):
            poster.post()
            n += 1
        poster.close()
        time.sleep(2)  # the last records out, the last checkpoint saved
        c2 = {k: common.proc_cpu(p.pid) for k, p in procs.items()}
        out = {k: {"idle_cpu_ms_per_s": round((c1[k] - c0[k]) * 1e3 / a.idle, 2),
                   "load_cpu_us_per_event": round((c2[k] - c1[k]) * 1e6 / n, 1)} for k in procs}
        print(json.dumps({"before": a.before, "rate": a.rate, "events": n, "idle_s": a.idle,
                          "load_avg": os.getloadavg()[0], **out}, indent=1))
    finally:
        for p in procs.values():
            common.end(p)
        kube.stop(cp)


if __name__ == "__main__":
    main()
