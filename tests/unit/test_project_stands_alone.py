"""The project stands alone: a plain clone has everything its tests and benchmarks load.

Nothing tracked may load a sibling directory of the checkout or name a path of a
development machine; the stream generator and the floor baseline are the
project's own (bench/), deterministic, and produce what the tests rely on.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]
# A path outside the repository: the workspace's shared folder, a home or workspace directory.
OUTSIDE = re.compile(rb"\.\./shared|/w[o]rk/|/r[o]ot/|/home/[a-z]")  # [o]: the pattern never matches itself
# Where such a string is legitimate: the Dockerfile cleans root's pip cache inside the image,
# and this test names the patterns.
ALLOWED = {"tests/unit/test_project_stands_alone.py": None, "Dockerfile": rb"/root/\.cache"}


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p]


def test_no_tracked_file_names_a_path_outside_the_repository():
    offenders = []
    for rel in tracked_files():
        path = ROOT / rel
        if not path.is_file() or rel in ALLOWED and ALLOWED[rel] is None:
            continue
        for lineno, line in enumerate(path.read_bytes().splitlines(), 1):
            if OUTSIDE.search(line) and not (rel in ALLOWED and re.search(ALLOWED[rel], line)):
                offenders.append(f"{rel}:{lineno}: {line.decode('utf-8', 'replace').strip()[:120]}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def generate(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / ("s-" + "-".join(a.replace("/", "_") for a in args) + ".jsonl")
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_stream.py"), *args, "-o", str(out)], check=True,
                   timeout=120)
    return out


def test_generated_stream_is_deterministic_and_realistic(tmp_path):
    a = generate(tmp_path, "-n", "3000", "--seed", "7")
    b = generate(tmp_path, "-n", "3000", "--seed", "7", "--api", "mixed")
    assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest()
    types, apis, rvs, uids_seen = Counter(), Counter(), [], Counter()
    non_ascii = large = cluster_scoped = 0
    for line in a.read_bytes().splitlines():
        env = orjson.loads(line)
        obj = env["object"]
        types[env["type"]] += 1
        apis[obj["apiVersion"]] += 1
        rvs.append(int(obj["metadata"]["resourceVersion"]))
        if env["type"] == "BOOKMARK":
            continue
        uids_seen[obj["metadata"]["uid"]] += 1
        note = obj.get("note") or obj.get("message") or ""
        non_ascii += not note.isascii()
        large += len(note) > 4000
        regarding = obj.get("regarding") or obj.get("involvedObject")
        cluster_scoped += "namespace" not in regarding
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs), "resourceVersion must rise strictly"
    assert types["BOOKMARK"] == 5 and types["MODIFIED"] > 500 and types["DELETED"] > 20 and types["ADDED"] > 1500
    assert apis["v1"] > 1000 and apis["events.k8s.io/v1"] > 1000
    assert max(uids_seen.values()) > 5, "recurrences: the same Event object comes back"
    assert non_ascii > 10 and cluster_scoped > 10


def test_single_api_streams_carry_only_that_shape(tmp_path):
    for api in ("v1", "events.k8s.io/v1"):
        path = generate(tmp_path, "-n", "600", "--api", api)
        assert {orjson.loads(line)["object"]["apiVersion"] for line in path.read_bytes().splitlines()} == {api}


def test_floor_writes_one_line_per_event_and_none_per_bookmark(tmp_path):
    path = generate(tmp_path, "-n", "1200")
    events = sum(1 for line in path.read_bytes().splitlines() if orjson.loads(line)["type"] != "BOOKMARK")
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "floor.py"), str(path)], capture_output=True,
                         check=True, timeout=60).stdout
    assert out.count(b"\n") == events == 1200 - 2
