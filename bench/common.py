"""Shared machinery: paths, cached streams, measured child processes, RSS sampling, stats.

Every figure here comes from whole processes: CPU from the kernel's rusage of
the child (os.wait4) or from /proc/PID/stat deltas, memory from ru_maxrss and
from /proc/PID/status VmRSS sampled while the process runs.
"""
from __future__ import annotations

import hashlib
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GEN = REPO / "bench" / "gen_stream.py"   # the project's own watch-stream generator (standard library only)
FLOOR = REPO / "bench" / "floor.py"      # the floor baseline: orjson parse + one small line per Event
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


#: Where the measured exporter is imported from (`python -m exporter` runs with this as its cwd):
#: the checkout (default), or a snapshot of a commit made by use_commit().
EXPORTER_ROOT: Path = REPO
SOURCE = {"kind": "worktree"}


def archive_commit(rev: str) -> tuple[str, Path]:
    """A commit's exporter/ and schemas/, `git archive`d into the cache and compiled: (short sha, its root).

    What `--commit` measures, and the `--...-before REV` side of a before/after run (run from that root)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = cache_dir() / "bench" / "src" / sha
    if not (dest / "exporter").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "exporter", "schemas"], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    precompile(dest)
    return sha, dest


def use_commit(rev: str = "HEAD") -> Path:
    """Measure a commit as committed (:func:`archive_commit`) instead of the worktree."""
    global EXPORTER_ROOT, SOURCE
    sha, dest = archive_commit(rev)
    EXPORTER_ROOT = dest
    SOURCE = {"kind": "commit", "commit": sha}
    return dest


def worktree_changes() -> list[str]:
    """Uncommitted changes under exporter/ and schemas/ (what a worktree measurement includes)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "exporter", "schemas"], cwd=REPO,
                             capture_output=True, text=True, timeout=30).stdout
    except Exception:  # noqa: BLE001
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def cache_dir() -> Path:
    """Same rule as scripts/testbin and tests/components/paths.py."""
    if os.environ.get("KEE_CACHE"):
        return Path(os.environ["KEE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kube-event-exporter"


def python() -> str:
    """The project's venv interpreter (the one that has the exporter's dependencies)."""
    venv = cache_dir() / "venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- streams -------------------------------------------------------------------------

def stream(n: int, cache: Path | None = None) -> Path:
    """The gen_stream.py stream of n lines, generated once into the cache (keyed by the generator's hash)."""
    digest = hashlib.sha1(GEN.read_bytes()).hexdigest()[:8]
    d = (cache or cache_dir() / "bench" / "streams")
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"s-{n}-{digest}.jsonl"
    if not path.exists():
        log(f"generating {n} lines -> {path}")
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, str(GEN), "-n", str(n), "-o", str(tmp)], check=True)
        tmp.rename(path)
    return path


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            n += chunk.count(b"\n")
    return n


# -- measured processes --------------------------------------------------------------

@dataclass
class Run:
    argv: list
    wall: float
    user: float
    sys: float
    maxrss_kb: int                 # ru_maxrss of the child (KiB)
    rc: int
    rss_samples_kb: list = field(default_factory=list)
    stderr: bytes = b""

    @property
    def cpu(self) -> float:
        return self.user + self.sys

    @property
    def max_sampled_rss_kb(self) -> int:
        return max(self.rss_samples_kb, default=0)


def _status_kb(pid: int, field: bytes) -> int | None:
    """One kB figure (VmRSS, VmHWM, ...) from /proc/PID/status, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def vmrss_kb(pid: int) -> int | None:
    return _status_kb(pid, b"VmRSS:")


def proc_hwm_kb(pid: int) -> int | None:
    return _status_kb(pid, b"VmHWM:")


def proc_cpu_split(pid: int) -> tuple[float, float] | None:
    """(utime, stime) of a live process, seconds (from /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu(pid: int) -> float | None:
    """utime+stime of a live process, seconds."""
    split = proc_cpu_split(pid)
    return None if split is None else split[0] + split[1]


class RssSampler(threading.Thread):
    """Samples VmRSS of pid every `interval` seconds until stopped or the process is gone."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            v = vmrss_kb(self.pid)
            if v is None:
                return
            self.samples.append(v)
            self._halt.wait(self.interval)

    def stop(self) -> list[int]:
        self._halt.set()
        self.join(2)
        return self.samples


def venv_ok() -> bool:
    return subprocess.run([python(), "-c", "import exporter.cli, exporter.log, orjson, msgspec, confluent_kafka"],
                          cwd=EXPORTER_ROOT, capture_output=True, timeout=60).returncode == 0


def wait_venv(timeout: float = 180) -> None:
    """The venv is shared: `scripts/testbin all` elsewhere may be reinstalling it. Wait until it imports.

    Then the exporter's bytecode is written once (:func:`precompile`)."""
    deadline = time.monotonic() + timeout
    warned = False
    while not venv_ok():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{python()} cannot import the exporter's dependencies (venv broken?)")
        if not warned:
            log("the venv does not import the exporter (being reinstalled by scripts/testbin?): waiting")
            warned = True
        time.sleep(3)
    precompile()


def precompile(root: Path | None = None) -> None:
    """Write the exporter's bytecode (__pycache__) before anything is measured.

    An installed package has it (pip compiles at install, the image at build); a checkout
    run with PYTHONDONTWRITEBYTECODE=1 set would otherwise compile every module from
    source at every start, ~25 ms of CPU per measured process that no user pays.
    """
    root = root or EXPORTER_ROOT
    subprocess.run([python(), "-m", "compileall", "-q", str(root / "exporter")], cwd=root,
                   capture_output=True, timeout=120, env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})


