"""Lease leader election against a fake apiserver (tests/unit/leader_fake.py).

Durations are short real times (lease 1 s, renew deadline 0.6 s, retry 0.1 s); the
same behaviours run on the real apiserver in tests/integration/test_deploy.py.
"""
from __future__ import annotations

import re
import threading
import time

import pytest

from exporter.errors import ConfigError
from exporter.leader import LeaderElector, check_settings, micro_time
from exporter.settings import LeaderElectionSettings
from tests.unit.leader_fake import FakeClient, FakeLeaseServer

LEASE, RENEW, RETRY = 1.0, 0.6, 0.1
MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def cfg(identity: str, **kw) -> LeaderElectionSettings:
    return LeaderElectionSettings(enabled=True, identity=identity, lease_duration_seconds=kw.get("lease", LEASE),
                                  renew_deadline_seconds=kw.get("renew", RENEW),
                                  retry_period_seconds=kw.get("retry", RETRY))


class Replica:
    """One elector on its own FakeClient, acquiring in a background thread."""

    def __init__(self, server: FakeLeaseServer, identity: str, **kw) -> None:
        self.client = FakeClient(server)
        self.stop = threading.Event()
        self.elector = LeaderElector(self.client, cfg(identity, **kw), self.stop, jitter=0)
        self.acquired_at: float | None = None
        self.lost_at: float | None = None
        self.lost_calls = 0
        self.lost_thread: str | None = None
        self.result: bool | None = None
        self.elector.on_lost = self._lost

    def _lost(self) -> None:
        self.lost_calls += 1
        self.lost_at = time.monotonic()
        self.lost_thread = threading.current_thread().name

    def start(self) -> Replica:
        def run():
            self.result = self.elector.acquire()
            if self.result:
                self.acquired_at = time.monotonic()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def wait_leader(self, timeout: float = 5.0) -> None:
        self.thread.join(timeout)
        assert self.result is True, "did not become leader"

    def close(self) -> None:
        self.stop.set()
        self.client.release_hang.set()
        self.elector.release()


@pytest.fixture
def server():
    return FakeLeaseServer()


@pytest.fixture
def replicas(server):
    made: list[Replica] = []

    def make(identity: str, **kw) -> Replica:
        r = Replica(server, identity, **kw)
        made.append(r)
        return r
    yield make
    for r in made:
        r.close()


