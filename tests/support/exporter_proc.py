"""Run the real exporter as a subprocess and collect what it prints, for integration tests.

Records (stdout) are parsed as they arrive by a reader thread; the exporter's own
JSON logs (stderr) go to a file and are searchable. SIGKILL, SIGTERM and
restarts are the point: nothing here mocks the exporter.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema

ROOT = Path(__file__).parents[2]
RECORD_VALIDATOR = jsonschema.Draft202012Validator(
    json.loads((ROOT / "schemas" / "record.v1.schema.json").read_text()))


class Exporter:
    def __init__(self, args: list[str], log_path: Path, env: dict | None = None, read_delay: float = 0.0) -> None:
        self.args = args
        self.read_delay = read_delay  # seconds per line: a slow log shipper
        self.log_path = log_path
        self.records: list[dict] = []
        self.invalid: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "exporter", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=self._log, env={**os.environ, **(env or {})})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if self.read_delay:
                time.sleep(self.read_delay)
            try:
                rec = json.loads(line)
                RECORD_VALIDATOR.validate(rec)
            except (ValueError, jsonschema.ValidationError) as exc:
                self.invalid.append((line.decode("utf-8", "replace"), str(exc)[:300]))
                continue
            with self._lock:
                self.records.append(rec)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)

    def wait_for(self, predicate, timeout: float = 30, what: str = "records") -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            recs = self.snapshot()
            if predicate(recs):
                return recs
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; exporter exit={self.proc.poll()}, "
                             f"{len(self.snapshot())} records; log tail:\n{self.log_tail()}")

    def wait_log(self, event: str, timeout: float = 30) -> dict:
        """Wait until the exporter logged `event` (e.g. "stream_resuming"); return that entry."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.logs():
                if entry.get("event") == event:
                    return entry
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"exporter never logged {event!r}; exit={self.proc.poll()}; log tail:\n{self.log_tail()}")

    def logs(self) -> list[dict]:
        out = []
        for line in self.log_path.read_bytes().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": "(not json)", "raw": line.decode("utf-8", "replace")})
        return out

    def log_events(self) -> list[str]:
        return [entry.get("event") for entry in self.logs()]

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def terminate(self, timeout: float = 40) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def wait(self, timeout: float = 30) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(5)
        return rc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def ids(records: list[dict]) -> list[tuple[str, str]]:
    return [(r["event"]["uid"], r["event"]["resource_version"]) for r in records]
