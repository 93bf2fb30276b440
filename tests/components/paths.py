"""Where scripts/testbin put the binaries, and fail-fast when one is missing.

Why this exists: the components are built into a cache OUTSIDE the checkout
(so CI's fresh clone reuses it). Tests that need one must FAIL - never skip -
with a message saying how to install it.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """Same rule as scripts/testbin: $KEE_CACHE, else $XDG_CACHE_HOME or ~/.cache, /kube-event-exporter."""
    if os.environ.get("KEE_CACHE"):
        return Path(os.environ["KEE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kube-event-exporter"


class MissingComponent(RuntimeError):
    """A binary/jar the tests need is not installed."""


def binary(name: str) -> Path:
    """Absolute path of a component binary in $CACHE/bin, or MissingComponent telling what to run."""
    p = cache_dir() / "bin" / name
    if p.is_file() and os.access(p, os.X_OK):
        return p
    raise MissingComponent(
        f"{name} is not installed in {p.parent}: run `scripts/testbin all` "
        f"(or `scripts/testbin <component>`) first; KEE_CACHE={cache_dir()}")


def kwok_stages() -> Path:
    """The default KWOK Stage objects (node initialize/heartbeat, pod ready/complete/delete)."""
    p = cache_dir() / "kwok" / "stages.yaml"
    if p.is_file():
        return p
    raise MissingComponent(f"{p} is missing: run `scripts/testbin kwok` first")


def kafka_libs() -> Path:
    libs = cache_dir() / "kafka" / "libs"
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise MissingComponent(f"the Kafka jars are not in {libs}: run `scripts/testbin kafka` first")
    java = shutil.which("java")
    if not java:
        raise MissingComponent("java is not on PATH (the Kafka broker needs a JRE 17+)")
    return libs


def new_workdir(prefix: str) -> Path:
    """A fresh temporary directory for one component's data, certs and log."""
    base = os.environ.get("KEE_TEST_TMP")
    if base:
        Path(base).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"kee-{prefix}-", dir=base))
