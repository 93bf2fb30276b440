"""Wiring: settings -> sinks -> pipeline, shared by the live run (exporter/runner.py) and replay.

The live lifecycle (watch, checkpoints, SIGTERM drain) is runner.py, which imports
this module; this module never imports it back (the CLI picks one or the other).
"""
from __future__ import annotations

import gc
import sys

from exporter import log
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.settings import Settings
from exporter.sinks.base import Sink, SinkInterrupted
from exporter.transforms import filters

#: Seconds replay's sinks get to deliver what they hold at the end of the input, or after SIGTERM/SIGINT.
REPLAY_DRAIN, REPLAY_SIGNAL_DRAIN = 30.0, 5.0


def build_sinks(cfg: Settings, stats: Stats) -> list[Sink]:
    sinks: list[Sink] = []
    if cfg.sinks.stdout.enabled:
        from exporter.sinks.stdout import StdoutSink
        from exporter.sinks.text import TextSink
        stdout_sink = TextSink if cfg.sinks.stdout.format == "text" else StdoutSink  # --output
        if stdout_sink is StdoutSink and sys.stdout.isatty():
            log.info("stdout_is_a_terminal", hint="--output text prints one line per record, like kubectl get events")
        sinks.append(stdout_sink(buffer_bytes=cfg.sinks.stdout.buffer_bytes, stats=stats))
    if cfg.sinks.kafka.enabled:
        from exporter.sinks.kafka import KafkaSink
        sinks.append(KafkaSink(cfg.sinks.kafka, cluster=cfg.records.cluster_name, stats=stats))
    if cfg.sinks.otlp.enabled:
        from exporter.sinks.otlp import OtlpSink
        sinks.append(OtlpSink(cfg.sinks.otlp, cluster=cfg.records.cluster_name, stats=stats))
    if cfg.sinks.elasticsearch.enabled:
        from exporter.sinks.elasticsearch import ElasticsearchSink
        sinks.append(ElasticsearchSink(cfg.sinks.elasticsearch, stats=stats))
    if cfg.sinks.webhook:
        from exporter.sinks.webhook import WebhookSink
        sinks.extend(WebhookSink(hook, i, predicate=filters.build(field_selector=hook.filter), stats=stats)
                     for i, hook in enumerate(cfg.sinks.webhook))
    stats.sink_stats.extend(sinks)
    return sinks


def build_pipeline(cfg: Settings, sinks: list[Sink], stats: Stats, *, live: bool) -> Pipeline:
    f = cfg.filters
    predicate = filters.build(types=f.types, reasons=f.reasons, exclude_reasons=f.exclude_reasons,
                              namespaces=f.namespaces, exclude_namespaces=f.exclude_namespaces, kinds=f.kinds,
                              names=f.names, field_selector=f.field_selector)
    return Pipeline(sinks, stats=stats, predicate=predicate, cluster=cfg.records.cluster_name,
                    max_message_bytes=cfg.records.max_message_bytes, max_record_bytes=cfg.records.max_record_bytes,
                    recurring=cfg.records.recurring, live=live)


def close_sinks(sinks: list[Sink], timeout: float) -> bool:
    """Deliver what each sink holds (up to timeout s each); False when any could not (exit 1)."""
    ok = True
    for s in sinks:
        try:
            s.close(timeout)
        except SinkFatal:  # the sink logged what it could not deliver (sink_undelivered_at_close)
            ok = False
        except Exception:  # noqa: BLE001 - one sink failing to close must not stop the others
            log.get(sink=s.name).exception("sink_close_failed")
            ok = False
    return ok


def replay(cfg: Settings, path: str) -> int:
    import signal

    from exporter.sources import replay as source

    stats = Stats()
    sinks = build_sinks(cfg, stats)
    pipeline = build_pipeline(cfg, sinks, stats, live=False)
    lg = log.get(input=path)
    if cfg.enrich.enabled:  # a replay reads a capture: the objects it names may be long gone
        lg.warning("enrich_ignored_in_replay", fix="enrichment runs only in `run`; records are replayed as captured")
    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        lg.error("replay_input_unreadable", error=exc.strerror, fix="give a readable file, or - for stdin")
        return 2
    stopped: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        """SIGTERM/SIGINT: stop reading, free a send() blocked by a failing sink, drain briefly, exit 1."""
        if stopped:
            return
        stopped.append(signal.Signals(signum).name)
        for sink in sinks:
            sink.interrupt()
        raise SinkInterrupted(f"stopped by {stopped[0]}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed: BaseException | None = None
    skipped = 0
    # Everything made so far (modules, settings, sinks) lives as long as the process: out of the
    # collector's way, so its collections while records stream through stay small (issue 16).
    gc.freeze()
    try:
        with src:
            skipped = source.run(pipeline, src)
    except (SinkFatal, SinkInterrupted) as exc:  # a sink can never deliver again, or a signal
        failed = exc
    finally:
        pipeline.close()
        for sink in sinks:
            if sink.fatal is not None:
                sink.interrupt()
        # after a signal, a short drain: the person asked to stop
        delivered = close_sinks(sinks, REPLAY_SIGNAL_DRAIN if stopped else REPLAY_DRAIN)
    if failed is not None:
        lg.error("replay_stopped", reason=stopped[0] if stopped else "sink_failed", error=str(failed),
                 fix="" if stopped else "the output was closed or failed before every record was delivered; "
                                        "see the sink_fatal log")
        delivered = False
    lg.info("replay_done", occurrences=stats.received_occurrences, deleted=stats.deleted,
            filtered=stats.filtered, decode_errors=stats.decode_errors, bookmarks=stats.bookmarks,
            skipped=skipped, delivered=delivered)
    if not delivered:
        return 1
    return source.EXIT_SKIPPED if skipped else 0

