"""The pod_terminations source: watch Pods, hand each new container termination / Pod failure on as a record.

Kubernetes writes no Event when a container is OOMKilled or exits with an error: it is
only in the Pod's status. This source follows Pods like the Event source follows Events
(same checkpoint, same ledger, so sinks gate its position) and hands what
exporter/terminations.py makes of each Pod version to :meth:`Pipeline.emit`.

It subclasses :class:`WatchSource` for level 1 (``run()``: reconnect forever, backoff,
410 -> relist, 403 handling) and has its own levels 2 and 3: a Pod line decodes to
another struct (exporter/wire.py, ``wire.pods``) and goes to the termination tracker,
not to Pipeline.handle, and a relist is deduplicated per termination, not per
resourceVersion (a relisted Pod newer than the last RV seen can still show a
termination already sent).

The checkpoint value of a pod stream is ``"<resourceVersion>"`` or ``"<resourceVersion>
<high-water finishedAt>"``: where to resume the watch, and the latest termination time
handed out (used only when the resourceVersion is too old to list at; docs/records.md).
At a restart the tracker is seeded from a LIST at exactly the checkpointed
resourceVersion: everything visible there was delivered, so it is marked seen and the
watch from that resourceVersion sends each later termination once.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

from exporter import log, wire
from exporter.backoff import Backoff
from exporter.errors import ApiError, Forbidden, Gone
from exporter.kube.client import KubeClient, Unreachable
from exporter.pipeline import Pipeline, Stream
from exporter.settings import KubernetesSettings, PodTerminationSettings
from exporter.sources.kubernetes import WatchSource
from exporter.terminations import Tracker


def pods_path(namespace: str | None) -> str:
    return f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"


def stream_key(s: PodTerminationSettings, namespace: str | None) -> str:
    """The checkpoint key of one pod stream (never equal to an Event stream's, which starts with the API)."""
    return "|".join(("pods", namespace or "*", s.label_selector))


def namespaces(s: PodTerminationSettings, kube: KubernetesSettings) -> list[str | None]:
    return list(s.namespaces or kube.namespaces) or [None]


def encode_position(rv: str, high_water: str | None) -> str:
    return f"{rv} {high_water}" if high_water else rv


def decode_position(saved: str | None) -> tuple[str | None, str | None]:
    if not saved:
        return None, None
    rv, _, hw = saved.partition(" ")
    return rv, hw or None


def preflight(client: KubeClient, s: PodTerminationSettings, kube: KubernetesSettings,
              stop: threading.Event) -> None:
    """One LIST per pod stream with limit=1: RBAC for pods, before anything runs. Raises Forbidden."""
    backoff = Backoff(kube.backoff_initial_seconds, kube.backoff_max_seconds)
    for ns in namespaces(s, kube):
        while not stop.is_set():
            try:
                client.request("GET", pods_path(ns), query={"limit": 1}, timeout=30.0)
                break
            except Forbidden:
                raise
            except (Unreachable, ApiError) as exc:
                delay = backoff.next(getattr(exc, "retry_after", None))
                log.warning("apiserver_not_ready_retrying", server=client.host, error=str(exc)[:300],
                            retry_in_seconds=round(delay, 2))
                stop.wait(delay)


class PodWatchSource(WatchSource):
    def __init__(self, client: KubeClient, pipeline: Pipeline, kube: KubernetesSettings,
                 settings: PodTerminationSettings, stream: Stream, namespace: str | None,
                 stop: threading.Event, tracker: Tracker) -> None:
        super().__init__(client, pipeline, kube, stream, namespace, stop)
        self.path = pods_path(namespace)
        self.ps = settings
        self.tracker = tracker
        self.watch_list = False
        rv, high_water = decode_position(stream.last_seen)
        stream.last_seen = rv  # the ledger keeps the saved value until a new position is committed
        tracker.high_water = high_water
        #: False until the tracker knows what was delivered before the checkpoint (see _seed).
        self.seeded = rv is None
        self.established = False

    def position(self) -> str:
        rv = self.stream.last_seen
        assert rv is not None
        return encode_position(rv, self.tracker.high_water)

    def _query(self) -> dict[str, Any]:
        return {"labelSelector": self.ps.label_selector}

    # --- level 2: the initial state ---------------------------------------------------

    def _list(self, *, exact_rv: str | None = None) -> Iterator[tuple[str | None, list[wire.Pod]]]:
        """Pages of a Pod LIST (at exactly ``exact_rv`` when given): yields (list RV, items)."""
        cont = None
        while True:
            q = {"limit": self.s.page_size, "continue": cont, **self._query()}
            if exact_rv and cont is None:
                q.update(resourceVersion=exact_rv, resourceVersionMatch="Exact")
            raw = self.client.request_raw("GET", self.path, query=q, timeout=60.0)
            try:
                body = wire.pods(raw, wire.PodList)
            except (wire.ValidationError, wire.DecodeError) as exc:  # retried like any failed request
                self.pipeline.report("list_body_undecodable", "pods", "list_undecodable", stream=self.stream.key,
                                     detail=str(exc)[:200])
                raise ApiError(500, f"Pod LIST body undecodable: {str(exc)[:200]}") from None
            self.pipeline.tick()
            yield body.metadata.resourceVersion, body.items
            cont = body.metadata.continue_
            if not cont or self.stop.is_set():
                return

    def _seed(self, rv: str) -> None:
        """Restart from a checkpoint: mark seen every termination visible at exactly ``rv`` (all delivered).

        Raises Gone when ``rv`` is compacted away: the watch from it would fail the same
        way, so the relist that follows judges unknown containers by the high-water mark.
        """
        try:
            n = 0
            for _, items in self._list(exact_rv=rv):
                for pod in items:
                    self.tracker.records(pod, emit=False)
                    n += 1
        except Gone:
            self.seeded = True
            self.tracker.not_authoritative()
            log.warning("pods_checkpoint_too_old_to_list", stream=self.stream.key, resource_version=rv,
                        high_water=self.tracker.high_water, grace_seconds=self.ps.relist_grace_seconds,
                        consequence="terminations finished after the high-water mark minus the grace are sent; "
                                    "one finished earlier whose status arrived later is not")
            raise
        self.seeded = True
        self.established = True
        log.info("pods_seeded", stream=self.stream.key, resource_version=rv, pods=n,
                 tracked=self.tracker.tracked())

    def initial_state(self, *, first_start: bool) -> None:
        """LIST Pods; records for terminations not seen before (none at a first start with initial=now)."""
        st = self.stream
        emit = not (first_start and self.s.initial == "now")
        pipeline, tracker = self.pipeline, self.tracker
        pipeline.begin_initial(st)
        list_rv, n, made, listed = None, 0, 0, set()
        for page_rv, items in self._list():
            list_rv = page_rv or list_rv
            for pod in items:
                n += 1
                md = pod.metadata
                if md is not None and md.uid:
                    listed.add(md.uid)
                for rec in tracker.records(pod, emit=emit, observed=pipeline.observed):
                    pipeline.emit(st, rec, None)
                    made += 1
            pipeline.flush()
        if self.stop.is_set():
            return
        tracker.retain(listed)  # Pods deleted while the watch was down
        self.seeded = True
        pipeline.end_initial(st, None)
        if list_rv:
            st.last_seen = list_rv
            pipeline.advance(st, self.position())
        self.stats.progress()
        self.stats.ready = True
        self.established = True
        log.info("pods_listed", stream=st.key, resource_version=list_rv, pods=n, records=made,
                 relist=not first_start)

    # --- level 3: one watch request ---------------------------------------------------

    def watch(self, rv: str | None, *, initial: bool = False, dedup_rv: str | None = None) -> None:
        if rv is None:
            raise Gone(410, "no resourceVersion to watch from")  # run() lists first; defensive
        if not self.seeded:
            self._seed(rv)
        st = self.stream
        timeout = self.s.watch_timeout_seconds
        q: dict[str, Any] = {"watch": "1", "allowWatchBookmarks": "true", "resourceVersion": rv,
                             "timeoutSeconds": int(random.uniform(timeout, timeout * 1.5)), **self._query()}
        pipeline, stats, tracker = self.pipeline, self.stats, self.tracker
        emit, advance = pipeline.emit, pipeline.advance
        try:
            for lines in self.client.stream(self.path, query=q, inactivity_timeout=self.s.inactivity_timeout_seconds,
                                            linger=self.s.read_linger_seconds):
                pipeline.tick()
                for line in lines:
                    env = self._decode(line)
                    if env is None:
                        continue
                    etype, pod = env.type, env.object
                    md = pod.metadata
                    orv = md.resourceVersion if md is not None else None
                    if etype == "ADDED" or etype == "MODIFIED" or etype == "DELETED":
                        # a DELETED Pod's last status can still show a termination not seen (OOMKilled while
                        # it was being deleted); then the Pod is forgotten
                        recs = tracker.records(pod, observed=pipeline.observed)
                        if etype == "DELETED":
                            tracker.forget(pod)
                        if orv:
                            st.last_seen = orv
                        position = self.position() if st.last_seen else None
                        if recs:
                            last = len(recs) - 1
                            for i, rec in enumerate(recs):  # the position goes with the last record of this version
                                emit(st, rec, position if i == last else None)
                        elif position:
                            advance(st, position)
                    elif etype == "BOOKMARK":
                        if orv:
                            st.last_seen = orv
                            advance(st, self.position())
                    elif etype == "ERROR":
                        raise self._error(line)
                    else:
                        stats.unknown_envelopes += 1
                        pipeline.report("watch_envelope_unknown", "pods", "unknown_envelope", stream=st.key,
                                        type=str(etype)[:40], resource_version=orv)
                pipeline.flush()
                stats.progress()
                if self.stop.is_set():
                    return
        except Unreachable as exc:
            if self.inactive(exc):
                return
            raise

    def _decode(self, line: bytes) -> wire.PodEnvelope | None:
        try:
            env: wire.PodEnvelope = wire.pods(line)
            return env
        except wire.ValidationError:
            pass  # an in-stream ERROR's Status (its "status" is a string), or odd data
        except wire.DecodeError:
            if not line.strip():
                return None
        try:
            err = wire.pods(line, wire.StatusEnvelope)
        except (wire.ValidationError, wire.DecodeError):
            err = None
        if err is not None and err.type == "ERROR":
            raise self._error(line)
        self.stats.decode_errors += 1
        self.pipeline.report("watch_line_skipped", "pods", "undecodable", stream=self.stream.key,
                             after_resource_version=self.stream.last_seen, line=line[:200].decode("utf-8", "replace"))
        return None

    @staticmethod
    def _error(line: bytes) -> ApiError:
        try:
            obj = wire.pods(line, wire.StatusEnvelope).object
        except (wire.ValidationError, wire.DecodeError):
            return ApiError(500, "undecodable watch ERROR")
        code = obj.code or 500
        message = str(obj.message or obj.reason or "watch ERROR")
        if code == 410 or obj.reason in ("Expired", "Gone"):
            return Gone(410, message)
        if code in (401, 403):
            return Forbidden(code, message)
        retry = obj.details.retryAfterSeconds if obj.details is not None else None
        return ApiError(code, message, float(retry) if retry else None)


def build(client: KubeClient, pipeline: Pipeline, kube: KubernetesSettings, s: PodTerminationSettings,
          saved: dict[str, str], stop: threading.Event, *, cluster: str | None,
          max_message_bytes: int) -> list[PodWatchSource]:
    """One PodWatchSource per pod stream, resuming from its saved position; their metrics registered."""
    from exporter.terminations import Metrics
    metrics = Metrics()
    pipeline.stats.sink_stats.append(metrics)
    out = []
    for ns in namespaces(s, kube):
        key = stream_key(s, ns)
        at = saved.get(key)
        log.info("stream_resuming" if at else "stream_starting", stream=key, position=at,
                 initial=None if at else kube.initial)
        tracker = Tracker(cluster=cluster, max_message_bytes=max_message_bytes, max_pods=s.max_tracked_pods,
                          grace_seconds=s.relist_grace_seconds)
        metrics.trackers.append(tracker)
        out.append(PodWatchSource(client, pipeline, kube, s, pipeline.stream(key, at), ns, stop, tracker))
    return out
