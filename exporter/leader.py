"""Leader election on a coordination.k8s.io/v1 Lease: one replica emits, the others wait.

Semantics (the same as client-go's leaderelection, with the overlap removed):

    acquire()   standby: GET the Lease every retry_period. A lease held by someone
                else is taken over only when it has not CHANGED for
                leaseDurationSeconds as measured on OUR monotonic clock since we
                last saw it change (never the remote renewTime: robust to skew).
                A lease with no holder (released) is taken at once. Writes carry
                the resourceVersion we read (optimistic concurrency): of two
                standbys racing, one gets 409 and stays standby.
    renew       a thread renews every retry_period. A watchdog fires at
                last-successful-renew + renew_deadline (measured from when that
                renew was SENT): the replica is marked not leader and on_lost()
                is called at once, from the watchdog thread, even if a request is
                stuck in a connect. Since renew_deadline < lease_duration, the old
                leader has stopped emitting before any standby may take over.
    release()   on graceful stop: the renew thread is stopped and the Lease's
                holderIdentity is cleared, so a standby takes over at its next poll.

Timeline after the leader dies (L = lease duration, R = retry period, J = 1.2 for
the standby's poll jitter): its last renewal r (kill - R <= r <= kill) is seen by the
standby by r + J*R; the standby looks again exactly L after it saw it: takeover
between kill + L - R and kill + L + J*R (plus two API round trips).

Every transition is logged: leader_acquired, leader_observed (a standby sees a new
holder), leader_renew_failed, leader_lost, leader_released.
"""
from __future__ import annotations

import math
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from exporter import log
from exporter.errors import ApiError, ConfigError, ExporterError
from exporter.metrics import Metric
from exporter.settings import LeaderElectionSettings

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


