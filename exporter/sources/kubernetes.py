"""Kubernetes source: list-then-watch Events, following the resourceVersion, forever.

Layered like kopf's watching (one concern per level):

    run()            infinite and reconnecting: backoff with jitter, Retry-After,
                     410 -> relist, inactivity -> reconnect; never exits on a
                     transient error (a peer's watch silently dies after a failed relist)
    initial_state()  the first LIST (paginated) or the watch-list stream, then a
                     position at the list's own resourceVersion
    watch()          one HTTP watch request from an RV; returns when the server
                     closes it (routine), raises Gone on 410 (HTTP or in-stream)

Every line goes through wire.decode_line (the one input rule, shared with
replay: docs/records.md, "Input") and every envelope to Pipeline.handle in
stream order. The pipeline owns the initial-state flag and the relist dedup:
this module only says where an initial state begins and ends.
docs/design.md describes the watch semantics this follows (resume, 410, bookmarks).
"""
from __future__ import annotations

import random
import threading
from typing import Any

from exporter import log, wire
from exporter.backoff import Backoff
from exporter.errors import ApiError, Forbidden, Gone
from exporter.kube.client import KubeClient, Unreachable
from exporter.pipeline import Pipeline, Stream
from exporter.settings import KubernetesSettings


def events_path(api: str, namespace: str | None) -> str:
    base = "/api/v1" if api == "v1" else "/apis/events.k8s.io/v1"
    return f"{base}/namespaces/{namespace}/events" if namespace else f"{base}/events"


def stream_key(s: KubernetesSettings, namespace: str | None) -> str:
    """One checkpoint per stream: what it watches, and with which server-side selectors."""
    return "|".join((s.api, namespace or "*", s.field_selector, s.label_selector))


