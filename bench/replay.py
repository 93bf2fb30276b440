"""Benchmarks 1 and 4: replay to stdout against floor.py, and resident memory over stream sizes."""
from __future__ import annotations

import json
import os

from bench.common import (
    FLOOR,
    archive_commit,
    count_lines,
    exporter_argv,
    log,
    median,
    python,
    run_measured,
    stream,
    wait_venv,
)


def replay_done(stderr: bytes) -> dict:
    for line in stderr.splitlines():
        if b"replay_done" in line:
            try:
                return json.loads(line)
            except ValueError:
                pass
    return {}


def _check(r, what: str) -> None:
    if r.rc != 0:
        raise RuntimeError(f"{what} exited {r.rc}: {r.stderr[-2000:].decode('utf-8', 'replace')}")


def bench_replay_stdout(lines: int = 100_000, runs: int = 5, path=None, before: str | None = None) -> dict:
    """Exporter vs floor.py on the same file, alternating (the first of each pair alternates too).

    ``before`` (a commit): that commit's exporter runs in every round too (git archive of its
    exporter/, as `--commit` makes it), so before, after and the floor come from one run."""
    wait_venv()
    src = path or stream(lines)
    n = count_lines(src)
    exp_argv = exporter_argv("replay", src)
    floor_argv = [python(), FLOOR, src]
    before_sha = before_root = None
    if before:
        before_sha, before_root = archive_commit(before)
    exp, flo, old = [], [], []
    with open(os.devnull, "wb") as devnull:
        # one untimed warm-up of each: page cache, .pyc files
        run_measured(exp_argv, stdout=devnull)
        run_measured(floor_argv, stdout=devnull)
        if before_root:
            run_measured(exp_argv, stdout=devnull, cwd=before_root)
        for i in range(runs):
            order = [("exp", exp_argv), ("floor", floor_argv)] + ([("before", exp_argv)] if before_root else [])
            if i % 2:
                order.reverse()
            for name, argv in order:
                r = run_measured(argv, stdout=devnull, cwd=before_root if name == "before" else None)
                _check(r, name)
                {"exp": exp, "floor": flo, "before": old}[name].append(r)
            log(f"replay-stdout run {i + 1}/{runs}: exporter {exp[-1].cpu:.2f}s floor {flo[-1].cpu:.2f}s "
                f"ratio {exp[-1].cpu / flo[-1].cpu:.2f}"
                + (f"; before ({before_sha}) {old[-1].cpu:.2f}s ratio {old[-1].cpu / flo[-1].cpu:.2f}" if old else ""))
    done = replay_done(exp[-1].stderr)
    pair_ratios = [e.cpu / f.cpu for e, f in zip(exp, flo, strict=False)]
    out = {
        "lines": n, "runs": runs, "records": done.get("occurrences"),
        "exporter_cpu_s": [round(r.cpu, 3) for r in exp], "floor_cpu_s": [round(r.cpu, 3) for r in flo],
        "exporter_cpu_median_s": median(r.cpu for r in exp), "floor_cpu_median_s": median(r.cpu for r in flo),
        "exporter_user_median_s": median(r.user for r in exp), "exporter_sys_median_s": median(r.sys for r in exp),
        "exporter_wall_median_s": median(r.wall for r in exp), "floor_wall_median_s": median(r.wall for r in flo),
        "pair_ratios": [round(x, 3) for x in pair_ratios],
        "ratio_median": median(pair_ratios),
        "ratio_of_medians": median(r.cpu for r in exp) / median(r.cpu for r in flo),
        "ratio_of_minima": min(r.cpu for r in exp) / min(r.cpu for r in flo),
        "exporter_maxrss_mib": max(r.maxrss_kb for r in exp) / 1024,
        "floor_maxrss_mib": max(r.maxrss_kb for r in flo) / 1024,
    }
    out["exporter_us_per_line"] = out["exporter_cpu_median_s"] / n * 1e6
    out["floor_us_per_line"] = out["floor_cpu_median_s"] / n * 1e6
    if old:
        before_ratios = [b.cpu / f.cpu for b, f in zip(old, flo, strict=False)]
        out["before"] = {
            "commit": before_sha, "cpu_s": [round(r.cpu, 3) for r in old], "cpu_median_s": median(r.cpu for r in old),
            "us_per_line": median(r.cpu for r in old) / n * 1e6, "maxrss_mib": max(r.maxrss_kb for r in old) / 1024,
            "pair_ratios": [round(x, 3) for x in before_ratios], "ratio_median": median(before_ratios),
            "after_vs_before": median(e.cpu / b.cpu for e, b in zip(exp, old, strict=False)),
        }
    if out["records"]:
        out["exporter_records_per_s_wall"] = out["records"] / out["exporter_wall_median_s"]
    return out


def bench_memory(sizes=(10_000, 100_000, 1_000_000), interval: float = 0.2) -> dict:
    """Max RSS of `replay FILE > /dev/null` at each size (VmRSS sampled every `interval` s, and ru_maxrss)."""
    wait_venv()
    rows = []
    with open(os.devnull, "wb") as devnull:
        for n in sizes:
            src = stream(n)
            r = run_measured(exporter_argv("replay", src), stdout=devnull, sample_rss=interval, timeout=900)
            _check(r, f"replay {n}")
            done = replay_done(r.stderr)
            s = r.rss_samples_kb
            rows.append({"lines": n, "bytes": src.stat().st_size, "records": done.get("occurrences"),
                         "cpu_s": r.cpu, "wall_s": r.wall, "samples": len(s),
                         "max_sampled_rss_mib": max(s, default=0) / 1024,
                         "median_sampled_rss_mib": median(s) / 1024 if s else 0.0,
                         "maxrss_mib": r.maxrss_kb / 1024})
            log(f"memory {n}: max RSS {r.maxrss_kb / 1024:.1f} MiB ({len(s)} samples, max sampled "
                f"{max(s, default=0) / 1024:.1f} MiB), {r.cpu:.1f}s CPU")
    base = rows[0]["maxrss_mib"]
    for row in rows:
        row["vs_smallest"] = row["maxrss_mib"] / base if base else float("nan")
    return {"sizes": rows, "interval_s": interval,
            "growth_mib": rows[-1]["maxrss_mib"] - rows[0]["maxrss_mib"]}