def micro_time(t: float | None = None) -> str:
    """RFC 3339 with microseconds in UTC, the MicroTime format of Lease acquireTime/renewTime."""
    dt = datetime.fromtimestamp(time.time() if t is None else t, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """The pod name (HOSTNAME in a pod), else this machine's host name."""
    return os.environ.get("POD_NAME") or os.environ.get("HOSTNAME") or socket.gethostname()


def check_settings(s: LeaderElectionSettings) -> None:
    """lease_duration > renew_deadline > retry_period > 0, or there is an overlap window."""
    if not s.retry_period_seconds > 0:
        raise ConfigError("leader_election.retry_period_seconds", "must be > 0", "use e.g. 2")
    if not s.renew_deadline_seconds > s.retry_period_seconds:
        raise ConfigError("leader_election.renew_deadline_seconds", "must be greater than retry_period_seconds",
                          "use e.g. lease 15, renew deadline 10, retry 2")
    if not s.lease_duration_seconds > s.renew_deadline_seconds:
        raise ConfigError("leader_election.lease_duration_seconds",
                          "must be greater than renew_deadline_seconds (else two replicas may emit at once)",
                          "use e.g. lease 15, renew deadline 10, retry 2")


class LeaderElector:
    """See the module docstring. Thread-safe; one instance per process."""

    def __init__(self, client: Any, settings: LeaderElectionSettings, stop: threading.Event, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 jitter: float = 0.2) -> None:
        check_settings(settings)
        self.client = client
        self.s = settings
        self.stop = stop
        self.namespace = settings.namespace or client.own_namespace()
        self.name = settings.lease_name
        self.identity = settings.identity or default_identity()
        self.collection = LEASES.format(namespace=self.namespace)
        self.path = f"{self.collection}/{self.name}"
        self.log = log.get(lease=f"{self.namespace}/{self.name}", identity=self.identity)
        self.lease_seconds = max(1, int(math.ceil(settings.lease_duration_seconds)))
        self._clock, self._wall, self._jitter = clock, wall, jitter
        self._lock = threading.RLock()   # leader state
        self._io = threading.Lock()      # one write to the Lease at a time (renew vs release)
        self._halt = threading.Event()   # stops the renew and watchdog threads
        self._leader = False
        self._released = False
        self._lost = False
        self._renewed_at = 0.0           # monotonic time the last successful renew was SENT
        self._on_lost: Callable[[], Any] | None = None
        #: called after each look at the Lease that got an answer while standing by
        #: (the runner can pass stats.progress: a healthy standby is alive, not stale)
        self.on_standby_poll: Callable[[], Any] | None = None
        self._observed: tuple[Any, ...] | None = None   # last lease record seen
        self._observed_at = 0.0               # monotonic time we first saw that record
        self._observed_holder: str | None = None
        self._expires_at: float | None = None  # standby: when the observed lease runs out (our clock)
        self._reached = False                  # the last attempt got an answer about the Lease
        self._threads: list[threading.Thread] = []
        # counters for metrics()
        self.acquisitions = 0
        self.losses = 0
        self.renew_failures = 0
        self.conflicts = 0

    # --- public -----------------------------------------------------------------

    @property
    def on_lost(self) -> Callable[[], Any] | None:
        return self._on_lost

    @on_lost.setter
    def on_lost(self, fn: Callable[[], Any] | None) -> None:
        """Set the loss callback; if leadership was already lost, it is called right away."""
        with self._lock:
            self._on_lost = fn
            fire = self._lost and fn is not None
        if fire and fn is not None:
            self._call(fn)

    def acquire(self) -> bool:
        """Block until this process holds the Lease (True) or `stop` is set first (False)."""
        self.log.info("leader_election_standby", lease_duration_seconds=self.s.lease_duration_seconds,
                      renew_deadline_seconds=self.s.renew_deadline_seconds,
                      retry_period_seconds=self.s.retry_period_seconds)
        while not self.stop.is_set():
            sent = self._clock()
            if self._try_acquire_or_renew(renewing=False):
                with self._lock:
                    self._leader, self._lost, self._released = True, False, False
                    self._renewed_at = sent
                    self.acquisitions += 1
                self._halt.clear()
                self._start_threads()
                return True
            cb = self.on_standby_poll
            if cb is not None and self._reached:
                self._call(cb)
            delay = self.s.retry_period_seconds * (1 + random.uniform(0, self._jitter))
            if self._expires_at is not None:  # look again right when the holder's lease runs out
                delay = min(delay, max(0.01, self._expires_at - self._clock() + 0.01))
            self.stop.wait(delay)
        return False

    def is_leader(self) -> bool:
        """True while holding the Lease and within renew_deadline of the last successful renewal."""
        with self._lock:
            if not self._leader:
                return False
            expired = self._clock() >= self._renewed_at + self.s.renew_deadline_seconds
        if expired:
            self._lose("renew_deadline_exceeded")
            return False
        return True

    def release(self) -> None:
        """Graceful stop: stop renewing and clear holderIdentity so a standby takes over at once."""
        with self._lock:
            was = self._leader
            self._leader = False
            self._released = True
        self._halt.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=self.s.renew_deadline_seconds)
        self._threads = []
        if not was:
            return
        with self._io:
            try:
                lease = self.client.request("GET", self.path, timeout=5.0)
                spec = lease.get("spec") or {}
                if spec.get("holderIdentity") != self.identity:
                    self.log.warning("leader_release_skipped", holder=spec.get("holderIdentity"))
                    return
                now = micro_time(self._wall())
                lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                                 "acquireTime": now, "renewTime": now}
                self.client.request("PUT", self.path, body=lease, timeout=5.0)
                self.log.info("leader_released")
            except (ApiError, ExporterError) as exc:
                self.log.warning("leader_release_failed", error=str(exc)[:300],
                                 effect="a standby takes over when the lease expires")

    def metrics(self) -> Iterator[Metric]:
        """(name, kind, doc, labels, value) tuples, the shape Stats.sink_stats collects."""
        yield ("kee_leader", "gauge", "1 while this replica holds the leader Lease", {}, int(self.is_leader()))
        yield ("kee_leader_acquisitions", "counter", "times this replica became leader", {}, self.acquisitions)
        yield ("kee_leader_losses", "counter", "times this replica lost the Lease without releasing it",
               {}, self.losses)
        yield ("kee_leader_renew_failures", "counter", "Lease renewals that failed", {}, self.renew_failures)

    # --- the Lease --------------------------------------------------------------

    def _body(self, old: dict[str, Any] | None, now: str) -> dict[str, Any]:
        spec = dict((old or {}).get("spec") or {})
        mine = spec.get("holderIdentity") == self.identity
        if not mine:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if old else 0)
            spec["acquireTime"] = now
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = self.lease_seconds
        spec["renewTime"] = now
        if old is not None:
            md = {k: v for k, v in (old.get("metadata") or {}).items() if k != "managedFields"}
            return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md, "spec": spec}
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/name": "kube-event-exporter",
                                        "app.kubernetes.io/component": "leader-election"}},
                "spec": spec}

    def _try_acquire_or_renew(self, *, renewing: bool) -> bool:
        """One attempt; True when we hold the Lease afterwards."""
        self._expires_at = None
        self._reached = False
        timeout = max(0.5, self.s.renew_deadline_seconds if not renewing
                      else self._renewed_at + self.s.renew_deadline_seconds - self._clock())
        try:
            try:
                lease = self.client.request("GET", self.path, timeout=timeout)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                lease = None
            self._reached = True
            if lease is None:
                if renewing:
                    self._lose("lease_deleted")
                    return False
                self.client.request("POST", self.collection, body=self._body(None, micro_time(self._wall())),
                                    timeout=timeout)
                self._log_acquired(previous=None)
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            self._observe(spec)
            if renewing and holder != self.identity:
                self._lose("lease_taken", holder=holder)
                return False
            if holder and holder != self.identity:
                duration = spec.get("leaseDurationSeconds") or self.lease_seconds
                if self._clock() < self._observed_at + duration:
                    self._expires_at = self._observed_at + duration
                    return False  # held, and it changed within its duration as we see it
                self.log.info("leader_lease_expired", holder=holder,
                              unchanged_for_seconds=round(self._clock() - self._observed_at, 2))
            with self._io:
                if renewing and self._halt.is_set():
                    return False
                self.client.request("PUT", self.path, body=self._body(lease, micro_time(self._wall())),
                                    timeout=timeout)
            if not renewing:
                self._log_acquired(previous=holder or None)
            return True
        except ApiError as exc:
            if exc.status == 409:
                self.conflicts += 1
                self.log.info("leader_lease_conflict", renewing=renewing)
            else:
                self._attempt_failed(renewing, exc)
            return False
        except ExporterError as exc:  # Unreachable
            self._attempt_failed(renewing, exc)
            return False

    def _attempt_failed(self, renewing: bool, exc: Exception) -> None:
        if renewing:
            self.log.warning("leader_renew_failed", error=str(exc)[:300])
        else:
            self.log.warning("leader_lease_unavailable", error=str(exc)[:300])

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (spec.get("holderIdentity"), spec.get("leaseDurationSeconds"), spec.get("acquireTime"),
                  spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed = record
            self._observed_at = self._clock()
            holder = spec.get("holderIdentity") or None
            if holder != self._observed_holder:
                self._observed_holder = holder
                if holder != self.identity:
                    self.log.info("leader_observed", holder=holder)

    def _log_acquired(self, previous: str | None) -> None:
        self._observed_holder = self.identity
        self.log.info("leader_acquired", previous_holder=previous)

    # --- renewing ---------------------------------------------------------------

    def _start_threads(self) -> None:
        self._threads = [threading.Thread(target=self._renew_loop, name="leader-renew", daemon=True),
                         threading.Thread(target=self._watchdog, name="leader-watchdog", daemon=True)]
        for t in self._threads:
            t.start()

    def _renew_loop(self) -> None:
        while not self._halt.wait(self.s.retry_period_seconds):
            with self._lock:
                if not self._leader:
                    return
            sent = self._clock()
            if self._try_acquire_or_renew(renewing=True):
                with self._lock:
                    if self._leader:
                        self._renewed_at = sent
            else:
                self.renew_failures += 1

    def _watchdog(self) -> None:
        while True:
            with self._lock:
                if not self._leader:
                    return
                remaining = self._renewed_at + self.s.renew_deadline_seconds - self._clock()
            if remaining <= 0:
                self._lose("renew_deadline_exceeded")
                return
            if self._halt.wait(min(remaining, self.s.retry_period_seconds)):
                return

    def _lose(self, why: str, **kw: Any) -> None:
        with self._lock:
            if not self._leader:
                return
            self._leader = False
            self._lost = True
            self.losses += 1
            cb = self._on_lost
            since = round(self._clock() - self._renewed_at, 3)
        self._halt.set()
        self.log.error("leader_lost", reason=why, seconds_since_last_renew=since, effect="stopping emission now",
                       **kw)
        if cb is not None:
            self._call(cb)

    def _call(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - a failing callback must not kill the elector
            self.log.exception("leader_callback_failed")