class WatchSource:
    def __init__(self, client: KubeClient, pipeline: Pipeline, settings: KubernetesSettings,
                 stream: Stream, namespace: str | None, stop: threading.Event) -> None:
        self.client = client
        self.pipeline = pipeline
        self.s = settings
        self.stream = stream
        self.stats = pipeline.stats
        self.stop = stop
        self.path = events_path(settings.api, namespace)
        self.api_version = "v1" if settings.api == "v1" else "events.k8s.io/v1"
        self.watch_list = {"auto": None, "true": True, "false": False}.get(str(settings.watch_list).lower())
        self.backoff = Backoff(settings.backoff_initial_seconds, settings.backoff_max_seconds)
        self.fatal: BaseException | None = None
        #: This stream's initial state was delivered once: from then on a 403 is retried, not fatal.
        self.established = False

    # --- level 1: forever ----------------------------------------------------------

    def run(self) -> None:
        """Until stop is set. Returns normally; sets self.fatal on an unrecoverable error."""
        st = self.stream
        need_list = st.last_seen is None
        first_start = need_list
        while not self.stop.is_set():
            try:
                if need_list:
                    self.initial_state(first_start=first_start)
                    need_list = first_start = False
                self.watch(st.last_seen)
                self.stats.restart("closed")
                self.backoff.reset()
            except Gone as exc:
                self.stats.restart("gone")
                if need_list:
                    log.warning("list_continue_expired", stream=st.key)
                    continue
                self.stats.relists += 1
                self.stats.gaps += 1
                need_list = True
                log.warning("watch_gone_relisting", stream=st.key, resource_version=st.last_seen, message=exc.message,
                            consequence="Events that expired, and intermediate updates of Events updated again, "
                                        "since this resourceVersion are not in the relist")
            except Forbidden as exc:
                if not self.established:
                    self.fatal = exc
                    return
                self._pause(exc, "watch")  # RBAC changed under us: keep trying, loudly
            except (ApiError, Unreachable) as exc:
                self._pause(exc, "list" if need_list else "watch")
            except BaseException as exc:  # noqa: BLE001 - reported by the runner, never silent
                if self.stop.is_set():
                    return  # shutting down: a sink interrupted its blocked send
                self.fatal = exc
                log.error("watch_source_crashed", stream=st.key, error=repr(exc))
                return

    def inactive(self, exc: Unreachable) -> bool:
        """True (counted, logged) when ``exc`` is the watch's inactivity timeout: nothing came for
        kubernetes.inactivity_timeout_seconds, so the caller returns and run() opens the next watch."""
        if "Read timed out" not in str(exc):
            return False
        self.stats.restart("inactivity")
        log.info("watch_inactive_reconnecting", stream=self.stream.key, seconds=self.s.inactivity_timeout_seconds)
        return True

    def _pause(self, exc: Exception, what: str) -> None:
        retry_after = getattr(exc, "retry_after", None)
        delay = self.backoff.next(retry_after)
        kind = f"http_{exc.status}" if isinstance(exc, ApiError) else "unreachable"
        self.stats.error("kubernetes", kind)
        self.stats.restart("error")
        log.warning(f"{what}_failed_retrying", stream=self.stream.key, error=str(exc)[:500],
                    retry_in_seconds=round(delay, 2))
        self.stop.wait(delay)

    # --- level 2: the initial state ---------------------------------------------------

    def initial_state(self, *, first_start: bool) -> None:
        """LIST (or watch-list) and hand over items not yet delivered; position at the list RV.

        On a relist after 410, items whose RV is not newer than the last one seen
        were already delivered (a watch delivers every change in RV order), so
        they are skipped: dedup without remembering any uid.
        """
        st = self.stream
        skip_all = first_start and self.s.initial == "now"
        dedup_rv = st.last_seen
        if self.watch_list is not False and not skip_all:
            try:
                self.watch(None, initial=True, dedup_rv=dedup_rv)
                self.watch_list = True
                return
            except ApiError as exc:
                if self.watch_list is True or isinstance(exc, (Gone, Forbidden)) or exc.status >= 500:
                    raise
                log.info("watch_list_unsupported_falling_back_to_list", stream=st.key, status=exc.status)
                self.watch_list = False
        self.pipeline.begin_initial(st, dedup_rv)
        cont, list_rv, n = None, None, 0
        while True:
            q = {"limit": 1 if skip_all else self.s.page_size, "continue": cont,
                 "fieldSelector": self.s.field_selector, "labelSelector": self.s.label_selector}
            raw = self.client.request_raw("GET", self.path, query=q, timeout=60.0)
            try:
                body = wire.event_list(raw)
            except wire.BadInput as exc:  # not even a list: the page is retried like any failed request
                self.pipeline.report("list_body_undecodable", "input", exc.kind, stream=st.key, detail=exc.detail)
                raise ApiError(500, f"LIST body undecodable: {exc.detail}") from None
            list_rv = body.metadata.resourceVersion or list_rv
            self.pipeline.tick()
            if not skip_all:
                for item in body.items:
                    if item.kind is not None and item.kind != "Event":
                        self.stats.decode_errors += 1
                        self.pipeline.report("list_item_skipped", "input", "not_an_event", stream=st.key,
                                             object_kind=item.kind[:60])
                        continue
                    if item.apiVersion is None:
                        item.apiVersion = self.api_version  # LIST items carry no apiVersion
                    self.pipeline.handle(st, "ADDED", item)
                    n += 1
                self.pipeline.flush()
            cont = body.metadata.continue_
            if skip_all or not cont or self.stop.is_set():
                break
        self.pipeline.end_initial(st, list_rv)
        self.stats.progress()
        self.established = True
        self.stats.ready = True  # /readyz (reported, never read back for control flow)
        log.info("listed", stream=st.key, resource_version=list_rv, emitted=n, relist=not first_start)

    # --- level 3: one watch request ---------------------------------------------------

    def watch(self, rv: str | None, *, initial: bool = False, dedup_rv: str | None = None) -> None:
        st = self.stream
        timeout = self.s.watch_timeout_seconds
        q: dict[str, Any] = {"watch": "1", "allowWatchBookmarks": "true",
                             "timeoutSeconds": int(random.uniform(timeout, timeout * 1.5)),
                             "fieldSelector": self.s.field_selector, "labelSelector": self.s.label_selector}
        if initial:
            q.update(sendInitialEvents="true", resourceVersionMatch="NotOlderThan", resourceVersion="")
            self.pipeline.begin_initial(st, dedup_rv)
        else:
            q["resourceVersion"] = rv
        handle, decode, pipeline, stats = self.pipeline.handle, wire.decode_line, self.pipeline, self.stats
        try:
            for lines in self.client.stream(self.path, query=q, inactivity_timeout=self.s.inactivity_timeout_seconds,
                                            linger=self.s.read_linger_seconds):
                pipeline.tick()
                for line in lines:
                    try:
                        env, nulled = decode(line)
                    except wire.BadInput as exc:
                        if line.strip():
                            stats.decode_errors += 1
                            pipeline.report("watch_line_skipped", "input", exc.kind, stream=st.key,
                                            after_resource_version=st.last_seen, detail=exc.detail,
                                            line=line[:200].decode("utf-8", "replace"))
                        continue
                    etype, obj = env.type, env.object
                    if nulled:
                        pipeline.report("watch_values_nulled", "input", "value_nulled", stream=st.key,
                                        resource_version=obj.metadata.resourceVersion if obj.metadata else None,
                                        paths=list(nulled[:20]))
                    if etype == "ERROR":
                        raise _status_error(obj)
                    handle(st, etype, obj)
                    if initial and not st.initial:
                        initial = False  # the initial state is complete; the same stream goes on as a watch
                        self.established = True
                        stats.ready = True
                        log.info("listed", stream=st.key, resource_version=st.last_seen, via="watch-list")
                pipeline.flush()
                stats.progress()
                if self.stop.is_set():
                    return
        except Unreachable as exc:
            if self.inactive(exc):
                return
            raise
        if initial:
            # The server ended the stream before the initial-events-end bookmark: not supported as asked.
            pipeline.abort_initial(st)
            raise ApiError(400, "watch-list stream ended without the initial-events-end bookmark")
        stats.ready = True


def _status_error(obj: wire.Event) -> ApiError:
    code = obj.code or 500
    message = str(obj.message or obj.reason or "watch ERROR")
    retry = obj.details.retryAfterSeconds if obj.details is not None else None
    if code == 410 or obj.reason in ("Expired", "Gone"):
        return Gone(410, message)
    if code in (401, 403):
        return Forbidden(code, message)
    return ApiError(code, message, float(retry) if retry else None)
