"""The benchmark harness (bench/, issue 7) still runs: replay-to-stdout on a 200-line stream.

Not a timed test: it asserts only that the harness measures and reports, never a figure.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_bench_replay_runs_on_a_small_stream(tmp_path):
    out = tmp_path / "BENCHMARKS.md"
    raw = tmp_path / "raw.json"
    env = {**os.environ, "KEE_CACHE": str(tmp_path / "cache")}  # the stream goes to a private cache
    p = subprocess.run([sys.executable, "-m", "bench", "--only", "replay", "--lines", "200", "--runs", "1",
                        "--docs", str(out), "--json", str(raw)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Overhead ratio" in p.stdout
    import json
    r = json.loads(raw.read_text())["results"]["replay"]
    assert r["lines"] == 200 and r["records"] > 0
    assert r["exporter_cpu_median_s"] > 0 and r["floor_cpu_median_s"] > 0
    doc = out.read_text()
    assert "## Machine" in doc and "## How to rerun" in doc and "bench-results" in doc
