"""Command line: flags -> settings (exporter/config.py) -> logging -> run or replay.

    kube-event-exporter [run] [--config FILE] [--set k=v ...] [shortcut flags]
    kube-event-exporter replay [flags] [FILE|-]
    kube-event-exporter [run|replay] --check-config [flags]
    kube-event-exporter --version

Flags may come before or after the command; ``replay --help`` shows replay's own.
``--namespace a,b`` is the same as ``--namespace a --namespace b`` (a namespace name
cannot hold a comma). ``--log-level`` is case-insensitive.

Exit codes: 0 done, 1 runtime failure, 2 bad configuration or usage (the message
names the setting and the fix), 3 cannot authenticate or is forbidden by RBAC.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_API = 0, 1, 2, 3

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
LOG_LEVELS = ("debug", "info", "warning", "error")
SUB = "sub_"  # dest prefix of the flags given after the command


def version() -> str:
    """The installed package's version (importlib.metadata), else the checkout's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed
    try:
        return installed("kube-event-exporter")
    except PackageNotFoundError:
        from exporter import __version__
        return __version__


class _Version(argparse.Action):
    """--version, resolved only when asked for: importlib.metadata costs more start-up CPU than a whole
    replay of a thousand lines (issue 16), and every other start would pay it to build the parser."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:  # noqa: A002 - argparse's name
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0,
                         help=help or "show program's version number and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def _flags(p: argparse.ArgumentParser, prefix: str) -> None:
    """The flags every command takes. Defaults are SUPPRESS: absent means "not given", merged in main()."""
    d = argparse.SUPPRESS
    p.add_argument("--config", dest=prefix + "config", default=d, metavar="FILE",
                   help="YAML settings file (default: env KEE_CONFIG)")
    p.add_argument("--set", dest=prefix + "set", action="append", default=d, metavar="KEY=VALUE",
                   help="override a setting, e.g. --set sinks.kafka.topic=events (repeatable)")
    p.add_argument("--check-config", dest=prefix + "check_config", action="store_true", default=d,
                   help="validate everything start-up would, print the effective settings (secrets masked), exit "
                        "(0 valid, 2 invalid)")
    p.add_argument("--namespace", dest=prefix + "namespaces", action="append", default=d, metavar="NS[,NS]",
                   help="watch only these namespaces (repeatable, or comma-separated); default all")
    p.add_argument("--kubeconfig", dest=prefix + "kubeconfig", default=d, metavar="FILE")
    p.add_argument("--context", dest=prefix + "context", default=d, metavar="NAME", help="kubeconfig context")
    p.add_argument("--api", dest=prefix + "api", default=d, metavar="API", help="events.k8s.io/v1 (default) or v1")
    p.add_argument("--cluster-name", dest=prefix + "cluster_name", default=d, metavar="NAME",
                   help="written into every record")
    p.add_argument("--field-selector", dest=prefix + "field_selector", default=d, metavar="SELECTOR",
                   help="client-side filter, kubectl syntax: type!=Normal,reason=BackOff")
    p.add_argument("--checkpoint-file", dest=prefix + "checkpoint_file", default=d, metavar="FILE",
                   help="file checkpoint store at this path")
    p.add_argument("--listen", dest=prefix + "listen", default=d, metavar="HOST:PORT",
                   help="address of /metrics /healthz /readyz ('' disables)")
    p.add_argument("--log-level", dest=prefix + "log_level", default=d, type=str.lower,
                   choices=LOG_LEVELS,
                   metavar="LEVEL",
                   help="debug, info, warning or error (any case)")
    p.add_argument("--output", dest=prefix + "output", default=d, choices=["json", "text"],
                   help="stdout records: json (default, for pipes) or text (one line per record, for a terminal)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kube-event-exporter", description=(
        "Export every Kubernetes Event occurrence as a JSON record (stdout, Kafka, OTLP), "
        "resuming from the last acknowledged resourceVersion."),
        epilog="Exit codes: 0 done, 1 runtime failure, 2 bad configuration or usage, "
               "3 cannot authenticate or forbidden. Settings: docs/configuration.md.")
    p.add_argument("--version", action=_Version)
    _flags(p, "")
    commands = p.add_subparsers(dest="command", metavar="{run,replay}")
    run = commands.add_parser("run", help="watch the cluster and export (the default)",
                              description="Watch the cluster's Events and export every occurrence.")
    _flags(run, SUB)
    replay = commands.add_parser("replay", help="read watch envelopes from FILE or stdin and export them",
                                 description="Read watch envelopes (kubectl get events -w --output-watch-events "
                                             "-o json, or the exporter's input) from FILE or stdin (-) and export "
                                             "them once. No metrics port and no checkpoint unless asked for.")
    replay.add_argument("file", nargs="?", default="-", help="input file (default: - for stdin)")
    _flags(replay, SUB)
    return p


def options(argv: list[str] | None) -> dict[str, Any]:
    """The flag values, those before and after the command merged (after wins; lists add up)."""
    args = parser().parse_args(argv)
    top = {k: v for k, v in vars(args).items() if not k.startswith(SUB)}
    sub = {k[len(SUB):]: v for k, v in vars(args).items() if k.startswith(SUB)}
    merged = {**top, **sub}
    for name in ("set", "namespaces"):
        merged[name] = top.get(name, []) + sub.get(name, [])
    merged["namespaces"] = [n.strip() for item in merged["namespaces"] for n in item.split(",") if n.strip()]
    merged.setdefault("config", os.environ.get("KEE_CONFIG"))
    merged.setdefault("check_config", False)
    merged["command"] = args.command or "run"
    return merged


def overrides_from(opts: dict[str, Any]) -> list[tuple[str, Any]] | str:
    """The settings the flags set, in precedence order; a usage message (str) when a --set is malformed."""
    from exporter import settings

    overrides: list[tuple[str, Any]] = []
    if opts["command"] == "replay":
        # A replay is a one-shot job: no metrics port or checkpoint unless asked for.
        overrides.append(("server.listen", ""))
    for flag, path in SHORTCUTS.items():
        if opts.get(flag) is not None:
            overrides.append((path, opts[flag]))
    if opts["namespaces"]:
        overrides.append(("kubernetes.namespaces", opts["namespaces"]))
    if opts.get("checkpoint_file"):
        overrides.append(("checkpoint.store", "file"))
    for item in opts["set"]:
        if "=" not in item:
            return f"--set {item!r}: expected KEY=VALUE"
        k, v = item.split("=", 1)
        overrides.append((k.strip(), settings.parse_scalar(v)))
    return overrides


def main(argv: list[str] | None = None) -> int:
    # Start-up makes long-lived objects only (modules, classes, settings): no collection while it runs
    # (~2% of a 10,000-line replay's CPU); once it is done they are frozen out of the collector's way.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: list[str] | None) -> int:
    opts = options(argv)
    from exporter import config, log
    from exporter.errors import ConfigError

    overrides = overrides_from(opts)
    if isinstance(overrides, str):
        print(f"kube-event-exporter: {overrides}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        cfg = config.load(opts["config"], overrides=overrides)
    except ConfigError as exc:
        print(f"kube-event-exporter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if opts["check_config"]:
        import dataclasses
        import json

        from exporter.redact import redact
        print(json.dumps(redact(dataclasses.asdict(cfg)), indent=2, default=str))
        return EXIT_OK
    log.configure(cfg.log.level, cfg.log.format, cache=True)
    lg = log.get(command=opts["command"])
    gc.freeze()
    gc.enable()
    try:
        if opts["command"] == "replay":
            from exporter import app
            return app.replay(cfg, opts["file"])
        from exporter import runner
        return runner.run(cfg)
    except KeyboardInterrupt:  # Ctrl-C during a replay (a run handles SIGINT itself and drains)
        lg.warning("interrupted", effect="records not yet confirmed by the sinks may not have been delivered")
        return EXIT_FAIL
    except Exception:  # noqa: BLE001 - a crash is logged with its traceback, and exits 1
        lg.exception("crashed", version=version())
        return EXIT_FAIL
