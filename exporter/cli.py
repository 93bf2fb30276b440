"""Command line: flags -> settings -> logging -> run.

    kube-event-exporter [run] [--config FILE] [--set k=v ...] [shortcut flags]
    kube-event-exporter replay [FILE|-] [same flags]
    kube-event-exporter --check-config [--config FILE]

Exit codes: 0 done, 1 runtime failure, 2 bad configuration or usage,
3 cannot reach or authenticate to the Kubernetes API at start.
"""
from __future__ import annotations

import argparse
import os
import sys

EXIT_CONFIG = 2
EXIT_API = 3

#: flag -> settings path, for the options people type most.
SHORTCUTS = {
    "kubeconfig": "kubernetes.kubeconfig",
    "context": "kubernetes.context",
    "api": "kubernetes.api",
    "cluster_name": "records.cluster_name",
    "field_selector": "filters.field_selector",
    "checkpoint_file": "checkpoint.path",
    "listen": "server.listen",
    "log_level": "log.level",
    "output": "sinks.stdout.format",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kube-event-exporter", description=(
        "Export every Kubernetes Event occurrence as a JSON record (stdout, Kafka, OTLP), "
        "resuming from the last acknowledged resourceVersion."))
    p.add_argument("command", nargs="?", default="run", choices=["run", "replay"],
                   help="run: watch the cluster (default); replay: read watch envelopes from FILE or stdin")
    p.add_argument("file", nargs="?", default="-", help="replay input (default: stdin)")
    p.add_argument("--config", default=os.environ.get("KEE_CONFIG"), help="YAML settings file (env KEE_CONFIG)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set sinks.kafka.topic=events (repeatable)")
    p.add_argument("--check-config", action="store_true", help="validate the settings, print them, exit")
    p.add_argument("--namespace", action="append", default=[], dest="namespaces",
                   help="watch only this namespace (repeatable); default all")
    p.add_argument("--kubeconfig")
    p.add_argument("--context")
    p.add_argument("--api", help="events.k8s.io/v1 (default) or v1")
    p.add_argument("--cluster-name")
    p.add_argument("--field-selector", help="client-side filter, kubectl syntax: type!=Normal,reason=BackOff")
    p.add_argument("--checkpoint-file", help="file checkpoint store at this path")
    p.add_argument("--listen", help="host:port for /metrics /healthz /readyz ('' disables)")
    p.add_argument("--log-level")
    p.add_argument("--output", choices=["json", "text"],
                   help="stdout records: json (default, for pipes) or text (one line per record, for a terminal)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from exporter import log, settings
    from exporter.errors import ConfigError

    overrides: list[tuple[str, object]] = []
    for flag, path in SHORTCUTS.items():
        v = getattr(args, flag)
        if v is not None:
            overrides.append((path, v))
    if args.namespaces:
        overrides.append(("kubernetes.namespaces", args.namespaces))
    if args.checkpoint_file:
        overrides.append(("checkpoint.store", "file"))
    for item in args.set:
        if "=" not in item:
            print(f"kube-event-exporter: --set {item!r}: expected KEY=VALUE", file=sys.stderr)
            return EXIT_CONFIG
        k, v = item.split("=", 1)
        overrides.append((k.strip(), settings.parse_scalar(v)))
    if args.command == "replay":
        # A replay is a one-shot job: no metrics port or checkpoint unless asked for.
        overrides = [("server.listen", ""), *overrides]
    try:
        cfg = settings.load(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"kube-event-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log.configure(cfg.log.level, cfg.log.format)
    if args.check_config:
        import dataclasses
        import json
        from exporter.redact import redact
        print(json.dumps(redact(dataclasses.asdict(cfg)), indent=2, default=str))
        return 0
    from exporter import app
    if args.command == "replay":
        return app.replay(cfg, args.file)
    return app.run(cfg)
