"""The project's watch-stream generator (bench/gen_stream.py), for tests that need a realistic stream."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN_STREAM = ROOT / "bench" / "gen_stream.py"
