"""Ports, logs and processes for the real components the tests start.

Why this exists: every component (etcd, kube-apiserver, Kafka, the Collector...)
is a child process on loopback. Tests must (1) find free ports without racing
each other, (2) keep each component's output in a log file whose tail is printed
when a test fails, and (3) never leave a process behind - not on a clean stop,
not when pytest is interrupted, not even when pytest itself is SIGKILLed
(children get PR_SET_PDEATHSIG=SIGKILL).
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

# Every ManagedProcess that is currently running, for the failure hook and atexit.
RUNNING: dict[int, ManagedProcess] = {}
_LOCK = threading.Lock()
_HANDED_OUT: set[int] = set()


class ComponentError(RuntimeError):
    """A component failed to start or to become ready (the message has its log tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now, never handed out twice in this process."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        with _LOCK:
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise ComponentError("no free loopback port found")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path | str, lines: int = 40) -> str:
    """The last `lines` lines of a (possibly large) text file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(deque(data.splitlines(), maxlen=lines))


def wait_until(predicate: Callable[[], object], timeout: float, what: str,
               interval: float = 0.1, proc: ManagedProcess | None = None):
    """Poll `predicate` until it returns a truthy value; fail with `what` and the log tail."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ComponentError(
                f"{proc.name} exited with code {proc.returncode} while waiting for {what}\n"
                f"--- last lines of {proc.log_path} ---\n{proc.tail()}")
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - readiness probes fail in many ways
            last_exc = e
        time.sleep(interval)
    msg = f"timed out after {timeout:.0f}s waiting for {what}"
    if last_exc is not None:
        msg += f" (last error: {last_exc!r})"
    if proc is not None:
        msg += f"\n--- last lines of {proc.log_path} ---\n{proc.tail()}"
    raise ComponentError(msg)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it when the parent dies.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


class ManagedProcess:
    """One component process: its argv, its log file, start/stop.

    Output (stdout+stderr) is appended to `log_path`, so a restart keeps the
    earlier output. The process runs in its own session so stop() can signal
    the whole group. Note: PR_SET_PDEATHSIG follows the *thread* that started
    the process, so start components from the main thread (pytest fixtures do).
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path | str,
                 env: dict | None = None, cwd: str | Path | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> ManagedProcess:
        if self.alive():
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        log.write(f"\n===== {time.strftime('%H:%M:%S')} starting {self.name}: {' '.join(self.argv)}\n".encode())
        log.flush()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=self.cwd, start_new_session=True, preexec_fn=_die_with_parent)
        finally:
            log.close()
        RUNNING[self.proc.pid] = self
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, then SIGKILL after `timeout` seconds."""
        p = self.proc
        if p is None:
            return
        try:
            if p.poll() is None:
                _signal_group(p, signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    _signal_group(p, signal.SIGKILL)
                    p.wait(10)
            # anything left in the group (children of the component)
            _signal_group(p, signal.SIGKILL)
        finally:
            RUNNING.pop(p.pid, None)

    def kill(self) -> None:
        """SIGKILL at once (a crash, for fault tests)."""
        p = self.proc
        if p is None:
            return
        _signal_group(p, signal.SIGKILL)
        try:
            p.wait(10)
        finally:
            RUNNING.pop(p.pid, None)

    def tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.pid} alive={self.alive()} log={self.log_path}>"


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, sig)


def run(argv: Iterable, *, check: bool = True, timeout: float = 120, input: str | bytes | None = None,
        env: dict | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run a short command (openssl, etcdctl, kubectl...), text output, raise with its output on failure."""
    argv = [str(a) for a in argv]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    text = not isinstance(input, bytes)
    cp = subprocess.run(argv, input=input, capture_output=True, text=text, timeout=timeout,
                        env=full_env, cwd=cwd)
    if check and cp.returncode != 0:
        raise ComponentError(f"command failed ({cp.returncode}): {' '.join(argv)}\n"
                             f"stdout: {cp.stdout}\nstderr: {cp.stderr}")
    return cp


def running_logs(lines: int = 40) -> str:
    """The tail of the log of every component still running (for failure reports)."""
    out = []
    for mp in list(RUNNING.values()):
        out.append(f"----- {mp.name} (pid {mp.pid}) {mp.log_path} -----\n{mp.tail(lines)}")
    return "\n".join(out)


def stop_all() -> None:
    for mp in list(RUNNING.values()):
        try:
            mp.stop(timeout=5)
        except Exception:  # noqa: BLE001
            pass


atexit.register(stop_all)
