"""Duplicates after a SIGKILL, and the live RSS, of two exporter sources side by side on one apiserver.

Why: issue goal 7 (a crash repeats <= 1 s of Events) and goal 6 (RSS of a stdout-only
`run`) are compared before/after on the same load, alternating, in one run:

    python -m bench.probes.crash_repeats --before a71709b [--rate 100] [--rounds 3]

Each round, per source: Events are POSTed at --rate; the exporter (file checkpoint,
stdout to a file) takes load for --up seconds, then is SIGKILLed at a random instant of
the next --window seconds (5: one whole cycle of the old 5 s checkpoint interval);
posting stops; a second exporter resumes from the checkpoint until every created Event
is out. Duplicates = records emitted twice (uid, resourceVersion); lost = created but
never emitted; RSS = VmRSS of the first exporter just before the kill.
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import subprocess
import threading
import time
from pathlib import Path

from bench import common, kube

# `rich` is in the dev venv only (import-linter needs it), not in the image; structlog imports it when present
WITHOUT_RICH = ["-c", "import runpy, sys; sys.modules['rich'] = None; "
                      "runpy.run_module('exporter', run_name='__main__')"]


def _exporter(cp, ns: str, root: Path, work: Path, name: str, no_rich: bool) -> tuple[subprocess.Popen, Path]:
    out = work / f"{name}.jsonl"
    argv = common.exporter_argv("run", "--kubeconfig", str(cp.kubeconfig), "--namespace", ns, "--listen", "",
                                "--log-level", "warning", "--checkpoint-file", str(work / "checkpoint.json"))
    if no_rich:
        argv[1:3] = WITHOUT_RICH
    with open(out, "wb") as f, open(work / f"{name}.stderr", "wb") as err:
        p = subprocess.Popen(argv, stdout=f, stderr=err, stdin=subprocess.DEVNULL, cwd=root)
    return p, out


def _ids(path: Path) -> list[tuple[str, str]]:
    out = []
    for line in path.read_bytes().splitlines():
        try:
            e = json.loads(line)["event"]
            out.append((e["uid"], e["resource_version"]))
        except (ValueError, KeyError):
            pass
    return out


def one(cp, root: Path, rate: float, up: float, window: float, no_rich: bool) -> dict:
    ns = cp.create_namespace(f"crash-{random.randrange(16**6):06x}", wait_default_sa=False)
    work = Path(cp.dir) / "crash" / ns
    work.mkdir(parents=True)
    poster = kube.EventPoster(cp, ns)
    made: list[str] = []
    halt = threading.Event()

    def load() -> None:
        for _ in kube.paced(rate):
            if halt.is_set():
                return
            made.append(poster.post()[0])
    t = threading.Thread(target=load, daemon=True)
    p1, out1 = _exporter(cp, ns, root, work, "first", no_rich)
    time.sleep(2.0)  # started and watching before the load begins
    t.start()
    time.sleep(up + window * random.random())
    rss_kib = common.vmrss_kb(p1.pid) or 0
    p1.send_signal(signal.SIGKILL)
    p1.wait()
    halt.set()
    t.join()
    poster.close()
    p2, out2 = _exporter(cp, ns, root, work, "second", no_rich)
    deadline = time.monotonic() + 60
    want = set(made)
    while time.monotonic() < deadline and not want <= {u for u, _ in _ids(out1) + _ids(out2)}:
        time.sleep(0.5)
    p2.terminate()
    p2.wait(30)
    got = collections.Counter(_ids(out1) + _ids(out2))
    return {"events": len(made), "lost": len(want - {u for u, _ in got}),
            "duplicated": sum(n - 1 for n in got.values() if n > 1), "rss_mib": round(rss_kib / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="git revision measured as 'before' (git archive)")
    ap.add_argument("--rate", type=float, default=100.0, help="Events/s POSTed")
    ap.add_argument("--up", type=float, default=8.0, help="seconds of load before the SIGKILL window")
    ap.add_argument("--window", type=float, default=5.0, help="the SIGKILL comes at a random instant of it (s)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--without-rich", action="store_true", help="also run each side with `rich` made unimportable")
    a = ap.parse_args()
    after_root = common.EXPORTER_ROOT
    before_root = common.use_commit(a.before)
    cp = kube.start_control_plane()
    sides = [("before", before_root, False), ("after", after_root, False)]
    if a.without_rich:
        sides += [("before, no rich", before_root, True), ("after, no rich", after_root, True)]
    res: dict[str, list[dict]] = {name: [] for name, _, _ in sides}
    try:
        for r in range(a.rounds):
            for name, root, no_rich in sides:
                res[name].append(one(cp, root, a.rate, a.up, a.window, no_rich))
                common.log(f"round {r} {name}: {res[name][-1]}")
    finally:
        kube.stop(cp)
    print(json.dumps({"rate": a.rate, "up_s": a.up, "window_s": a.window, "before": a.before, **res}, indent=1))


if __name__ == "__main__":
    main()