def test_first_replica_creates_the_lease_with_microtime_fields(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    assert a.elector.is_leader()
    spec = server.lease()["spec"]
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 1 and isinstance(spec["leaseDurationSeconds"], int)
    assert MICRO.match(spec["acquireTime"]) and MICRO.match(spec["renewTime"])
    assert spec["leaseTransitions"] == 0


def test_leader_renews_every_retry_period_and_keeps_acquire_time(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    first = server.lease()["spec"]
    time.sleep(RETRY * 5)
    now = server.lease()["spec"]
    assert now["renewTime"] > first["renewTime"]
    assert now["acquireTime"] == first["acquireTime"]
    assert now["leaseTransitions"] == 0
    renews = [w for w in server.writes if w[0] == "PUT"]
    assert len(renews) >= 3


def test_standby_does_not_take_a_renewed_lease(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b").start()
    time.sleep(LEASE * 3)
    assert b.result is None and not b.elector.is_leader()
    assert a.elector.is_leader()
    assert server.lease()["spec"]["holderIdentity"] == "a"


def test_standby_takes_over_within_lease_duration_after_leader_dies(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b").start()
    time.sleep(0.3)
    a.client.down = True  # the leader's process is gone: it renews no more
    killed = time.monotonic()
    b.wait_leader(timeout=LEASE + 4 * RETRY + 1)
    took = b.acquired_at - killed
    assert LEASE - 2 * RETRY <= took <= LEASE + 3 * RETRY, took  # L + R, plus scheduling slack
    spec = server.lease()["spec"]
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1
    # the old leader stopped emitting before the new one started: no overlap window
    assert a.lost_at is not None and a.lost_at < b.acquired_at
    assert a.lost_calls == 1 and not a.elector.is_leader()


def test_lost_is_called_at_renew_deadline_even_when_a_request_hangs(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    a.client.hang.set()  # every request blocks (a stuck connect); only the watchdog can notice
    t0 = time.monotonic()
    time.sleep(RENEW + 3 * RETRY)
    assert a.lost_calls == 1
    assert a.lost_at - t0 <= RENEW + 2 * RETRY
    assert a.lost_thread == "leader-watchdog"
    assert not a.elector.is_leader()


def test_failed_renewals_call_on_lost_once_before_the_lease_expires(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    last_renew = time.monotonic()
    a.client.down = True
    time.sleep(LEASE + 0.2)
    assert a.lost_calls == 1
    assert a.lost_at - last_renew < LEASE  # stops emitting before anyone may take over
    assert a.elector.renew_failures >= 2
    assert a.elector.losses == 1


def test_lease_taken_by_another_holder_is_lost_at_once(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    server.put_spec({"holderIdentity": "intruder"})
    t0 = time.monotonic()
    time.sleep(4 * RETRY)
    assert a.lost_calls == 1 and a.lost_at - t0 <= 3 * RETRY
    assert not a.elector.is_leader()


def test_release_clears_holder_and_standby_takes_over_at_next_poll(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b").start()
    time.sleep(0.3)
    released = time.monotonic()
    a.elector.release()
    spec = server.lease()["spec"]
    assert spec["holderIdentity"] == "b" or spec["holderIdentity"] == ""
    b.wait_leader(timeout=2)
    assert b.acquired_at - released <= 3 * RETRY
    assert a.lost_calls == 0  # a graceful release is not a loss
    assert server.lease()["spec"]["holderIdentity"] == "b"


def test_standby_uses_its_own_clock_not_the_remote_renew_time(server, replicas):
    # A holder whose clock is 10 years behind, but renewing: the lease must be respected.
    path_ns = "kee"
    server.put_spec({"holderIdentity": "skewed", "leaseDurationSeconds": 1,
                     "renewTime": micro_time(time.time() - 3e8)}, namespace=path_ns)
    b = replicas("b").start()
    stop = threading.Event()

    def skewed_holder():
        while not stop.wait(RETRY):
            server.put_spec({"renewTime": micro_time(time.time() - 3e8 + time.monotonic())})
    t = threading.Thread(target=skewed_holder, daemon=True)
    t.start()
    time.sleep(LEASE * 2.5)
    assert b.result is None, "took over a lease that is being renewed"
    stop.set()
    t.join()
    # a holder whose clock is far AHEAD and which died: taken over one lease duration later
    server.put_spec({"renewTime": micro_time(time.time() + 3e8)})
    died = time.monotonic()
    b.wait_leader(timeout=LEASE + 1)
    assert LEASE - RETRY <= b.acquired_at - died <= LEASE + 3 * RETRY


def test_two_standbys_racing_for_a_released_lease_give_one_leader(server, replicas):
    server.put_spec({"holderIdentity": "", "leaseDurationSeconds": 1, "leaseTransitions": 4})
    rs = [replicas(f"r{i}") for i in range(4)]
    for r in rs:
        r.start()
    time.sleep(1.0)
    leaders = [r for r in rs if r.result]
    assert len(leaders) == 1
    assert server.lease()["spec"]["holderIdentity"] == leaders[0].elector.identity
    assert server.lease()["spec"]["leaseTransitions"] == 5


def test_acquire_returns_false_when_stopped(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b").start()
    time.sleep(0.2)
    b.stop.set()
    b.thread.join(2)
    assert b.result is False


def test_standby_poll_hook_is_called(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b")
    polls = []
    b.elector.on_standby_poll = lambda: polls.append(1)
    b.start()
    time.sleep(5 * RETRY)
    assert len(polls) >= 3


def test_on_lost_set_after_the_loss_fires_at_once(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    a.elector.on_lost = None
    a.client.down = True
    time.sleep(RENEW + 2 * RETRY)
    called = []
    a.elector.on_lost = lambda: called.append(1)
    assert called == [1]


def test_restarted_process_with_same_identity_resumes_its_own_lease(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    a.client.down = True       # crash without release...
    a2 = replicas("a").start()  # ...and come back as the same pod
    a2.wait_leader(timeout=1)
    assert a2.acquired_at is not None
    assert server.lease()["spec"]["leaseTransitions"] == 0


def test_lease_in_own_namespace_by_default(server):
    e = LeaderElector(FakeClient(server, namespace="mine"), cfg("x"), threading.Event())
    assert e.path == "/apis/coordination.k8s.io/v1/namespaces/mine/leases/kube-event-exporter"


def test_metrics_shape(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    m = {name: value for name, _kind, _doc, _labels, value in a.elector.metrics()}
    assert m["kee_leader"] == 1 and m["kee_leader_acquisitions"] == 1


@pytest.mark.parametrize("lease,renew,retry", [(10, 10, 2), (15, 2, 2), (15, 10, 0), (5, 10, 2)])
def test_overlapping_timings_are_rejected(lease, renew, retry):
    with pytest.raises(ConfigError):
        check_settings(cfg("x", lease=lease, renew=renew, retry=retry))


def test_standby_polls_at_retry_period_while_the_apiserver_is_down(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b").start()
    time.sleep(3 * RETRY)
    b.client.down = True
    n0 = len(b.client.calls)
    time.sleep(LEASE * 1.5)  # past the observed expiry: must not turn into a busy loop
    assert len(b.client.calls) - n0 <= LEASE * 1.5 / RETRY + 2
    assert b.result is None


def test_standby_poll_hook_is_not_called_while_the_apiserver_is_down(server, replicas):
    a = replicas("a").start()
    a.wait_leader()
    b = replicas("b")
    polls = []
    b.elector.on_standby_poll = lambda: polls.append(1)
    b.client.down = True
    b.start()
    time.sleep(4 * RETRY)
    assert polls == []