def run_measured(argv: list, *, stdout=None, stdin=None, sample_rss: float | None = None,
                 timeout: float = 300, cwd: Path | None = None, env: dict | None = None) -> Run:
    """Run argv to completion; CPU and ru_maxrss from os.wait4 (this child only), stderr kept.

    A run that failed because the shared venv was being reinstalled meanwhile is run again."""
    cwd = cwd or EXPORTER_ROOT
    for _attempt in range(3):
        r = _run_measured(argv, stdout=stdout, stdin=stdin, sample_rss=sample_rss, timeout=timeout, cwd=cwd,
                          env=env)
        if r.rc == 0 or b"ModuleNotFoundError" not in r.stderr and b"ImportError" not in r.stderr:
            return r
        wait_venv()
        if hasattr(stdout, "seek"):
            stdout.seek(0)
            stdout.truncate()
    return r


TIME = "/usr/bin/time"


def _child_of(pid: int, timeout: float = 5.0) -> int:
    """The (single) child of pid, as soon as it exists (the exporter under /usr/bin/time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:
            return pid
        if kids:
            return int(kids[0])
        time.sleep(0.005)
    return pid


def _run_measured(argv: list, *, stdout=None, stdin=None, sample_rss: float | None = None,
                  timeout: float = 300, cwd: Path = REPO, env: dict | None = None) -> Run:
    """One measured run.

    Why /usr/bin/time: subprocess starts children with vfork, and on exec Linux folds the high-water
    RSS of the *parent's* address space into the child's ru_maxrss; after this process has held a large
    buffer, every child would report that peak. /usr/bin/time is a small process that forks the
    command itself, and writes the command's own user/sys/max RSS to a file (-o).
    """
    import tempfile
    out = stdout if stdout is not None else subprocess.DEVNULL
    full_env = dict(os.environ)
    full_env.update(env or {})
    use_time = os.access(TIME, os.X_OK)
    tf = tempfile.NamedTemporaryFile(prefix="kee-bench-time-", delete=False) if use_time else None
    cmd = [str(a) for a in argv]
    if use_time:
        tf.close()
        cmd = [TIME, "-f", "%U %S %M %x", "-o", tf.name, *cmd]
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, stdin=stdin or subprocess.DEVNULL,
                         cwd=cwd, env=full_env)
    sampler = None
    if sample_rss:
        sampler = RssSampler(_child_of(p.pid) if use_time else p.pid, sample_rss)
        sampler.start()
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)
    reader.start()
    killer = threading.Timer(timeout, lambda: _kill_tree(p.pid))
    killer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        killer.cancel()
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    reader.join(10)
    samples = sampler.stop() if sampler else []
    user, sys_, maxrss, rc = ru.ru_utime, ru.ru_stime, ru.ru_maxrss, p.returncode
    if use_time:
        try:
            text = Path(tf.name).read_text().split("\n")
            fields = [ln for ln in text if ln.strip() and not ln.startswith("Command")][-1].split()
            user, sys_, maxrss, rc = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
        except (OSError, IndexError, ValueError):
            pass
        finally:
            os.unlink(tf.name)
    err = b"".join(err_chunks)
    return Run([str(a) for a in argv], wall, user, sys_, maxrss, rc, samples, err)


def _kill_tree(pid: int) -> None:
    try:
        for kid in open(f"/proc/{pid}/task/{pid}/children").read().split():
            os.kill(int(kid), 9)
        os.kill(pid, 9)
    except OSError:
        pass


# -- stats ----------------------------------------------------------------------------

def median(xs) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def end(p: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a measured process: SIGTERM, then SIGKILL if it is not gone within ``timeout`` seconds."""
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)


def percentile(xs, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(xs)
    if not s:
        return float("nan")
    k = max(0, min(len(s) - 1, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


# -- machine ----------------------------------------------------------------------------

def machine() -> dict:
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except Exception:  # noqa: BLE001
        rev = "?"
    if SOURCE["kind"] == "commit":
        rev, changes = SOURCE["commit"], []
    else:
        changes = worktree_changes()
    return {"source": SOURCE["kind"], "uncommitted": changes,
            "nproc": len(os.sched_getaffinity(0)), "cpu_model": model, "mem_gib": round(mem_kb / 1048576, 1),
            "kernel": platform.release(), "python": python_version(), "commit": rev,
            "loadavg": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def python_version() -> str:
    try:
        return subprocess.run([python(), "-c", "import sys; print(sys.version.split()[0])"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except Exception:  # noqa: BLE001
        return platform.python_version()


def exporter_argv(*args: str) -> list:
    return [python(), "-m", "exporter", *args]
