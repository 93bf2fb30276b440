"""What one file checkpoint save costs (write, fsync, rename, fsync the directory), on a given directory.

Why: checkpoint.file_interval_seconds (0.2 s) bounds the saves to 5/s; this says what
5 saves/s cost in wall time and CPU on this machine's disk:

    python -m bench.probes.checkpoint_fsync [--dir DIR] [--saves 200] [--streams 1]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

from exporter.checkpoint.file import FileStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=None, help="where the checkpoint file goes (default: a temp dir)")
    ap.add_argument("--saves", type=int, default=200)
    ap.add_argument("--streams", type=int, default=1, help="stream keys in the document")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        store = FileStore(f"{d}/checkpoint.json")
        wall, cpu = [], []
        for i in range(a.saves):
            positions = {f"events.k8s.io/v1/ns-{k}": str(1_000_000 + i) for k in range(a.streams)}
            w0, c0 = time.perf_counter(), time.process_time()
            store.save(positions)
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
            time.sleep(0.01)  # not back to back: one save per checkpoint tick
        wall.sort()
        print(json.dumps({"dir": d, "saves": a.saves, "streams": a.streams,
                          "wall_ms": {"p50": round(statistics.median(wall) * 1e3, 3),
                                      "p99": round(wall[int(0.99 * (len(wall) - 1))] * 1e3, 3),
                                      "max": round(wall[-1] * 1e3, 3)},
                          "cpu_us_mean": round(statistics.fmean(cpu) * 1e6, 1),
                          "at_5_per_s": {"wall_ms_per_s": round(5 * statistics.fmean(wall) * 1e3, 2),
                                         "cpu_ms_per_s": round(5 * statistics.fmean(cpu) * 1e3, 3)}}))


if __name__ == "__main__":
    main()
