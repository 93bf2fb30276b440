"""The project's container image, for tests: built by scripts/image, inspected with buildah,
run with podman, all on the storage scripts/image keeps outside the checkout.

Why it exists: the image is verified, not assumed. scripts/image builds the Dockerfile from
a locally made Debian base (no registry is reachable); these helpers read its OCI config,
mount its root filesystem, and run it the way the Deployment runs it.

Running containers here: podman's default OCI runtime, crun, refuses this machine's hybrid
cgroup v1/v2 layout ("crun: cgroups in hybrid mode not supported, drop all controllers from
cgroupv2"), and podman's default ulimits (nofile 1048576) exceed the hard limits a sandbox
may impose ("setrlimit `RLIMIT_NOFILE`: Operation not permitted"). So containers run with
runc and with ulimits no higher than this process's own.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("KEE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "kube-event-exporter")
STORE = CACHE / "image"
STORAGE_ARGS = ["--root", str(STORE / "storage"), "--runroot", str(STORE / "run"), "--storage-driver", "vfs"]
BUILD_TIMEOUT = 1800  # s: a cold build (mmdebstrap base + PyPI wheels) takes ~5 min on 2 busy cores


def run(cmd: list[str], timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def buildah(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["buildah", *STORAGE_ARGS, *args], timeout=timeout, check=check)


def podman_base() -> list[str]:
    return ["podman", *STORAGE_ARGS, "--runtime", "runc"]


def ulimit_args() -> list[str]:
    """Limits the sandbox lets runc set: open files up to this process's hard limit; processes
    4096 (higher values were refused here even below the hard limit; the exporter runs a
    dozen threads)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = min(65536 if hard == resource.RLIM_INFINITY else hard, 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


@dataclass
class Image:
    ref: str           # e.g. localhost/kube-event-exporter:0.1.0
    build_log: str     # scripts/image's stderr: timings, size, smoke test

    @classmethod
    def build(cls) -> Image:
        """scripts/image: cached outside the checkout, seconds when nothing changed."""
        r = run([str(ROOT / "scripts" / "image")], timeout=BUILD_TIMEOUT)
        return cls(ref=r.stdout.strip().splitlines()[-1], build_log=r.stderr)

    @property
    def name(self) -> str:
        return self.ref.rsplit(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[1]

    def inspect(self) -> dict[str, Any]:
        return json.loads(buildah("inspect", "--type", "image", self.ref).stdout)

    def config(self) -> dict[str, Any]:
        """The OCI image config's `config` (User, Entrypoint, Cmd, Env, ExposedPorts, Labels...)."""
        return self.inspect()["OCIv1"]["config"]

    def rootfs(self) -> AbstractContextManager[Path]:
        """The image's root filesystem, mounted for inspection (do not write to it)."""
        return mounted(self.ref)

    def base_rootfs(self) -> AbstractContextManager[Path]:
        """The root filesystem of the base it was built FROM (its label names it)."""
        return mounted(self.config()["Labels"]["org.opencontainers.image.base.name"])

    def sizes(self) -> tuple[int, int]:
        """(uncompressed bytes of the root filesystem, gzip-compressed bytes of its layers as
        pushed to a registry), from the OCI layout scripts/image writes."""
        with self.rootfs() as root:
            uncompressed = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir())
        layout = STORE / "oci"
        blob = lambda digest: layout / "blobs" / digest.replace(":", "/")  # noqa: E731
        index = json.loads((layout / "index.json").read_text())
        (man,) = [m for m in index["manifests"] if m.get("annotations", {}).get(
            "org.opencontainers.image.ref.name") == self.tag]
        manifest = json.loads(blob(man["digest"]).read_text())
        return uncompressed, sum(layer["size"] for layer in manifest["layers"])

    def podman_run(self, *args: str, options: list[str] | None = None, **popen: Any) -> subprocess.Popen:
        """`podman run` of this image (host network: the test apiserver is on loopback)."""
        cmd = [*podman_base(), "run", "--rm", "--network", "host", *ulimit_args(), *(options or []), self.ref, *args]
        return subprocess.Popen(cmd, **popen)


@contextmanager
def mounted(ref: str) -> Iterator[Path]:
    """A working container of `ref`, its root filesystem mounted (vfs: a plain directory)."""
    ctr = buildah("from", "--pull-never", ref).stdout.strip()
    try:
        yield Path(buildah("mount", ctr).stdout.strip())
    finally:
        buildah("umount", ctr, check=False)
        buildah("rm", ctr, check=False)
