"""Wiring and lifecycle: settings -> sinks -> pipeline -> source; SIGTERM drain; final checkpoint."""
from __future__ import annotations

import sys

from exporter import log
from exporter.metrics import Stats
from exporter.pipeline import Pipeline
from exporter.settings import Settings
from exporter.transforms import filters


def build_sinks(cfg: Settings, stats: Stats) -> list:
    sinks = []
    if cfg.sinks.stdout.enabled:
        from exporter.sinks.stdout import StdoutSink
        sinks.append(StdoutSink(buffer_bytes=cfg.sinks.stdout.buffer_bytes))
    if cfg.sinks.kafka.enabled:
        from exporter.sinks.kafka import KafkaSink
        sinks.append(KafkaSink(cfg.sinks.kafka, cluster=cfg.records.cluster_name, stats=stats))
    if cfg.sinks.otlp.enabled:
        from exporter.sinks.otlp import OtlpSink
        sinks.append(OtlpSink(cfg.sinks.otlp, cluster=cfg.records.cluster_name, stats=stats))
    if cfg.sinks.elasticsearch.enabled:
        from exporter.sinks.elasticsearch import ElasticsearchSink
        sinks.append(ElasticsearchSink(cfg.sinks.elasticsearch, stats=stats))
    stats.sink_stats.extend(s for s in sinks if hasattr(s, "metrics"))
    return sinks


def build_pipeline(cfg: Settings, sinks: list, stats: Stats, *, live: bool) -> Pipeline:
    f = cfg.filters
    predicate = filters.build(types=f.types, reasons=f.reasons, exclude_reasons=f.exclude_reasons,
                              namespaces=f.namespaces, exclude_namespaces=f.exclude_namespaces, kinds=f.kinds,
                              names=f.names, field_selector=f.field_selector)
    return Pipeline(sinks, stats=stats, predicate=predicate, cluster=cfg.records.cluster_name,
                    max_message_bytes=cfg.records.max_message_bytes, recurring=cfg.records.recurring, live=live)


def close_sinks(sinks: list, timeout: float) -> bool:
    """Deliver what each sink holds (up to timeout s each); False when any could not."""
    ok = True
    for s in sinks:
        try:
            s.close(timeout)
        except Exception as exc:  # one sink failing to close must not stop the others
            log.error("sink_close_failed", sink=s.name, error=str(exc))
            ok = False
    return ok


def replay(cfg: Settings, path: str) -> int:
    from exporter.sources import replay as source

    stats = Stats()
    sinks = build_sinks(cfg, stats)
    pipeline = build_pipeline(cfg, sinks, stats, live=False)
    try:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        log.error("replay_input_unreadable", path=path, error=exc.strerror)
        return 2
    try:
        with src:
            source.run(pipeline, src)
    except BrokenPipeError:
        return 0
    finally:
        delivered = close_sinks(sinks, 30.0)
    log.info("replay_done", occurrences=stats.received_occurrences, deleted=stats.deleted,
             filtered=stats.filtered, decode_errors=stats.decode_errors, bookmarks=stats.bookmarks,
             delivered=delivered)
    return 0 if delivered else 1


def run(cfg: Settings) -> int:
    from exporter import runner
    return runner.run(cfg)
