"""The benchmark entry point (issue 7). Not a test: it measures, prints a table, writes docs/BENCHMARKS.md.

    ~/.cache/kube-event-exporter/venv/bin/python -m bench                 # everything (~5-6 min)
    ... -m bench --only replay                                             # one or more (comma list)
    ... -m bench --only replay --lines 20000 --runs 3 --no-docs            # smaller, nothing written

Benchmarks: replay (stdout vs floor.py), sinks (Kafka, OTLP gRPC/HTTP), enrich (off vs on), latency
(apiserver -> stdout), memory (10k/100k/1M lines), peers (ours, the OTel Collector's
k8s_events, and resmoio's kubernetes-event-exporter, kube-eventer and eventrouter from
binaries given with --peer NAME=PATH), watch (`run` fed by a local TLS watch server at full
speed vs floor.py). Results of a subset are merged with the previous results
kept in docs/BENCHMARKS.md, so the document always shows every benchmark with
the date it was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import report
from bench.common import REPO, log, machine

ALL = ("replay", "sinks", "latency", "memory", "peers", "enrich", "watch")


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", action="append", default=[],
                   help=f"comma list of benchmarks to run (default all): {', '.join(ALL)}")
    p.add_argument("--lines", type=int, default=100_000, help="stream size for replay and sinks (default 100000)")
    p.add_argument("--runs", type=int, default=5, help="alternating runs per side for replay (default 5)")
    p.add_argument("--sink-runs", type=int, default=3, help="runs per sink, alternating order (default 3)")
    p.add_argument("--sinks", default="stdout,kafka,otlp-grpc,otlp-http", help="which sinks for `sinks`")
    p.add_argument("--memory-sizes", default="10000,100000,1000000", help="stream sizes for memory")
    p.add_argument("--rates", default="10,100", help="Events/s for latency (default 10,100)")
    p.add_argument("--latency-seconds", type=float, default=20.0, help="seconds per rate (default 20)")
    p.add_argument("--latency-sinks", default="stdout,kafka,otlp",
                   help="sinks enabled together in the latency run (stdout always; kafka, otlp = gRPC)")
    p.add_argument("--peer-events", type=int, default=2000, help="Events per peers round (default 2000)")
    p.add_argument("--peer-rates", default="100,500,max",
                   help="Events/s of each peers phase, comma list; `max` = the rate a closed-loop POST probe "
                        "reaches with every watcher running (default 100,500,max)")
    p.add_argument("--peer-rounds", type=int, default=3, help="peers rounds per rate (default 3)")
    p.add_argument("--peer", action="append", default=[], metavar="NAME=PATH",
                   help="a peer's binary: resmoio=PATH (resmoio/kubernetes-event-exporter), kube-eventer=PATH, "
                        "eventrouter=PATH; repeat for each. A peer without a path is skipped (and reported so)")
    p.add_argument("--peer-conns", type=int, default=4, help="POST connections of the peers load (default 4)")
    p.add_argument("--no-peer-restart", action="store_true", help="skip the peers restart test")
    p.add_argument("--enrich-pods", type=int, default=2000, help="Pods for enrich (under --enrich-deployments)")
    p.add_argument("--enrich-seconds", type=float, default=60.0, help="seconds of load for enrich (default 60)")
    p.add_argument("--enrich-distinct", type=int, default=10000, help="distinct objects for enrich part B")
    p.add_argument("--watch-group", type=int, default=1,
                   help="watch: lines per HTTP chunk (default 1, as the apiserver)")
    p.add_argument("--watch-rates", default="100,500",
                   help="watch: also these paced rates (Events/s), idle CPU and CPU/Event ('' for none)")
    p.add_argument("--watch-paced-seconds", type=float, default=15.0, help="watch: seconds per paced rate")
    p.add_argument("--sinks-before", metavar="REV",
                   help="sinks: also run this commit's exporter in every run of each sink (before/after from one run)")
    p.add_argument("--replay-before", metavar="REV",
                   help="replay: also run this commit's exporter in every round (before/after from one run)")
    p.add_argument("--watch-before", metavar="REV",
                   help="watch: also run this commit's exporter in every round (before/after side by side)")
    p.add_argument("--enrich-deployments", type=int, default=40, help="Deployments for enrich (default 40)")
    p.add_argument("--enrich-rate", type=float, default=100.0, help="Events/s for enrich part A (default 100)")
    p.add_argument("--enrich-distinct-rate", type=float, default=150.0, help="Events/s for enrich part B")
    p.add_argument("--enrich-watch-seconds", type=float, default=30.0,
                   help="seconds of churn for enrich part E (watches instead of GETs; 0: skip)")
    p.add_argument("--enrich-resmoio", metavar="PATH",
                   help="resmoio's kubernetes-event-exporter binary, run beside ours in enrich part A")
    p.add_argument("--docs", default=str(REPO / "docs" / "BENCHMARKS.md"), help="where to write the document")
    p.add_argument("--no-docs", action="store_true", help="print only; write no document")
    p.add_argument("--json", help="also write this run's raw results to this file")
    p.add_argument("--commit", metavar="REV",
                   help="measure this commit (git archive of exporter/ and schemas/) instead of the checkout "
                        "as it is (the default, uncommitted changes included and listed in the document)")
    p.add_argument("--render-only", action="store_true",
                   help="run nothing: rewrite the document from the results it already holds")
    return p


def public_command(argv: list[str]) -> str:
    """The command line as stored in the document: a path given to --peer/--json/--docs becomes a placeholder
    (the document must not name a path of the machine it was measured on)."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        key, eq, val = a.partition("=")
        if key in ("--json", "--docs"):
            out.append(f"{key}=FILE" if eq else key)
            if not eq:
                next(it, None)
                out.append("FILE")
        elif key == "--peer":
            if not eq:
                val = next(it, "")
            name = val.partition("=")[0]
            out += ["--peer", f"{name}=PATH"]
        elif os.path.isabs(a):  # e.g. --enrich-resmoio PATH
            out.append(f"<{os.path.basename(a)}>")
        else:
            out.append(a)
    return " ".join(["python -m bench", *out])


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    only = [x.strip() for o in args.only for x in o.split(",") if x.strip()] or list(ALL)
    bad = [x for x in only if x not in ALL]
    if bad:
        print(f"unknown benchmark(s) {bad}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    try:
        from bench.peers import parse_peer_args
        peer_bins = parse_peer_args(args.peer)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if args.render_only:
        path = Path(args.docs)
        prev = report.load_previous(path)
        path.write_text(report.document(prev, {}))
        print(report.console(prev, {}))
        return 0
    if args.commit:
        from bench.common import use_commit
        log(f"measuring {args.commit} from {use_commit(args.commit)}")
    t_start = time.monotonic()
    m = machine()
    log(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, load {m['loadavg']:.2f}")
    results: dict = {}
    errors: dict = {}

    def stamp(res: dict) -> dict:
        return {**res, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": m}

    command = public_command(argv if argv is not None else sys.argv[1:])

    def attempt(name, fn):
        t0 = time.monotonic()
        load = os.getloadavg()[0]
        try:
            results[name] = stamp(fn())
            results[name]["load_at_start"] = load
            results[name]["command"] = command
            results[name]["seconds"] = time.monotonic() - t0
        except Exception as e:  # noqa: BLE001 - one benchmark failing must not lose the others
            import traceback
            log(f"{name} FAILED: {e!r}")
            traceback.print_exc()
            errors[name] = f"{type(e).__name__}: {e}"

    if "replay" in only:
        from bench.replay import bench_replay_stdout
        attempt("replay", lambda: bench_replay_stdout(args.lines, args.runs, before=args.replay_before))
    if "watch" in only:
        from bench.watch import bench_watch
        def watch():
            from bench.watch import bench_paced
            res = bench_watch(args.lines, args.runs, args.watch_group, args.watch_before)
            res["paced"] = [bench_paced(float(rate), args.watch_paced_seconds, 10.0, 2, args.watch_before)
                            for rate in args.watch_rates.split(",") if rate.strip()]
            return res
        attempt("watch", watch)
    if "memory" in only:
        from bench.replay import bench_memory
        attempt("memory", lambda: bench_memory(_ints(args.memory_sizes)))
    if "sinks" in only:
        from bench.sinks import bench_sinks
        attempt("sinks", lambda: bench_sinks(args.lines, args.sink_runs,
                                              [s.strip() for s in args.sinks.split(",") if s.strip()],
                                              before=args.sinks_before))
    if "latency" in only or "peers" in only or "enrich" in only:
        from bench import kube
        cp = broker = col = None
        try:
            if "enrich" in only:  # the same etcd + kube-apiserver, with an audit log of reads (requests by client)
                from bench.enrich import start_control_plane as enrich_control_plane
                cp = enrich_control_plane()
            else:
                cp = kube.start_control_plane()
            if "latency" in only:
                lat_sinks = {x.strip() for x in args.latency_sinks.split(",")}
                if lat_sinks & {"kafka", "otlp"}:
                    try:
                        broker, col = kube.start_sink_components()
                    except Exception as e:  # noqa: BLE001 - still measure stdout
                        log(f"Kafka/Collector did not start ({e!r}): latency to stdout only")
                def latency():
                    runs = [{"label": "stdout only", **kube.bench_latency(cp, _ints(args.rates), args.latency_seconds)}]
                    b = broker if "kafka" in lat_sinks else None
                    c = col if "otlp" in lat_sinks else None
                    if b is not None or c is not None:
                        label = "+".join(["stdout"] + (["kafka"] if b else []) + (["otlp"] if c else []))
                        runs.append({"label": label, **kube.bench_latency(cp, _ints(args.rates), args.latency_seconds,
                                                                          broker=b, col=c)})
                    return {"duration_s": args.latency_seconds, "runs": runs}
                attempt("latency", latency)
                for comp in (col, broker):
                    if comp is not None:
                        kube.stop(comp)
                broker = col = None
            if "peers" in only:
                from bench.peers import bench_peers
                rates = [x.strip() for x in args.peer_rates.split(",") if x.strip()]
                attempt("peers", lambda: bench_peers(cp, peer_bins, args.peer_events, rates, args.peer_rounds,
                                                     restart=not args.no_peer_restart, conns=args.peer_conns))
            if "enrich" in only:
                from bench.enrich import bench_enrich
                attempt("enrich", lambda: bench_enrich(cp, args.enrich_pods, args.enrich_deployments,
                                                       args.enrich_rate, args.enrich_seconds, args.enrich_distinct,
                                                       args.enrich_distinct_rate, args.enrich_resmoio,
                                                       args.enrich_watch_seconds))
        except Exception as e:  # noqa: BLE001
            log(f"control plane FAILED: {e!r}")
            for name in ("latency", "peers", "enrich"):
                if name in only and name not in results:
                    errors.setdefault(name, f"{type(e).__name__}: {e}")
        finally:
            for comp in (col, broker, cp):
                if comp is not None:
                    kube.stop(comp)
    log(f"done in {time.monotonic() - t_start:.0f} s")
    print(report.console(results, errors))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "errors": errors}, indent=1, default=str))
    if not args.no_docs:
        path = Path(args.docs)
        merged = report.merge(report.load_previous(path), results)
        path.write_text(report.document(merged, errors))
        log(f"wrote {path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
