"""The demo tells the article's story within its first minute, on its own real control plane.

scripts/demo.py is run as a new user would (its stdout piped: JSON lines), for a bit over a
minute: every situation the article lists is a record within 60 s of the first one, and the
exporter logs no warning while nothing goes wrong.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[2]


def at(rec: dict) -> float:
    return datetime.fromisoformat(rec["observed_timestamp"].replace("Z", "+00:00")).timestamp()


def test_the_demo_shows_every_situation_of_the_story_within_a_minute(tmp_path):
    err = tmp_path / "demo.err"
    with open(err, "wb") as e:
        r = subprocess.run([sys.executable, "scripts/demo.py"], cwd=ROOT, stdout=subprocess.PIPE, stderr=e,
                           env={**os.environ, "KEE_DEMO_SECONDS": "62"}, timeout=240)
    assert r.returncode == 0, err.read_text()[-2000:]
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    t0 = min(at(x) for x in recs)
    first: dict[str, float] = {}
    for x in recs:
        key = x["reason"] + ("*" if x.get("derived_from") else "")
        first.setdefault(key, at(x) - t0)
    story = {
        "BackOff": "a crash loop",
        "OOMKilled*": "a container OOMKilled (from Pod status: no Event exists)",
        "Evicted": "an eviction (the kubelet's Event)",
        "Evicted*": "an eviction (the Pod's failure)",
        "FailedScheduling": "a pod no node can fit",
        "Failed": "an image pull failure",
        "NodeNotReady": "a node whose heartbeat stops",
        "NodeReady": "the node back",
    }
    late = {why: first.get(reason) for reason, why in story.items() if first.get(reason, 999) > 60}
    assert not late, (late, first)
    assert any("ErrImagePull" in (x["message"] or "") for x in recs if x["reason"] == "Failed")
    logs = [json.loads(line) for line in err.read_text().splitlines() if line.startswith("{")]
    assert [x for x in logs if x.get("level") in ("warning", "error")] == []
