"""Enrichment: who an Event is about — labels, controller owner, workload, node — bounded in memory and API cost.

Runs between records.normalise and the filters (exporter/pipeline.py), on the
watch thread, only when ``enrich.enabled``. For the involved object it adds
``object.labels``, ``object.annotations`` (allow-lists), ``object.owner`` (the
controller ownerReference), the record's ``workload`` (the top controller after
following ownerReferences: Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob,
whatever custom owner is at the top), ``node`` (Pods) and ``enrichment``
("complete" | "partial" | "none") with ``enrichment_reason`` (docs/records.md).

Cheap and bounded by construction:

- each object is read once per TTL with a metadata-only GET (exporter/kube/metadata.py)
  and kept in a cache bounded in entries and bytes (transforms/metacache.py); a 404
  is cached too (negative TTL);
- single-flight: concurrent misses for one object share one request;
- a token bucket limits the requests per second; a miss without a token is not
  waited for (the record is marked partial, reason ``rate_limited``);
- lookups run on a few worker threads; the watch thread waits for a record's whole
  owner chain at most ``enrich.timeout_seconds``; a lookup still running then
  fills the cache for the next Event, and the record goes out partial (``timeout``).
  After a timeout, misses are not waited for until that lookup is answered, at most
  ``enrich.degraded_seconds``: a slow apiserver costs the watch one timeout per window,
  not one per record, and a single slow answer only the records that came before it;
- at most ``enrich.max_pending`` lookups are queued (``overloaded`` beyond).

Never lost, never reordered: a record is always emitted, enriched or partial, in
stream order; the checkpoint (acks) is untouched.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from exporter import log
from exporter.errors import ApiError, Forbidden
from exporter.kube.client import Unreachable
from exporter.kube.metadata import MetadataReader, ObjectMeta, UnknownKind, split_api_version
from exporter.transforms.metacache import MetaCache

#: Kinds that are a workload themselves when they have no controller owner.
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet",
                            "ReplicationController"})
#: ownerReferences followed at most this deep (Pod -> ReplicaSet -> Deployment is 2): a cycle cannot loop.
MAX_DEPTH = 5
#: A cached object whose uid differs from the Event's is re-read once it is older than this (s):
#: the name was reused (a StatefulSet Pod recreated). Younger: the Event is about the old one.
REFETCH_AFTER = 2.0
#: Log a failing reason at most once per this many seconds (the metric counts every one).
LOG_EVERY = 60.0

Key = tuple[str, str, "str | None", str]       # group, kind, namespace, name
Result = tuple["ObjectMeta | None", "str | None"]  # (meta, None) or (None, why)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; take() never blocks."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


def _ref(kind: str | None, name: str | None, uid: str | None, api_version: str | None) -> dict[str, Any]:
    return {"kind": kind, "name": name, "uid": uid, "api_version": api_version}


class Enricher:
    """Callable on a record (mutates it in place). One per process, shared by all watch threads."""

    def __init__(self, reader: MetadataReader, cache: MetaCache[ObjectMeta], *, kinds: list[str],
                 timeout: float, rate: float, burst: int, concurrency: int, max_pending: int,
                 degraded_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.reader = reader
        self.cache = cache
        self.kinds = frozenset(kinds)
        self.timeout = timeout
        self.bucket = TokenBucket(rate, burst, clock)
        self.max_pending = max_pending
        self.degraded_seconds = degraded_seconds
        self.clock = clock
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="enrich")
        self._inflight: dict[Key, Future[Result]] = {}
        self._lock = threading.Lock()
        self._degraded_until = 0.0
        self._slow: Future[Result] | None = None  # the lookup that last timed out, until it is answered
        # metrics
        self.records: dict[str, int] = {"complete": 0, "partial": 0, "none": 0}
        self.partial: dict[str, int] = {}
        self.hits = 0
        self.negative_hits = 0
        self.misses = 0
        self.shared = 0                       # misses that joined a request already in flight
        self.outcomes: dict[str, int] = {}    # request outcome -> count (ok, not_found, forbidden, error, ...)
        self.wait_seconds = 0.0               # time watch threads spent waiting for lookups
        self._logged: dict[str, tuple[float, int]] = {}

    @classmethod
    def from_settings(cls, cfg: Any, client: Any) -> Enricher:
        """Build from exporter.settings.EnrichSettings and a KubeClient."""
        from exporter.kube.metadata import Selector
        reader = MetadataReader(client, labels=Selector(cfg.labels), annotations=Selector(cfg.annotations),
                                pod_node=cfg.node, timeout=cfg.request_timeout_seconds)
        cache: MetaCache[ObjectMeta] = MetaCache(
            max_entries=cfg.cache_max_entries, max_bytes=cfg.cache_max_bytes,
            ttl=cfg.ttl_seconds, negative_ttl=cfg.negative_ttl_seconds)
        return cls(reader, cache, kinds=cfg.kinds, timeout=cfg.timeout_seconds, rate=cfg.requests_per_second,
                   burst=cfg.burst, concurrency=cfg.concurrency, max_pending=cfg.max_pending,
                   degraded_seconds=cfg.degraded_seconds)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- the record -------------------------------------------------------------------

    def __call__(self, rec: dict[str, Any]) -> None:
        o = rec.get("object")
        if o is None:
            rec["workload"] = rec["node"] = None
            self._done(rec, "none", None)
            return
        o["labels"] = o["annotations"] = o["owner"] = None
        rec["workload"] = rec["node"] = None
        kind = o.get("kind")
        name = o.get("name")
        if not kind or not name or kind not in self.kinds:
            self._done(rec, "none", None)
            return
        ns = o.get("namespace")
        deadline = self.clock() + self.timeout
        meta, why = self._lookup(kind, o.get("api_version"), ns, name, o.get("uid"), deadline)
        if meta is not None and o.get("uid") and meta.uid != o["uid"]:
            meta, why = None, "gone"  # the name now belongs to a newer object: not this Event's
        workload: dict[str, Any] | None = None
        if meta is not None:
            o["labels"] = meta.labels
            o["annotations"] = meta.annotations
            if meta.owner is not None:
                o["owner"] = meta.owner.as_record()
            cur = meta
            depth = 0
            while cur.owner is not None:
                top = cur.owner
                workload = top.as_record()
                if depth >= MAX_DEPTH:
                    why = "depth"
                    break
                m, w = self._lookup(top.kind, top.api_version, ns, top.name, top.uid, deadline)
                if m is None:
                    why = w
                    break
                if top.uid and m.uid != top.uid:
                    why = "gone"
                    break
                cur = m
                depth += 1
        if workload is None and kind in WORKLOAD_KINDS and (meta is not None or why is None):
            workload = _ref(kind, name, o.get("uid"), o.get("api_version"))
        rec["workload"] = workload
        if kind == "Pod":
            node = meta.node if meta is not None else None
            if node is None and rec.get("source_component") == "kubelet":
                node = rec.get("source_host")  # a kubelet reports from the Pod's node
            rec["node"] = node
        elif kind == "Node":
            rec["node"] = name
        self._done(rec, "partial" if why else "complete", why)

    def _done(self, rec: dict[str, Any], status: str, why: str | None) -> None:
        rec["enrichment"] = status
        rec["enrichment_reason"] = why
        self.records[status] += 1
        if why is not None:
            self.partial[why] = self.partial.get(why, 0) + 1
            self._warn(why, kind=(rec.get("object") or {}).get("kind"))

    # --- one object: cache, single-flight, rate limit, deadline -----------------------------

    def _lookup(self, kind: str, api_version: str | None, ns: str | None, name: str, want_uid: str | None,
                deadline: float) -> Result:
        key: Key = (split_api_version(api_version, kind)[0], kind, ns, name)
        e = self.cache.get(key)
        now = self.clock()
        if e is not None:
            if e.missing is not None:
                self.negative_hits += 1
                return None, e.missing
            v = e.value
            assert v is not None
            if want_uid is None or v.uid == want_uid or now - e.fetched < REFETCH_AFTER:
                self.hits += 1
                return v, None
        self.misses += 1
        with self._lock:
            fut = self._inflight.get(key)
            if fut is None:
                if len(self._inflight) >= self.max_pending:
                    return None, "overloaded"
                if not self.bucket.take():
                    return None, "rate_limited"
                fut = self._inflight[key] = Future()
                try:
                    self._pool.submit(self._fetch, key, kind, api_version, ns, name, fut)
                except RuntimeError:  # closed (shutting down): no more lookups
                    del self._inflight[key]
                    return None, "error"
            else:
                self.shared += 1
        slow = self._slow
        if slow is not None:
            if now < self._degraded_until and not slow.done():
                return None, "degraded"  # a lookup timed out and is still unanswered: do not hold the watch again
            self._slow = None  # it was answered (or the window passed): wait for lookups again
        remaining = deadline - now
        if remaining <= 0:
            return None, "timeout"
        try:
            return fut.result(remaining)
        except FutureTimeout:
            self._degraded_until = self.clock() + self.degraded_seconds
            self._slow = fut
            return None, "timeout"
        finally:
            self.wait_seconds += self.clock() - now

    def _fetch(self, key: Key, kind: str, api_version: str | None, ns: str | None, name: str,
               fut: Future[Result]) -> None:
        """Worker thread: one GET, its answer cached (positive or negative), the waiters released."""
        result: Result
        try:
            meta = self.reader.get(kind, api_version, ns, name)
            self.cache.put(key, meta, meta.size)
            result, outcome = (meta, None), "ok"
        except UnknownKind:
            self.cache.put_missing(key, "unknown_kind")
            result, outcome = (None, "unknown_kind"), "unknown_kind"
        except Forbidden:
            self.cache.put_missing(key, "forbidden")  # RBAC: see deploy/kustomize/overlays/enrich
            result, outcome = (None, "forbidden"), "forbidden"
        except ApiError as exc:
            if exc.status == 404:
                self.cache.put_missing(key, "not_found")
                result, outcome = (None, "not_found"), "not_found"
            else:
                result, outcome = (None, "error"), "error"
                self._warn("api_error", status=exc.status, error=exc.message[:200])
        except Unreachable as exc:
            result, outcome = (None, "error"), "unreachable"
            self._warn("unreachable", error=str(exc)[:200])
        except Exception as exc:  # noqa: BLE001 - odd data must not kill a worker; the record goes out partial
            result, outcome = (None, "error"), "exception"
            self._warn("exception", error=repr(exc)[:200])
        with self._lock:
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
            self._inflight.pop(key, None)
        fut.set_result(result)

    def _warn(self, why: str, **kw: Any) -> None:
        """A log line per failing reason, at most once a minute (with how many were not logged)."""
        now = self.clock()
        last, suppressed = self._logged.get(why, (-LOG_EVERY, 0))
        if now - last >= LOG_EVERY:
            self._logged[why] = (now, 0)
            log.warning("enrichment_incomplete", reason=why, suppressed_since_last=suppressed, **kw)
        else:
            self._logged[why] = (last, suppressed + 1)

    # --- metrics (exporter/metrics.py collects these through Stats.sink_stats) -----------------

    def metrics(self) -> Iterator[tuple[str, str, str, dict[str, str], float]]:
        for status, n in self.records.items():
            yield ("kee_enrich_records_total", "counter", "records by enrichment outcome", {"result": status}, n)
        for why, n in self.partial.items():
            yield ("kee_enrich_partial_total", "counter", "partially enriched records, by reason",
                   {"reason": why}, n)
        yield ("kee_enrich_cache_hits_total", "counter", "lookups answered by the cache", {"kind": "positive"},
               self.hits)
        yield ("kee_enrich_cache_hits_total", "counter", "lookups answered by the cache", {"kind": "negative"},
               self.negative_hits)
        yield ("kee_enrich_cache_misses_total", "counter", "lookups the cache could not answer", {}, self.misses)
        yield ("kee_enrich_singleflight_shared_total", "counter",
               "misses that joined a request already in flight (no request of their own)", {}, self.shared)
        for outcome, n in self.outcomes.items():
            yield ("kee_enrich_lookups_total", "counter", "object lookups sent to the apiserver, by outcome",
                   {"outcome": outcome}, n)
        yield ("kee_enrich_api_requests_total", "counter", "API requests made by enrichment (GETs, discovery)",
               {}, self.reader.requests)
        yield ("kee_enrich_api_bytes_total", "counter", "response bytes read by enrichment", {},
               self.reader.bytes_read)
        yield ("kee_enrich_wait_seconds_total", "counter", "seconds watch threads waited for lookups", {},
               self.wait_seconds)
        yield ("kee_enrich_cache_entries", "gauge", "objects in the enrichment cache", {}, len(self.cache))
        yield ("kee_enrich_cache_bytes", "gauge", "approximate bytes held by the enrichment cache", {},
               self.cache.bytes)
        yield ("kee_enrich_cache_evictions_total", "counter", "entries evicted to keep the cache bounds", {},
               self.cache.evictions)
        yield ("kee_enrich_pending_lookups", "gauge", "lookups queued or running", {}, len(self._inflight))
