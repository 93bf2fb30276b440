"""A real single-node OpenSearch 2.19 on loopback.

Why this exists: the Elasticsearch/OpenSearch sink's promises (a record is
acknowledged only when its bulk item succeeded, re-delivery overwrites by _id,
mapping conflicts go by the documented policy) and the queries in
docs/pipelines.md can only be believed when run against the real server. It runs
from the Maven Central jars that `scripts/testbin opensearch` put in
$CACHE/opensearch/libs, started by scripts/testbin.d/KeeOpenSearch.java (core
server + netty4 + common analysis, no security plugin, so plain HTTP without
auth). stop()/start() keep the data directory, so an outage is a real outage of
the same node, and kill() is a crash.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import requests

from .paths import MissingComponent, cache_dir, new_workdir
from .proc import ComponentError, ManagedProcess, free_port, wait_until

LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
"""

# 512 MiB heap: plenty for the few thousand test documents; SerialGC and C1 only start fastest on 2 cores.
JVM_OPTS = ["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
            "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8", "-Dopensearch.networkaddress.cache.ttl=60"]


def opensearch_home() -> Path:
    home = cache_dir() / "opensearch"
    if not (home / "classes" / "KeeOpenSearch.class").is_file() or not any((home / "libs").glob("opensearch-2*.jar")):
        raise MissingComponent(f"OpenSearch is not installed in {home}: run `scripts/testbin opensearch` first")
    if not shutil.which("java"):
        raise MissingComponent("java is not on PATH (OpenSearch needs a JRE 17)")
    return home


class OpenSearch:
    """One node; see the module docstring. Attributes: url ("http://127.0.0.1:PORT"), port, dir, process."""

    def __init__(self, workdir: Path | None = None) -> None:
        home = opensearch_home()
        self.dir = Path(workdir) if workdir else new_workdir("opensearch")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port, self.transport_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "opensearch.log"
        (self.dir / "log4j2.properties").write_text(LOG4J2)
        self.process = ManagedProcess(
            "opensearch", ["java", *JVM_OPTS, f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
                           "-cp", f"{home}/libs/*:{home}/classes", "KeeOpenSearch", self.dir / "node",
                           self.port, self.transport_port], self.log_path)
        self.session = requests.Session()

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 120) -> OpenSearch:
        """Start the node and wait until the cluster is at least yellow (green on one node with replicas 0)."""
        self.process.start()
        wait_until(self._ready, timeout, f"OpenSearch cluster health on {self.url}", interval=0.3, proc=self.process)
        return self

    def _ready(self) -> bool:
        r = self.session.get(f"{self.url}/_cluster/health", params={"wait_for_status": "yellow", "timeout": "1s"},
                             timeout=3)
        return r.status_code == 200 and r.json().get("status") in ("yellow", "green")

    def stop(self) -> None:
        """Clean shutdown (SIGTERM), keeping the data directory."""
        self.process.stop(timeout=30)

    def kill(self) -> None:
        """SIGKILL (a crash); start() recovers from the data directory."""
        self.process.kill()

    def restart(self) -> None:
        self.stop()
        self.start()

    def rss_bytes(self) -> int:
        """Resident memory of the node's JVM."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    # -- HTTP ----------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *, params: dict | None = None,
                timeout: float = 30) -> tuple[int, Any]:
        """(status, decoded JSON body or text). `body` may be a dict (sent as JSON) or bytes/str (ndjson)."""
        headers = {"Content-Type": "application/json"}
        data: bytes | str | None
        if isinstance(body, (dict, list)):
            data = json.dumps(body)
        else:
            data = body
            if body is not None:
                headers["Content-Type"] = "application/x-ndjson"
        r = self.session.request(method, f"{self.url}/{path.lstrip('/')}", data=data, params=params,
                                 headers=headers, timeout=timeout)
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def ok(self, method: str, path: str, body: Any = None, **kw) -> Any:
        """request() that raises ComponentError on a non-2xx answer."""
        status, doc = self.request(method, path, body, **kw)
        if status // 100 != 2:
            raise ComponentError(f"OpenSearch {method} {path} -> {status}: {str(doc)[:2000]}")
        return doc

    def refresh(self, index: str = "_all") -> None:
        self.ok("POST", f"{index}/_refresh", params={"ignore_unavailable": "true", "allow_no_indices": "true"})

    def search(self, index: str, body: dict, refresh: bool = True) -> dict:
        """The full _search answer (refreshing first, so what was acknowledged is visible)."""
        if refresh:
            self.refresh(index)
        return self.ok("POST", f"{index}/_search", body,
                       params={"ignore_unavailable": "true", "allow_no_indices": "true"})

    def hits(self, index: str, query: dict | None = None, size: int = 10000) -> list[dict]:
        """_source of every matching document (with `_id` and `_index` added)."""
        ans = self.search(index, {"query": query or {"match_all": {}}, "size": size})
        return [{**h["_source"], "_id": h["_id"], "_index": h["_index"]} for h in ans["hits"]["hits"]]

    def count(self, index: str, query: dict | None = None) -> int:
        self.refresh(index)
        ans = self.ok("POST", f"{index}/_count", {"query": query or {"match_all": {}}},
                      params={"ignore_unavailable": "true", "allow_no_indices": "true"})
        return int(ans["count"])

    def wait_for_count(self, index: str, n: int, timeout: float = 30, query: dict | None = None) -> int:
        """Wait until at least n documents match; returns the count."""
        return wait_until(lambda: (c := self.count(index, query)) >= n and c, timeout,
                          f"{n} documents in {index}", interval=0.3)

    def delete_index(self, pattern: str) -> None:
        self.request("DELETE", pattern, params={"ignore_unavailable": "true", "allow_no_indices": "true",
                                                "expand_wildcards": "all"})

    def bulk(self, ndjson: str) -> dict:
        return self.ok("POST", "_bulk", ndjson, params={"refresh": "true"})

    def wait_stopped(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.process.alive() and time.monotonic() < deadline:
            time.sleep(0.1)

    def __repr__(self) -> str:
        return f"<OpenSearch {self.url} dir={self.dir}>"
