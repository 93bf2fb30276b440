"""Probe (not a benchmark): where replay's CPU per line goes, stage by stage, beside floor.py's stages.

The replay benchmark gives one ratio (exporter CPU / floor.py CPU); this splits both sides
into their steps, timed in one process over the same lines, rounds alternating:

    floor.py:  orjson.loads(line) | dumps(envelope["object"]["metadata"]) + b"\\n"
    exporter:  wire.decode_line(line) | records.record(...) | wire.encode_record(r) + b"\\n"
               | the rest of Pipeline.handle and the stdout sink (a whole pipeline into a null
                 writer, minus the three stages above)

plus each side's start-up (the same command on an empty input, in a fresh interpreter). The
sum of the exporter's stages against the floor's is the ratio replay could reach with no
Python around the library calls at all.

    PY -m bench.probes.replay_stages [--lines 20000] [--rounds 7] [STREAM]
    PY -m bench.probes.replay_stages --callgrind [--lines 5000]      # instructions, not seconds

``--callgrind`` counts instructions instead (valgrind's callgrind, Debian package valgrind):
each command on an empty input and on the first ``--lines`` lines, so start-up and per-line
cost come apart exactly, whatever the machine's load; the top C functions of the per-line
part are printed for both (callgrind_annotate), e.g. the interpreter loop = Python glue.
"""
from __future__ import annotations

import argparse
import itertools
import os
import re
import statistics
import subprocess
import sys
import time

from bench.common import FLOOR, count_lines, exporter_argv, python, stream, wait_venv


def _timed(fn, lines) -> float:
    t0 = time.process_time()
    fn(lines)
    return (time.process_time() - t0) / len(lines) * 1e6


def _startup(argv: list, runs: int) -> float:
    """Median CPU seconds of a command on an empty input (children's rusage)."""
    out = []
    for _ in range(runs):
        before = os.times()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        after = os.times()
        out.append(after.children_user + after.children_system - before.children_user - before.children_system)
    return statistics.median(out)


def _callgrind(argv: list, out: str) -> int:
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=1800)
    text = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        if "PROGRAM TOTALS" in line:
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError(f"no total in {out}")


def _top(out: str, base: str, n: int = 8) -> list[tuple[int, str]]:
    """The C functions with the most own instructions in ``out`` minus ``base`` (start-up)."""
    def own(path: str) -> dict[str, int]:
        text = subprocess.run(["callgrind_annotate", "--threshold=99", path], capture_output=True, text=True,
                              check=True).stdout
        d: dict[str, int] = {}
        for line in text.split("file:function", 1)[-1].splitlines():
            m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$", line)
            if m:
                where = m.group(2).split(" [")
                lib = where[1].rstrip("]").rsplit("/", 1)[-1] if len(where) > 1 else ""
                name = where[0].rsplit("/", 1)[-1] + (f" ({lib.split('.')[0]})" if lib else "")
                d[name] = d.get(name, 0) + int(m.group(1).replace(",", ""))
        return d
    a, b = own(out), own(base)
    return sorted(((v - b.get(k, 0), k) for k, v in a.items()), reverse=True)[:n]


