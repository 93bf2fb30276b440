"""Where ../shared/bench (gen_stream.py, floor.py) is: beside the checkout in CI, or the workspace's copy."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_bench() -> Path:
    for p in (os.environ.get("KEE_SHARED_BENCH"), ROOT.parent / "shared" / "bench", "/work/shared/bench"):
        if p and (Path(p) / "gen_stream.py").exists():
            return Path(p)
    raise FileNotFoundError("shared/bench/gen_stream.py not found beside the checkout; set KEE_SHARED_BENCH")


GEN_STREAM = shared_bench() / "gen_stream.py"
