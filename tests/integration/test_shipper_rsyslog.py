"""The stdout route into OpenSearch with the documented rsyslog configuration.

The live exporter's stdout and stderr are written as a container runtime writes
them (CRI log lines: `<time> <stream> F <line>`) into one file; rsyslogd (Debian's
rsyslog + rsyslog-elasticsearch, installed by `scripts/testbin rsyslog`) runs the
configuration block of docs/pipelines.md with only paths, host and port replaced.
Every record arrives as a document with _id = record id; none of the exporter's
own log lines (stderr) does.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from tests.components import ManagedProcess, MissingComponent, wait_until
from tests.support.events import Producer

ROOT = Path(__file__).resolve().parents[2]


def documented_config() -> str:
    text = (ROOT / "docs" / "pipelines.md").read_text()
    return re.search(r"```rsyslog\n(.*?)```", text, re.S).group(1)


def local_config(doc: str, *, work: Path, log_file: Path, port: int, index: str) -> str:
    subs = {"workDirectory": str(work), "file": str(log_file), "server": "127.0.0.1", "serverport": str(port),
            "usehttps": "off", "searchIndex": index, "errorfile": str(work / "es-errors.json")}
    for key, value in subs.items():
        doc, n = re.subn(rf'(\b{key}=)"[^"]*"', lambda m, v=value: f'{m.group(1)}"{v}"', doc)
        assert n == 1, f"docs/pipelines.md's rsyslog block has no single {key}=..."
    return doc


class CriWriter:
    """Writes a process's stdout and stderr into one file as CRI log lines (what kubelet's runtime does)."""

    def __init__(self, proc: subprocess.Popen, path: Path) -> None:
        self.path = path
        self.lines: list[bytes] = []
        self._lock = threading.Lock()
        self._f = open(path, "ab")  # noqa: SIM115 - open for the process's lifetime
        self._threads = [threading.Thread(target=self._pump, args=(proc.stdout, b"stdout"), daemon=True),
                         threading.Thread(target=self._pump, args=(proc.stderr, b"stderr"), daemon=True)]
        for t in self._threads:
            t.start()

    def _pump(self, pipe, stream: bytes) -> None:
        for line in pipe:
            ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
            with self._lock:
                self._f.write(ts + b" " + stream + b" F " + line)
                self._f.flush()
                if stream == b"stdout":
                    self.lines.append(line)

    def close(self) -> None:
        for t in self._threads:
            t.join(10)
        self._f.close()


@pytest.fixture(scope="session")
def rsyslogd() -> str:
    path = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    if not Path(path).exists() or not Path("/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so").exists():
        pytest.fail(str(MissingComponent("rsyslogd with omelasticsearch is not installed: run `scripts/testbin "
                                         "rsyslog`")), pytrace=False)
    return path


def test_documented_rsyslog_config_ships_cri_stdout_records_with_id_as_id(
        control_plane, opensearch, namespace, tmp_path, rsyslogd):
    index = f"kube-events-shipper-{uuid.uuid4().hex[:6]}"
    work = tmp_path / "rsyslog"
    work.mkdir()
    log_file = tmp_path / "kube-event-exporter-0_kube-event-exporter_exporter-abc.log"
    log_file.touch()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(local_config(documented_config(), work=work, log_file=log_file, port=opensearch.port,
                                 index=index))
    check = subprocess.run([rsyslogd, "-N1", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    shipper = ManagedProcess("rsyslogd", [rsyslogd, "-n", "-f", conf, "-i", work / "rsyslogd.pid"],
                             tmp_path / "rsyslogd.log")
    exp = subprocess.Popen([sys.executable, "-m", "exporter", "run", "--kubeconfig", str(control_plane.kubeconfig),
                            "--listen", "127.0.0.1:0", "--namespace", namespace], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cri = CriWriter(exp, log_file)
    try:
        shipper.start()
        with Producer(control_plane, namespace, rate=10) as prod:
            time.sleep(4)
        wait_until(lambda: len(cri.lines) >= len(prod.created), 30, "every Event on the exporter's stdout")
        records = [orjson.loads(x) for x in cri.lines]
        opensearch.wait_for_count(index, len(records), timeout=60)
        time.sleep(1)  # anything extra (a stderr line) would arrive now
        docs = {d["_id"]: d for d in opensearch.hits(index)}
        assert set(docs) == {r["id"] for r in records}, "documents = the records on stdout, by id"
        for r in records:
            assert {k: v for k, v in docs[r["id"]].items() if k not in ("_id", "_index")} == r
        assert b"stderr F " in log_file.read_bytes(), "the exporter's own logs were in the file, and not shipped"
        assert not (work / "es-errors.json").exists()
    finally:
        exp.terminate()
        try:
            exp.wait(30)
        finally:
            cri.close()
            shipper.stop()
            opensearch.delete_index(index)
