"""The live exporter's lifecycle: connect, resume, watch, checkpoint, drain on SIGTERM.

    start   credentials -> preflight LIST (RBAC) -> checkpoint load -> leader lease
    run     one WatchSource thread per stream; the checkpointer saves the committed RVs
            when they moved: the file store within checkpoint.file_interval_seconds
            (0.2 s, fewer repeats after a crash), the ConfigMap store at most every
            checkpoint.interval_seconds (5 s, API writes). It is event-driven: a source
            handing records over wakes it (Stats.progress), it then looks at most once per
            interval while records are in flight, and sleeps while nothing moves
    stop    SIGTERM/SIGINT: stop taking envelopes, deliver what is in flight (sinks'
            close), commit, save the final checkpoint, exit 0
"""
from __future__ import annotations

import gc
import math
import signal
import threading
import time
from collections.abc import Callable

from exporter import log
from exporter.app import build_pipeline, build_sinks, close_sinks
from exporter.backoff import Backoff
from exporter.checkpoint import NoStore, Store
from exporter.errors import ApiError, ExporterError, Forbidden, SinkFatal
from exporter.kube.client import KubeClient, Unreachable
from exporter.metrics import Stats, serve
from exporter.settings import Settings
from exporter.sources.kubernetes import WatchSource, events_path, stream_key

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_API = 0, 1, 2, 3
DRAIN_TIMEOUT = 25.0  # seconds; under Kubernetes' default 30 s terminationGracePeriodSeconds
#: Longest sleep of the main loop when nothing happens. Everything it watches wakes it (sources, a
#: sink turning fatal, a lost lease, signals): this is a safety net only, one look a minute.
IDLE_WAKE_SECONDS = 60.0


def _waking(run: Callable[[], None], wake: threading.Event) -> Callable[[], None]:
    """A source thread's target that wakes the main loop when it returns (it failed, or stopped)."""
    def target() -> None:
        try:
            run()
        finally:
            wake.set()
    return target


def make_store(cfg: Settings, client: KubeClient) -> Store:
    c = cfg.checkpoint
    if c.store == "file":
        from exporter.checkpoint.file import FileStore
        return FileStore(c.path or "")  # config.check refuses the file store without a path
    if c.store == "kubernetes":
        from exporter.checkpoint.kube import ConfigMapStore
        return ConfigMapStore(client, c.namespace or client.own_namespace(), c.name)
    return NoStore()


def preflight(client: KubeClient, cfg: Settings, namespaces: list[str | None], stop: threading.Event) -> None:
    """One LIST per stream with limit=1: proves reachability, credentials and RBAC before anything else.

    Unreachable and 5xx are retried (the apiserver may be starting); 401/403 are fatal.
    """
    backoff = Backoff(cfg.kubernetes.backoff_initial_seconds, cfg.kubernetes.backoff_max_seconds)
    lg = log.get(server=client.host)
    for ns in namespaces:
        path = events_path(cfg.kubernetes.api, ns)
        while not stop.is_set():
            try:
                client.request("GET", path, query={"limit": 1}, timeout=30.0)
                break
            except Forbidden:
                raise
            except (Unreachable, ApiError) as exc:
                delay = backoff.next(getattr(exc, "retry_after", None))
                lg.warning("apiserver_not_ready_retrying", error=str(exc)[:300], retry_in_seconds=round(delay, 2))
                stop.wait(delay)