def callgrind(src: str, lines: int) -> None:
    import tempfile
    with tempfile.TemporaryDirectory(prefix="kee-cg-") as d:
        part = os.path.join(d, "part.jsonl")
        with open(src, "rb") as f, open(part, "wb") as w:
            w.writelines(itertools.islice(f, lines))
        sides = {"floor.py": lambda p: [python(), str(FLOOR), p],
                 "exporter replay": lambda p: exporter_argv("replay", p)}
        for name, argv in sides.items():
            base, full = os.path.join(d, "cg.base"), os.path.join(d, "cg.full")
            start = _callgrind(argv(os.devnull), base)
            total = _callgrind(argv(part), full)
            per = (total - start) / lines
            print(f"{name:16s} start-up {start / 1e6:7.1f} M instructions; per line {per / 1e3:6.1f} k")
            for v, k in _top(full, base):
                print(f"    {v / lines / 1e3:6.1f} k/line  {k}")
        sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stream", nargs="?", help="watch lines (default: the benchmark's cached 100k stream)")
    ap.add_argument("--lines", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--callgrind", action="store_true", help="count instructions with valgrind instead")
    a = ap.parse_args()
    wait_venv()
    if a.callgrind:
        callgrind(a.stream or str(stream(100_000)), a.lines)
        return
    import orjson

    from exporter import records, wire
    from exporter.metrics import Stats
    from exporter.pipeline import Pipeline
    from exporter.sinks.stdout import StdoutSink

    src = a.stream or str(stream(100_000))
    with open(src, "rb") as f:
        lines = list(itertools.islice(f, a.lines))
    envs = [wire.decode_line(x)[0] for x in lines]
    envs = [e for e in envs if e.type != "BOOKMARK"]
    observed = records.clock.now()
    recs = [records.record(e.object, e.type == "MODIFIED", None, 8192, observed) for e in envs]
    loads, dumps = orjson.loads, orjson.dumps

    def floor_loads(ls):
        for x in ls:
            loads(x)

    docs = [loads(x) for x in lines]

    def floor_dumps(ds):
        for d in ds:
            if d["type"] != "BOOKMARK":
                dumps(d["object"]["metadata"]) + b"\n"

    def floor_all(ls):
        for x in ls:
            d = loads(x)
            if d["type"] != "BOOKMARK":
                dumps(d["object"]["metadata"]) + b"\n"

    decode = wire.decode_line

    def ours_decode(ls):
        for x in ls:
            decode(x)

    record = records.record

    def ours_record(es):
        for e in es:
            record(e.object, False, None, 8192, observed)

    enc = wire.encode_record

    def ours_encode(rs):
        for r in rs:
            enc(r) + b"\n"

    def ours_all(ls):
        out = open(os.devnull, "wb")  # noqa: SIM115 - closed below
        sink = StdoutSink(out)
        p = Pipeline([sink], stats=Stats(), live=False)  # as replay builds it (app.py)
        s = p.stream("probe", None)
        handle = p.handle
        for x in ls:
            env = decode(x)[0]
            handle(s, env.type, env.object)
        p.flush()
        out.close()

    stages = {"floor: orjson.loads": (floor_loads, lines), "floor: dumps(metadata)": (floor_dumps, docs),
              "floor: whole loop": (floor_all, lines),
              "ours: decode_line": (ours_decode, lines), "ours: record()": (ours_record, envs),
              "ours: encode_record": (ours_encode, recs), "ours: whole pipeline to a buffer": (ours_all, lines)}
    res: dict[str, list[float]] = {k: [] for k in stages}
    for r in range(a.rounds):
        order = list(stages.items())
        if r % 2:
            order.reverse()
        for name, (fn, data) in order:
            res[name].append(_timed(fn, data) * len(data) / len(lines))  # per input line
    med = {k: statistics.median(v) for k, v in res.items()}
    n = count_lines(src)
    st_floor = _startup([python(), str(FLOOR), os.devnull], 5)
    st_ours = _startup(exporter_argv("replay", os.devnull), 5)
    print(f"{len(lines)} lines of {src} ({n} in the file), {a.rounds} alternating rounds, CPU us per input line "
          f"(median); load {os.getloadavg()[0]:.2f}")
    for k, v in med.items():
        print(f"  {k:36s} {v:6.2f}   ({', '.join(f'{x:.2f}' for x in res[k])})")
    stage_sum = med["ours: decode_line"] + med["ours: record()"] + med["ours: encode_record"]
    glue = med["ours: whole pipeline to a buffer"] - stage_sum
    print(f"  ours: the three stages             {stage_sum:6.2f}   (library calls and record())")
    print(f"  ours: pipeline + sink glue         {glue:6.2f}   (whole pipeline minus the three stages)")
    print(f"start-up CPU s (empty input, median of 5): floor.py {st_floor:.3f}, exporter replay {st_ours:.3f}")
    whole_f = st_floor + med["floor: whole loop"] * n / 1e6
    whole_o = st_ours + med["ours: whole pipeline to a buffer"] * n / 1e6
    print(f"predicted for {n} lines: floor {whole_f:.2f} s, exporter {whole_o:.2f} s, ratio {whole_o / whole_f:.2f}; "
          f"stages only (no glue, no start-up): {stage_sum / med['floor: whole loop']:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
