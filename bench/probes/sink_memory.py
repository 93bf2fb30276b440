"""Max RSS of a replay to each network sink over stream size (issue 16, goal 6: every configuration flat).

    python -m bench.probes.sink_memory [--sizes 10000,100000,1000000] [--sinks kafka,otlp-grpc]

The stdout sink's figures are `python -m bench --only memory`; this runs the same streams
into the local Kafka broker and OTLP Collector (tests/components), one replay each.
"""
from __future__ import annotations

import argparse
import json
import os
import uuid

from bench.common import exporter_argv, log, run_measured, stream
from bench.replay import _check
from bench.sinks import _components, _sink_args


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--sinks", default="kafka,otlp-grpc")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    sinks = [s.strip() for s in a.sinks.split(",") if s.strip()]
    Collector, KafkaBroker = _components()
    broker = KafkaBroker().start() if "kafka" in sinks else None
    col = Collector().start() if any(s.startswith("otlp") for s in sinks) else None
    out: dict[str, list[dict]] = {s: [] for s in sinks}
    try:
        with open(os.devnull, "wb") as devnull:
            for n in sizes:
                src = stream(n)
                for s in sinks:
                    topic = broker.create_topic(f"mem-{uuid.uuid4().hex[:8]}") if s == "kafka" and broker else ""
                    r = run_measured(exporter_argv("replay", src, *_sink_args(s, broker, col, topic)),
                                     stdout=devnull, timeout=1800)
                    _check(r, f"replay {n} to {s}")
                    out[s].append({"lines": n, "maxrss_mib": round(r.maxrss_kb / 1024, 1), "cpu_s": round(r.cpu, 1)})
                    log(f"{s} {n}: max RSS {r.maxrss_kb / 1024:.1f} MiB, {r.cpu:.1f} s CPU")
                    if col is not None and col.output_path.exists():
                        col.output_path.write_bytes(b"")  # 1M records would fill the disk with JSON
    finally:
        for c in (broker, col):
            if c is not None:
                c.stop()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
