"""Pod status -> termination records: what Kubernetes keeps in a Pod's status and never writes as an Event.

A container killed for memory (OOMKilled, exit 137), one exiting with an error, one
that could not run, and a Pod failed by the kubelet (Evicted, Preempting, Shutdown...)
leave no Event of their own: only ``containerStatuses[].state/lastState.terminated``
and ``status.reason``. This module turns each such termination into ONE record of the
Event record's schema (schemas/record.v1.schema.json), marked ``derived_from:
"pod-status"`` (docs/records.md, "Records derived from Pod status").

A Pod is updated many times and keeps showing the same termination (``lastState``
holds the last one until the next), so :class:`Tracker` tells a new termination from a
repeat: per container it remembers the ``finishedAt`` of the last termination seen (a
bounded map of small strings, never the Pod). The rules, and their limits, are in
docs/records.md; in short:

- a container's termination is new when its ``finishedAt`` is after the last one seen
  for that container (a container's terminations are sequential);
- a container never seen: new, unless the map was not seeded from a known position
  (``authoritative`` false: a restart whose checkpoint was too old to list at), then new
  only when finished after the checkpointed high-water mark minus a grace period.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from exporter.records import clock, truncate_message
from exporter.wire import Pod, PodContainer, PodContainerStatus, PodTerminated

DERIVED_FROM = "pod-status"
SOURCE_COMPONENT = "kube-event-exporter"
#: The Pod's own failure (status.reason) is tracked under this name; no container can have it.
POD_KEY = ""
#: Longest container termination message kept in a record's message (a termination log can be 4 KiB+).
MAX_TERMINATION_MESSAGE = 1024


def _time_minus(ts: str, seconds: float) -> str:
    """RFC 3339 ``ts`` moved back by ``seconds``, in the API's own format (seconds, Z)."""
    t = datetime.fromisoformat(ts.replace("Z", "+00:00")) - timedelta(seconds=seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _later(a: str | None, b: str | None) -> str | None:
    """The later of two API timestamps (same format: comparable as strings); None is earliest."""
    if a is None:
        return b
    if b is None:
        return a
    return a if a > b else b


def _ordinal(cs: PodContainerStatus, in_last_state: bool) -> int:
    """Which termination of this container this is (1 for the first), from restartCount as the kubelet reports it.

    state.terminated is the current container (attempt = restartCount), so it is
    termination restartCount + 1. lastState.terminated is the previous container,
    except while the kubelet waits to restart (state.waiting with a reason such as
    CrashLoopBackOff): then no newer container exists and restartCount is still the
    exited container's attempt.
    """
    restarts = cs.restartCount or 0
    if not in_last_state:
        return restarts + 1
    state = cs.state
    waiting = state.waiting if state is not None else None
    if waiting is not None and waiting.reason and (state is None or state.running is None):
        return restarts + 1
    return max(restarts, 1)


class Tracker:
    """Which terminations were already turned into records, and the records for new ones.

    Not thread-safe: one per watch stream, used by that stream's thread only.
    """

    def __init__(self, *, cluster: str | None, max_message_bytes: int = 8192, max_pods: int = 20000,
                 grace_seconds: float = 30.0, high_water: str | None = None) -> None:
        self.cluster = cluster
        self.max_message_bytes = max_message_bytes
        self.max_pods = max_pods
        self.grace_seconds = grace_seconds
        #: pod uid -> {container name (POD_KEY for the Pod's failure): finishedAt (or the failure reason)}
        self._seen: dict[str, dict[str, str]] = {}
        #: Latest finishedAt among terminations turned into records (checkpointed with the position).
        self.high_water = high_water
        #: True when every termination handed out before is in the map (seeded from a LIST at a known
        #: position, or the first start). False after a restart that could not list at its checkpoint:
        #: then unknown containers are judged by the high-water mark (docs/records.md).
        self.authoritative = True
        self._cutoff: str | None = None
        # metrics
        self.updates = 0
        self.emitted = 0
        self.repeats = 0
        self.skipped: dict[str, int] = {}
        self.evicted = 0

    # --- position -------------------------------------------------------------

    def not_authoritative(self) -> None:
        """The map is empty but records were handed out before: judge unknown containers by the high-water mark."""
        self.authoritative = False
        self._cutoff = _time_minus(self.high_water, self.grace_seconds) if self.high_water else None

    def forget(self, pod: Pod) -> None:
        md = pod.metadata
        if md is not None and md.uid:
            self._seen.pop(md.uid, None)

    def retain(self, uids: set[str]) -> None:
        """After a relist: forget Pods not in it (deleted while the watch was down)."""
        for uid in [u for u in self._seen if u not in uids]:
            del self._seen[uid]

    def tracked(self) -> int:
        return len(self._seen)

    # --- the transform ----------------------------------------------------------

    def records(self, pod: Pod, *, emit: bool = True, observed: str | None = None) -> list[dict[str, Any]]:
        """Records for the terminations in this Pod version not seen before (all marked seen).

        ``emit`` False only marks them seen (seeding: an initial state not to be exported).
        """
        self.updates += 1
        st = pod.status
        if st is None:
            return []
        failed_reason = st.reason if st.phase == "Failed" and st.reason else None
        statuses = st.containerStatuses
        inits = st.initContainerStatuses
        if failed_reason is None and not _any_terminated(statuses) and not _any_terminated(inits):
            return []  # the common case: nothing terminated in this Pod
        md = pod.metadata
        uid = md.uid if md is not None else None
        if md is None or not uid:
            self._skip("no_uid")
            return []
        seen = self._seen.pop(uid, None)  # re-inserted below: the map's order is least recently updated first
        known_pod = seen is not None
        if seen is None:
            seen = {}
        out: list[dict[str, Any]] = []
        spec = pod.spec
        specs = {c.name: c for c in (spec.containers or ())} if spec is not None else {}
        init_specs = {c.name: c for c in (spec.initContainers or ())} if spec is not None else {}
        always = spec is None or (spec.restartPolicy or "Always") == "Always"
        deleting = md.deletionTimestamp is not None
        for group, is_init in ((inits, True), (statuses, False)):
            for cs in group or ():
                name = cs.name
                if name is None:
                    continue
                for term, in_last in ((_term(cs.lastState), True), (_term(cs.state), False)):
                    if term is None:
                        continue
                    finished = term.finishedAt or term.startedAt or ""
                    prev = seen.get(name)
                    if prev is not None and finished <= prev:
                        self.repeats += 1
                        continue
                    seen[name] = finished
                    if prev is None and not known_pod and not self._unknown_is_new(finished):
                        self._skip("before_checkpoint")
                        continue
                    why = self._not_reported(term, is_init, always, deleting, failed_reason,
                                             (init_specs if is_init else specs).get(name))
                    if why:
                        self._skip(why)
                        continue
                    if emit:
                        out.append(self._container_record(pod, cs, term, in_last, is_init,
                                                          (init_specs if is_init else specs).get(name), observed))
        if failed_reason is not None and seen.get(POD_KEY) != failed_reason:
            new = known_pod or self._unknown_is_new(_last_finished(statuses, inits))
            seen[POD_KEY] = failed_reason
            if not new:
                self._skip("before_checkpoint")
            elif emit:
                out.append(self._pod_record(pod, failed_reason, observed))
        if seen:
            self._seen[uid] = seen
            if len(self._seen) > self.max_pods:
                self._seen.pop(next(iter(self._seen)))
                self.evicted += 1
        for rec in out:  # the mark is kept in the API's own time format (finishedAt), never the observed time
            term = rec.get("termination")
            t = term["finished_at"] if term is not None else _last_finished(statuses, inits)
            if t is not None and (self.high_water is None or t > self.high_water):
                self.high_water = t
        self.emitted += len(out)
        return out

    def _unknown_is_new(self, finished: str | None) -> bool:
        if self.authoritative or self._cutoff is None or not finished:
            return True  # dup rather than loss: nothing says it was handed out
        return finished > self._cutoff

    @staticmethod
    def _not_reported(term: PodTerminated, is_init: bool, always: bool, deleting: bool, failed_reason: str | None,
                      spec: PodContainer | None) -> str | None:
        """Why this termination is not a record (None: it is one). The rules are in docs/records.md."""
        if failed_reason is not None:
            return "pod_failed"          # part of the Pod's failure (Evicted...): that record says it
        if deleting and term.reason != "OOMKilled":
            return "pod_deleting"        # stopped on purpose (rollout, scale-down, eviction API)
        if (term.exitCode or 0) == 0 and (term.reason in (None, "", "Completed")):
            restarted = always and (not is_init or (spec is not None and spec.restartPolicy == "Always"))
            if not restarted:
                return "completed"       # a Job's or an init container's normal end
        return None

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    # --- records -------------------------------------------------------------------

    def _record(self, pod: Pod, rid: str, observed: str | None, *, timestamp: str | None, first: str | None,
                reason: str, text: str, count: int, field_path: str | None) -> dict[str, Any]:
        """The record, keys in the order of an Event's record (records.normalise), then derived_from."""
        md = pod.metadata
        assert md is not None
        message, truncated = self._message(text)
        observed = observed or clock.now()
        return {
            "schema_version": "1",
            "id": rid,
            "cluster": self.cluster,
            "timestamp": timestamp or observed,
            "first_timestamp": first,
            "observed_timestamp": observed,
            "type": "Warning",
            "severity": "WARN",
            "reason": reason,
            "action": None,
            "message": message,
            "message_truncated": truncated,
            "count": count,
            "update": False,
            "object": _pod_ref(pod, field_path),
            "related": None,
            "source_component": SOURCE_COMPONENT,
            "source_host": pod.spec.nodeName if pod.spec is not None else None,
            "reporting_controller": SOURCE_COMPONENT,
            "reporting_instance": None,
            "event": {"name": None, "namespace": md.namespace, "uid": rid, "resource_version": md.resourceVersion,
                      "api_version": "v1", "creation_timestamp": None},
            "derived_from": DERIVED_FROM,
        }

    def _message(self, text: str) -> tuple[str, bool]:
        if len(text) * 4 > self.max_message_bytes:
            return truncate_message(text, self.max_message_bytes)
        return text, False

    def _container_record(self, pod: Pod, cs: PodContainerStatus, term: PodTerminated, in_last: bool, is_init: bool,
                          spec: PodContainer | None, observed: str | None) -> dict[str, Any]:
        md = pod.metadata
        assert md is not None
        name = cs.name or ""
        count = _ordinal(cs, in_last)
        reason = term.reason or ("Error" if term.exitCode else "Terminated")
        limits = spec.resources.limits if spec is not None and spec.resources is not None else None
        memory = limits.get("memory") if limits else None
        memory = str(memory) if memory is not None else None
        kind = "init container" if is_init else "container"
        text = f"{kind} {name} in pod {md.namespace}/{md.name} was {reason} (exit {term.exitCode}"
        if term.signal:
            text += f", signal {term.signal}"
        text += f"), restart {count}"
        if memory:
            text += f"; limit {memory}"
        if term.message:
            detail = term.message.strip()
            if len(detail) > MAX_TERMINATION_MESSAGE:
                detail = detail[:MAX_TERMINATION_MESSAGE] + "..."
            text += f": {detail}"
        finished = term.finishedAt
        rid = f"{md.uid}:{name}:{finished or term.containerID or count}"
        rec = self._record(pod, rid, observed, timestamp=finished, first=term.startedAt, reason=reason, text=text,
                           count=count, field_path=f"spec.{'initContainers' if is_init else 'containers'}{{{name}}}")
        rec["termination"] = {"container": name, "init_container": is_init, "exit_code": term.exitCode,
                              "signal": term.signal, "restart_count": cs.restartCount or 0,
                              "started_at": term.startedAt, "finished_at": finished,
                              "memory_limit": memory, "container_id": term.containerID}
        return rec

    def _pod_record(self, pod: Pod, reason: str, observed: str | None) -> dict[str, Any]:
        md = pod.metadata
        st = pod.status
        assert md is not None and st is not None
        when = _last_finished(st.containerStatuses, st.initContainerStatuses)
        text = f"pod {md.namespace}/{md.name} failed: {reason}"
        if st.message:
            detail = st.message.strip()
            text += f": {detail[:MAX_TERMINATION_MESSAGE]}{'...' if len(detail) > MAX_TERMINATION_MESSAGE else ''}"
        return self._record(pod, f"{md.uid}:pod:{reason}", observed, timestamp=when, first=st.startTime,
                            reason=reason, text=text, count=1, field_path=None)


class Metrics:
    """kee_pod_* metrics summed over the trackers of every pod stream (registered in Stats.sink_stats)."""

    def __init__(self) -> None:
        self.trackers: list[Tracker] = []

    def metrics(self) -> Iterator[tuple[str, str, str, dict[str, str], float]]:
        ts = self.trackers
        yield ("kee_pod_updates", "counter", "Pod versions read by the pod_terminations source", {},
               sum(t.updates for t in ts))
        yield ("kee_pod_terminations", "counter", "termination records made from Pod status", {},
               sum(t.emitted for t in ts))
        yield ("kee_pod_terminations_repeated", "counter",
               "terminations seen again in a later Pod version (not records again)", {}, sum(t.repeats for t in ts))
        skipped = [dict(t.skipped) for t in ts]  # a snapshot: the watch threads add keys meanwhile
        for why in sorted({w for s in skipped for w in s}):
            yield ("kee_pod_terminations_skipped", "counter",
                   "terminations not made records, by rule (docs/records.md)", {"why": why},
                   sum(s.get(why, 0) for s in skipped))
        yield ("kee_pod_terminations_tracked_pods", "gauge", "Pods in the termination map", {},
               sum(t.tracked() for t in ts))
        yield ("kee_pod_terminations_map_evictions", "counter",
               "Pods dropped from the full termination map (a relist may repeat their last termination)", {},
               sum(t.evicted for t in ts))


def _term(state: Any) -> PodTerminated | None:
    return state.terminated if state is not None else None


def _any_terminated(statuses: list[PodContainerStatus] | None) -> bool:
    for cs in statuses or ():
        s, last = cs.state, cs.lastState
        if (s is not None and s.terminated is not None) or (last is not None and last.terminated is not None):
            return True
    return False


def _last_finished(*groups: list[PodContainerStatus] | None) -> str | None:
    latest = None
    for group in groups:
        for cs in group or ():
            for t in (_term(cs.state), _term(cs.lastState)):
                if t is not None:
                    latest = _later(latest, t.finishedAt)
    return latest


def _pod_ref(pod: Pod, field_path: str | None) -> dict[str, Any]:
    md = pod.metadata
    assert md is not None
    return {"kind": "Pod", "name": md.name, "namespace": md.namespace, "uid": md.uid, "api_version": "v1",
            "resource_version": md.resourceVersion, "field_path": field_path}