def run(cfg: Settings) -> int:
    stop = threading.Event()
    reason: dict[str, str | None] = {"why": None}

    stats = Stats()
    #: The main loop's wake-up: a source handed records over (Stats.progress), a source or sink failed,
    #: leadership was lost, or a signal came. Between those the loop sleeps (no timer while idle).
    wake = stats.wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        reason["why"] = signal.Signals(signum).name
        stop.set()
        wake.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if cfg.server.listen:
        try:
            serve(stats, cfg.server.listen, cfg.server.stale_after_seconds)
        except (OSError, OverflowError, ValueError) as exc:  # in use, not this host's address
            log.error("metrics_listen_failed", listen=cfg.server.listen, error=getattr(exc, "strerror", None)
                      or str(exc), fix="set server.listen to a free host:port of this host, or '' to disable")
            return EXIT_CONFIG
    try:
        client = KubeClient(kubeconfig=cfg.kubernetes.kubeconfig, context=cfg.kubernetes.context,
                            connect_timeout=cfg.kubernetes.connect_timeout_seconds)
    except ExporterError as exc:
        log.error("kubernetes_credentials_failed", error=str(exc),
                  fix="set kubernetes.kubeconfig (--kubeconfig) or run in a pod with a service account")
        return EXIT_API
    namespaces: list[str | None] = list(cfg.kubernetes.namespaces) or [None]
    lg = log.get(server=client.host)
    lg.info("starting", credentials=client.source, api=cfg.kubernetes.api,
            namespaces=cfg.kubernetes.namespaces or "all", checkpoint=cfg.checkpoint.store)
    try:
        preflight(client, cfg, namespaces, stop)
    except Forbidden as exc:
        lg.error("kubernetes_forbidden", status=exc.status, error=exc.message,
                 fix="grant get/list/watch on events (events.k8s.io and core) to this identity; "
                     "see deploy/kustomize/base/rbac.yaml")
        return EXIT_API
    pod_cfg = cfg.sources.pod_terminations
    if pod_cfg.enabled:
        from exporter.sources import pods
        try:
            pods.preflight(client, pod_cfg, cfg.kubernetes, stop)
        except Forbidden as exc:
            log.error("kubernetes_forbidden", server=client.host, status=exc.status, error=exc.message,
                      fix="sources.pod_terminations needs get/list/watch on pods; "
                          "see deploy/kustomize/overlays/terminations")
            return EXIT_API
    if stop.is_set():
        return EXIT_OK

    store = make_store(cfg, client)
    try:
        saved = store.load()
    except (ExporterError, ApiError, Unreachable) as exc:
        lg.error("checkpoint_load_failed", store=cfg.checkpoint.store, error=str(exc),
                 fix="check checkpoint.* settings and permissions")
        return EXIT_FAIL

    leader = None
    if cfg.leader_election.enabled:
        from exporter.leader import LeaderElector
        leader = LeaderElector(client, cfg.leader_election, stop)
        leader.on_standby_poll = stats.progress  # a standby that can see its Lease is alive (/healthz)
        stats.sink_stats.append(leader)          # kee_leader* metrics, standing by and leading
        stats.ready = True                       # a standby is ready: waiting is its job (/readyz)
        if not leader.acquire():
            return EXIT_OK  # stopped while waiting as a standby
        stats.ready = False                      # ready again once the watch is established
        stats.progress()
        saved = store.load()  # the previous leader may have saved since we started

    try:
        sinks = build_sinks(cfg, stats)
    except (SinkFatal, ExporterError) as exc:
        lg.error("sink_setup_failed", error=str(exc))
        return EXIT_CONFIG
    pipeline = build_pipeline(cfg, sinks, stats, live=True)
    if cfg.enrich.enabled:
        from exporter.transforms.enrich import Enricher
        pipeline.enrich = Enricher.from_settings(cfg.enrich, client)
        stats.sink_stats.append(pipeline.enrich)  # its kee_enrich_* metrics
    if leader is not None:
        def lost() -> None:
            pipeline.close()  # stop emitting at once, before another replica can start
            wake.set()
        leader.on_lost = lost

    sources, threads = [], []
    for ns in namespaces:
        key = cfg.checkpoint.key if (cfg.checkpoint.key and len(namespaces) == 1) else stream_key(cfg.kubernetes, ns)
        rv = saved.get(key)
        log.get(stream=key).info("stream_resuming" if rv else "stream_starting", resource_version=rv,
                                 initial=None if rv else cfg.kubernetes.initial)
        src = WatchSource(client, pipeline, cfg.kubernetes, pipeline.stream(key, rv), ns, stop)
        t = threading.Thread(target=_waking(src.run, wake), name=f"watch-{ns or 'all'}", daemon=True)
        sources.append(src)
        threads.append(t)
    if pod_cfg.enabled:
        for src in pods.build(client, pipeline, cfg.kubernetes, pod_cfg, saved, stop, cluster=cfg.records.cluster_name,
                              max_message_bytes=cfg.records.max_message_bytes):
            sources.append(src)
            threads.append(threading.Thread(target=_waking(src.run, wake), name=f"pods-{src.stream.key}",
                                            daemon=True))
    # Everything made so far (modules, clients, settings: ~100k objects) lives as long as the process:
    # out of the cyclic collector's sight, its full collections stop walking them again and again.
    gc.freeze()
    for t in threads:
        t.start()

    last_saved: dict[str, str] = dict(saved)
    exit_code = EXIT_OK
    # The file store saves soon after an ack moves the position (a local fsync); the ConfigMap store
    # writes to the apiserver, so it keeps the slower rate. The loop below runs at most once per
    # save_every while records are in flight or the position moves, and sleeps on `wake` otherwise.
    save_every = (cfg.checkpoint.file_interval_seconds if cfg.checkpoint.store == "file"
                  else cfg.checkpoint.interval_seconds)
    ck = log.get(checkpoint=cfg.checkpoint.store)
    failure_logged = [-math.inf]  # a failing file store is retried every tick: log it every interval_seconds

    def checkpoint() -> bool:
        """Save the committed positions if they moved; True while there is more to come (records in
        flight, or a save that failed)."""
        if leader is not None and not leader.is_leader():
            return False  # deposed: the checkpoint belongs to the new leader now
        committed = {k: v for k, v in pipeline.commit().items() if v}
        busy = stats.in_flight > 0
        if committed and committed != {k: last_saved.get(k) for k in committed}:
            try:
                t0 = time.perf_counter()
                store.save({**last_saved, **committed})
                last_saved.update(committed)
                stats.checkpoint_rv.update(committed)
                stats.checkpoint_saved_at = time.time()
                ck.debug("checkpoint_saved", positions=committed, seconds=round(time.perf_counter() - t0, 6))
            except Exception as exc:  # noqa: BLE001 - a failed save is retried next interval
                busy = True
                stats.checkpoint_failures += 1  # kee_checkpoint_failures counts every one
                if time.monotonic() - failure_logged[0] >= cfg.checkpoint.interval_seconds:
                    failure_logged[0] = time.monotonic()
                    ck.error("checkpoint_save_failed", error=str(exc)[:300], retry_in_seconds=save_every,
                             failures=stats.checkpoint_failures)
        return busy

    while not stop.is_set():
        wake.clear()  # before the look: a wake-up during it starts the next round
        busy = checkpoint()
        for src in sources:
            if src.fatal is not None:
                failure = src.fatal
                slog = lg.bind(stream=src.stream.key)
                if isinstance(failure, Forbidden):
                    slog.error("kubernetes_forbidden", error=failure.message,
                               fix="grant get/list/watch on events to this identity")
                    exit_code = EXIT_API
                else:
                    slog.error("watch_source_failed", exc_info=failure)  # with its traceback
                    exit_code = EXIT_FAIL
                stop.set()
        for sink in sinks:
            if sink.fatal is not None:
                log.get(sink=sink.name).error("sink_fatal_stopping", error=str(sink.fatal))
                exit_code = EXIT_FAIL
                stop.set()
        if leader is not None and not leader.is_leader():
            lg.warning("leadership_lost_stopping")
            exit_code = EXIT_FAIL
            stop.set()
        # At most one round per save_every (one wake-up per round while Events flow); then, when nothing
        # is in flight and nothing woke it meanwhile, sleep until something does.
        if stop.wait(save_every):
            break
        if not busy and not wake.is_set():
            wake.wait(IDLE_WAKE_SECONDS)

    pipeline.close()
    if pipeline.enrich is not None:
        pipeline.enrich.close()  # queued lookups are dropped; records still waiting go out partial
    for sink in sinks:  # a source blocked in a sink's send (backpressure) gives up that record
        sink.interrupt()
    if leader is not None and not leader.is_leader():
        # Deposed: the new leader owns the stream from the shared checkpoint. Emitting what is
        # still buffered here would only duplicate what it re-exports, so nothing more goes out.
        lg.warning("deposed_exiting_without_drain", unconfirmed=pipeline.seq - pipeline.watermark())
        return exit_code or EXIT_FAIL
    lg.info("draining", reason=reason["why"] or "error", in_flight=pipeline.seq - pipeline.watermark())
    if not pipeline.quiesce(5.0):
        lg.warning("drain_source_still_sending")  # a sink's send() ignored the interrupt
    pipeline.flush()
    if not close_sinks(sinks, DRAIN_TIMEOUT):
        exit_code = exit_code or EXIT_FAIL  # undelivered records stay behind the checkpoint
    checkpoint()
    if leader is not None:
        leader.release()
    lg.info("stopped", checkpoint=last_saved, records=pipeline.seq, exit_code=exit_code)
    return exit_code
