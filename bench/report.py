"""Tables for the console and docs/BENCHMARKS.md (which also keeps the raw results, for merging subsets)."""
from __future__ import annotations

import json
import re
from pathlib import Path

MARK = "bench-results"
TARGET_RATIO = 2.0


def load_previous(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError:
        return {}
    m = re.search(r"<!-- " + MARK + r"\n(.*?)\n-->", text, re.S)
    if not m:
        return {}
    try:
        return json.loads(m.group(1))
    except ValueError:
        return {}


def merge(previous: dict, new: dict) -> dict:
    out = dict(previous)
    out.update(new)
    return out


def _f(x, fmt="{:.2f}", none="-"):
    if x is None:
        return none
    try:
        return fmt.format(x)
    except (ValueError, TypeError):
        return str(x)


ORDER = ["stdout", "kafka", "otlp", "otlp-grpc", "otlp-http", "otlp-grpc-debug", "otlp-http-debug", "elasticsearch",
         "kube-event-exporter (ours)"]


def ordered(d: dict) -> list:
    """Items in a stable, meaningful order (ours/stdout first), whatever order the JSON kept."""
    return sorted(d.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- sections ---------------------------------------------------------------------------------

def replay_table(r: dict) -> str:
    verdict = "meets" if r["ratio_median"] <= TARGET_RATIO else "MISSES"
    rows = [
        ["kube-event-exporter `replay`", _f(r["exporter_cpu_median_s"]), _f(r["exporter_us_per_line"], "{:.1f}"),
         _f(r["exporter_maxrss_mib"], "{:.0f}"), ", ".join(_f(x) for x in r["exporter_cpu_s"])],
        ["floor.py", _f(r["floor_cpu_median_s"]), _f(r["floor_us_per_line"], "{:.1f}"),
         _f(r["floor_maxrss_mib"], "{:.0f}"), ", ".join(_f(x) for x in r["floor_cpu_s"])],
    ]
    b = r.get("before")
    if b:
        rows.insert(1, [f"before: commit {b['commit']}", _f(b["cpu_median_s"]), _f(b["us_per_line"], "{:.1f}"),
                        _f(b["maxrss_mib"], "{:.0f}"), ", ".join(_f(x) for x in b["cpu_s"])])
    return (table(["process", "CPU s (median)", "CPU us/line", "peak RSS MiB", "CPU s, each run"], rows)
            + f"\n\n**Overhead ratio (median of the {r['runs']} side-by-side pair ratios): "
              f"{r['ratio_median']:.2f}** (pairs: {', '.join(_f(x) for x in r['pair_ratios'])}); "
              f"target <= {TARGET_RATIO}: {verdict}. Ratio of the medians "
              f"{_f(r.get('ratio_of_medians'))}, of the minima (least disturbed runs) "
              f"{_f(r.get('ratio_of_minima'))}. {r['lines']} lines, {r.get('records')} records; "
              f"exporter wall {r['exporter_wall_median_s']:.2f} s "
              f"({_f(r.get('exporter_records_per_s_wall'), '{:,.0f}')} records/s)."
            + (f" Before (commit {b['commit']}, same rounds): {b['ratio_median']:.2f}x the floor (pairs: "
               f"{', '.join(_f(x) for x in b['pair_ratios'])}); after / before CPU (median of the rounds' ratios): "
               f"{b['after_vs_before']:.2f}." if b else ""))


def sinks_table(r: dict) -> str:
    rows = []
    for name, v in ordered(r["sinks"]):
        delivered = v["delivered"]
        ok = "n/a" if all(d is None for d in delivered) else (
            "all" if all(d == v["records"] for d in delivered) else ", ".join(str(d) for d in delivered))
        rows.append([name, _f(v["records_per_s"], "{:,.0f}"), _f(v["cpu_us_per_record"], "{:.1f}"),
                     _f(v["marginal_cpu_us_per_record"], "{:.1f}"), _f(v["fixed_cpu_s"]),
                     _f(v.get("cpu_vs_stdout")), _f(v["maxrss_mib"], "{:.0f}"),
                     _f(v.get("receiver_cpu_median_s")), _f(v.get("receiver_cpu_us_per_record"), "{:.1f}"), ok])
        b = v.get("before")
        if b:
            bok = ("n/a" if all(d is None for d in b["delivered"]) else "all"
                   if all(d == v["records"] for d in b["delivered"]) else ", ".join(map(str, b["delivered"])))
            rows.append([f"{name}, before: commit {b['commit']}", _f(b["records_per_s"], "{:,.0f}"),
                         _f(b["cpu_us_per_record"], "{:.1f}"), "-", "-", "-", "-", "-", "-", bok])
    return (table(["sink", "records/s (wall)", "exporter CPU us/record", "marginal us/record",
                   "fixed CPU s", "CPU vs stdout", "peak RSS MiB", "receiver CPU s", "receiver us/record",
                   "delivered"], rows)
            + f"\n\n{r['lines']} lines ({next(iter(r['sinks'].values()))['records']} records) per run, "
              f"{r['runs']} runs per sink, medians. Records/s = records / wall time of the whole process "
              f"(start-up and the final wait for every acknowledgement included). Marginal = (CPU - fixed) / "
              f"records, fixed = the same command on an empty input (interpreter, imports, sink set-up/close).")


def _latency_runs(r: dict) -> list[dict]:
    return r.get("runs") or [{"label": "stdout only", **r}]


def latency_table(r: dict) -> str:
    rows = []
    for run in _latency_runs(r):
        for rate, v in run["rates"].items():
            for sink, x in ordered(v.get("sinks", {"stdout": v})):
                rows.append([run["label"], f"{rate}/s", sink, v["events"], _f(v["achieved_rate"], "{:.1f}"),
                             x["missing"], _f(x["p50_ms"], "{:.1f}"), _f(x["p90_ms"], "{:.1f}"),
                             _f(x["p99_ms"], "{:.1f}"), _f(x["max_ms"], "{:.1f}"),
                             _f(x["p50_from_post_start_ms"], "{:.1f}"), _f(x["p99_from_post_start_ms"], "{:.1f}"),
                             _f(v["post_p50_ms"], "{:.1f}"), _f(v["post_p99_ms"], "{:.1f}")])
    return (table(["exporter's sinks", "rate", "sink", "events", "achieved/s", "missing", "p50 ms", "p90 ms",
                   "p99 ms", "max ms", "p50 from POST start", "p99 from POST start", "POST p50 ms", "POST p99 ms"],
                  rows)
            + f"\n\n{r['duration_s']:.0f} s per rate. First an exporter with stdout only; then one with every "
              "sink enabled at once, so every sink sees the same Events (stdout then also pays for the others: "
              "the chunk is handed to every sink before stdout is flushed). Latency = arrival at the sink minus "
              "the POST's completion (the 201 "
              "read); `from POST start` adds the POST itself (an upper bound on creation-to-record). Arrival: "
              "stdout = the line read from the exporter's stdout pipe; kafka = a consumer's poll returning the "
              "record (fetch.wait.max.ms=5); otlp = the record found in the Collector's file exporter output "
              "(flush_interval 10 ms, polled every 5 ms), i.e. after the Collector's own pipeline.")


def memory_table(r: dict) -> str:
    rows = [[f"{x['lines']:,}", _f(x["bytes"] / 1048576, "{:,.0f}"), _f(x.get("records"), "{:,}"),
             _f(x["maxrss_mib"], "{:.1f}"), _f(x["max_sampled_rss_mib"], "{:.1f}"),
             _f(x["median_sampled_rss_mib"], "{:.1f}"), x["samples"], _f(x["vs_smallest"]), _f(x["cpu_s"], "{:.1f}")]
            for x in r["sizes"]]
    return (table(["lines", "stream MiB", "records", "max RSS MiB (ru_maxrss)", "max sampled VmRSS MiB",
                   "median sampled MiB", "samples", "vs smallest", "CPU s"], rows)
            + f"\n\nGrowth from the smallest to the largest stream: {r['growth_mib']:+.1f} MiB "
              f"(VmRSS sampled every {r['interval_s']} s): "
              + ("**flat**." if r["growth_mib"] <= max(5.0, 0.1 * r["sizes"][0]["maxrss_mib"]) else
                 "**NOT flat**: the peak grows with the number of records (see Notes)."))


def peers_table(r: dict) -> str:
    if r.get("version", 1) < 2:
        return _peers_table_v1(r)
    phases = r["phases"]
    names = sorted({n for ph in phases for n in ph["watchers"]} | set(r.get("peers", {})),
                   key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))

    def rate_label(ph: dict) -> str:
        asked = f"max = {ph['rate']:.0f}/s" if ph["asked"] == "max" else f"{float(ph['asked']):.0f}/s"
        return f"{asked} (achieved {ph['achieved_rate']:.0f}/s)"
    rows = []
    for n in names:
        row = [n]
        for ph in phases:
            v = ph["watchers"].get(n)
            if v is None:
                row.append("-")
                continue
            total = sum(x["events"] for x in ph["rounds"])
            seen = sum(v["received"])
            row.append(f"**{v['us_per_event_median']:.0f}** ({', '.join(f'{x:.0f}' for x in v['us_per_event'])})"
                       + ("" if seen == total else f", {seen}/{total} seen"))
        rows.append(row)
    text = ("CPU us per Event, median of the rounds (each round):\n\n"
            + table(["watcher"] + [rate_label(ph) for ph in phases], rows))
    rat = r.get("ratios", {})
    if rat:
        text += "\n\n**Ours / best peer (CPU per Event):** " + "; ".join(
            f"{('max' if k == 'max' else f'{float(k):.0f}/s')}: {v['ours_us']:.0f} vs {v['best_peer_us']:.0f} us "
            f"({v['best_peer']}) = **{v['ratio']:.2f}x**" for k, v in rat.items()) + "."
    ours = [(ph, ph["watchers"]["kube-event-exporter (ours)"]) for ph in phases
            if "kube-event-exporter (ours)" in ph["watchers"]]
    if ours:
        text += ("\n\n**Our latency, POST answered -> on stdout (from the POST's start), p99 of each round:** "
                 + "; ".join(
            f"{rate_label(ph)}: {', '.join(f'{x:.0f}' for x in v['lat_p99_ms'])} ms "
            f"({', '.join(f'{x:.0f}' for x in v.get('lat_p99_from_post_start_ms', []))} ms)"
                           for ph, v in ours) + ".")
    rows = []
    for n in names:
        p = r.get("peers", {}).get(n, {})
        lat = []
        for ph in phases:
            v = ph["watchers"].get(n)
            lat.append("-" if v is None else f"{v['lat_p50_ms']:.0f} / {max(v['lat_p99_ms']):.0f}")
        rows.append([n, f"{_f(p.get('rss_start_mib'), '{:.1f}')} -> {_f(p.get('rss_end_mib'), '{:.1f}')}",
                     _f(p.get("max_sampled_rss_mib"), "{:.1f}"), _f(p.get("idle_cpu_ms_per_s"), "{:.1f}"),
                     _f(phases[0]["watchers"].get(n, {}).get("sys_share") if phases else None, "{:.0%}"), *lat])
    text += ("\n\nMemory, idle cost and latency (Event POST answered -> written by the watcher, p50 / worst "
             "round's p99, ms):\n\n"
             + table(["watcher", "RSS start -> end MiB", "max sampled RSS MiB", "idle CPU ms/s",
                      "sys share (first rate)"] + [f"latency {rate_label(ph)}" for ph in phases], rows))
    rs = r.get("restart")
    if rs:
        rows = [[n, v["lost"], v["duplicated"], v["re_emitted_earlier"], "yes" if v["restarted"] else "no"]
                for n, v in ordered(rs["watchers"])]
        text += (f"\n\nRestart test: {rs['created']} Events POSTed at {rs['rate']:.0f}/s; 5 s after the start "
                 f"every watcher was SIGKILLed at once and restarted {rs['down_s']:.1f} s later; the load went "
                 "on 5 s more. Lost = created during the test, never written; duplicated = extra copies of "
                 "those; re-emitted = extra copies, after the restart, of Events from the earlier phases.\n\n"
                 + table(["watcher", "lost", "duplicated", "re-emitted earlier Events", "running after"], rows))
    load = "; ".join(f"{rate_label(ph)}: POST p50 {median(x['post_p50_ms'] for x in ph['rounds']):.1f} ms, "
                     f"p99 {max(x['post_p99_ms'] for x in ph['rounds']):.1f} ms"
                     + (f", closed-loop probe {ph['probe']['rate']:.0f}/s over {ph['probe'].get('conns', '?')} "
                        "connections" if ph.get("probe") else "") for ph in phases)
    text += (f"\n\n{r['rounds']} rounds of {r['events']} Events per rate, POSTed open-loop over "
             f"{r.get('conns', 1)} kept-alive connections ({load}); every watcher sees the same Events at the same "
             "time (one namespace). CPU = utime+stime delta from /proc/PID/stat from the start of a round until "
             "every watcher has written every Event (kube-eventer batches every 5 s, so a round lasts at least "
             "that long after the load; the others are idle meanwhile). `max` = the rate a closed-loop probe "
             "(as fast as the connections go) reached with every watcher running, then asked open-loop.")
    if r.get("upstream"):
        text += " Peers' upstream commits: " + ", ".join(f"{k} {v}" for k, v in r["upstream"].items()) + "."
    for n, why in r.get("skipped", {}).items():
        text += f"\n\n- **{n}: skipped** - {why}."
    for n, why in r.get("failed", {}).items():
        text += f"\n\n- **{n}: failed** - `{why[-600:].strip()}`"
    return text


def median(xs) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


def _peers_table_v1(r: dict) -> str:
    rows = []
    for name, v in ordered(r["peers"]):
        rows.append([name, f"{sum(v['received'])}/{r['events'] * r['rounds']}",
                     _f(v["cpu_us_per_event"], "{:.0f}"), ", ".join(_f(x) for x in v["cpu_s"]),
                     _f(v.get("sys_share"), "{:.0%}"),
                     _f(v["idle_cpu_ms_per_s"], "{:.1f}"), _f(v["max_sampled_rss_mib"], "{:.1f}"),
                     _f(v["hwm_mib"], "{:.1f}"),
                     ", ".join(_f(x, "{:.1f}") for x in v.get("rss_after_rounds_mib", []))])
    text = table(["watcher", "events seen", "CPU us/event (median)", "CPU s per round", "of which sys",
                  "idle CPU ms/s",
                  "max sampled RSS MiB", "VmHWM MiB", "RSS after each round MiB"], rows)
    text += (f"\n\n{r['rounds']} rounds of {r['events']} Events POSTed at {r['rate']:.0f}/s "
             f"(achieved {r.get('achieved_rate', 0):.0f}/s), watched at the same time by every watcher "
             "(one namespace); CPU = utime+stime delta from /proc/PID/stat from the start of a round until "
             "every watcher has written every Event.")
    if r.get("resmoio_error"):
        text += ("\n\nresmoio's kubernetes-event-exporter could not be built from the Go module proxy; "
                 "the exact output:\n\n```\n" + r["resmoio_error"] + "\n```")
    return text


SECTIONS = [
    ("replay", "1. Replay to stdout, against floor.py", replay_table),
    ("sinks", "2. Replay to Kafka and to the OTLP Collector", sinks_table),
    ("latency", "3. End-to-end latency from the apiserver", latency_table),
    ("memory", "4. Resident memory over stream size", memory_table),
    ("peers", "5. Peers under the same apiserver load", peers_table),
    ("enrich", "6. Enrichment: off and on, side by side (issue 13)", lambda r: _enrich_table(r)),
    ("watch", "8. The watch path at full speed, against floor.py (issue 16)", lambda r: _watch_table(r)),
]


def _watch_table(r: dict) -> str:
    from bench.watch import table as watch_table
    return watch_table(r)


def _enrich_table(r: dict) -> str:
    from bench.enrich import enrich_table
    return enrich_table(r)


def console(results: dict, errors: dict) -> str:
    out = []
    for key, title, fn in SECTIONS:
        if key in results:
            out.append(f"\n## {title}\n\n{fn(results[key])}")
        elif key in errors:
            out.append(f"\n## {title}\n\nFAILED: {errors[key]}")
    return "\n".join(out)


def headline(results: dict) -> str:
    rows = []
    if "replay" in results:
        r = results["replay"]
        rows.append(["replay to stdout: CPU vs floor.py (issue 7: <= 2.0; issue 16 goal: <= 1.0)",
                     f"**{r['ratio_median']:.2f}x**",
                     f"{r['exporter_us_per_line']:.1f} vs {r['floor_us_per_line']:.1f} us/line"])
    if "sinks" in results:
        for name, v in ordered(results["sinks"]["sinks"]):
            rows.append([f"replay to {name}", f"{v['records_per_s']:,.0f} records/s",
                         f"{v['cpu_us_per_record']:.1f} us CPU/record"])
    if "latency" in results:
        for run in _latency_runs(results["latency"]):
            for rate, v in run["rates"].items():
                for sink, x in ordered(v.get("sinks", {"stdout": v})):
                    if run["label"] != "stdout only" and sink == "stdout":
                        continue
                    rows.append([f"apiserver -> {sink} latency at {rate}/s", f"p50 {x['p50_ms']:.1f} ms",
                                 f"p99 {x['p99_ms']:.1f} ms"])
    if "memory" in results:
        sz = results["memory"]["sizes"]
        rows.append(["max RSS, " + " / ".join(f"{x['lines']:,}" for x in sz) + " lines",
                     " / ".join(f"{x['maxrss_mib']:.0f}" for x in sz) + " MiB",
                     f"growth {results['memory']['growth_mib']:+.1f} MiB"])
    if "peers" in results and results["peers"].get("version", 1) >= 2:
        achieved = {str(ph.get("asked")): ph.get("achieved_rate") for ph in results["peers"].get("phases", [])}
        for k, v in results["peers"].get("ratios", {}).items():
            rate = "max" if k == "max" else f"{float(k):.0f}/s"
            got = f", achieved {achieved[k]:.0f}/s" if achieved.get(k) else ""
            rows.append([f"live path CPU/Event at {rate} ({v['rate']:.0f}/s asked{got}), ours vs best peer "
                         "(issue 16 goal: <= 0.5x)",
                         f"**{v['ratio']:.2f}x**", f"{v['ours_us']:.0f} vs {v['best_peer_us']:.0f} us "
                         f"({v['best_peer']})"])
    elif "peers" in results:
        for name, v in ordered(results["peers"]["peers"]):
            rows.append([f"apiserver load, {name}", f"{v['cpu_us_per_event']:.0f} us CPU/event",
                         f"max RSS {v['max_sampled_rss_mib']:.0f} MiB"])
    if "watch" in results:
        w = results["watch"]
        rows.append(["TLS watch to stdout, full speed (goal >= 30,000 Events/s on one core)",
                     f"**{w['exporter_events_per_cpu_s']:,.0f} Events per CPU s**",
                     f"{w['exporter_events_per_s']:,.0f} Events/s wall; {w['ratio_median']:.2f}x floor.py's CPU"])
    if "enrich" in results:
        a = results["enrich"]["A"]
        off, on = a["side"]["off"], a["side"]["on"]
        rows.append(["enrichment off -> on (CPU/Event, max RSS)",
                     f"{off['cpu_us_per_event']:.0f} -> {on['cpu_us_per_event']:.0f} us",
                     f"{off['rss_max_mib']:.0f} -> {on['rss_max_mib']:.0f} MiB, "
                     f"{a['requests_per_min']:.0f} API requests/min"])
        ar = results["enrich"].get("A_resmoio") or a
        rm = ar["side"].get("resmoio")
        if rm:
            rows.append(["resmoio's exporter with its lookups, same load (CPU/Event, max RSS)",
                         f"{rm['cpu_us_per_event']:.0f} us", f"{rm['rss_max_mib']:.0f} MiB, "
                         f"{rm['received']} of {ar['events']} records (fell behind, dropped the rest)"])
    return table(["measure", "figure", "detail"], rows)


#: Issue 16's "before": the figures of its own table (main a0c39a4 and the docs of 2026-12-01), for
#: the goals whose benchmark cannot run that commit beside the checkout.
ISSUE16_BEFORE = {
    "live": "ours 270-310 us/Event vs kube-eventer 360-405 (0.7-0.8x), a0c39a4, 2026-12-01",
    "kafka": "19,798 records/s, 42.7 us CPU/record",
    "otlp": "gRPC 14,388 records/s, 66.5 us CPU/record",
    "replay": "1.27-1.43x",
    "memory": "~51 MiB (stdout only)",
    "repeats": "319-389 duplicated (~3.5 s of Events; 5 s checkpoint interval)",
}


def issue16(results: dict) -> str:
    """Issue 16's goals, one row each: before, after (from the results below), met or not."""
    b = ISSUE16_BEFORE
    rows = []

    def row(goal: str, before: str, after: str, met: bool | None) -> None:
        rows.append([goal, before, after, "-" if met is None else ("met" if met else "**not met**")])

    p = results.get("peers", {})
    if p.get("ratios"):
        worst = max(v["ratio"] for v in p["ratios"].values())
        after = ", ".join(f"{'max' if k == 'max' else f'{float(k):.0f}/s'}: {v['ours_us']:.0f} vs "
                          f"{v['best_peer_us']:.0f} us = {v['ratio']:.2f}x" for k, v in p["ratios"].items())
        row("1. live path CPU/Event <= 0.5x the best peer (section 5)", b["live"], after, worst <= 0.5)
    w = results.get("watch")
    if w:
        wb = w.get("before")
        row("2. TLS watch at full speed >= 30,000 Events per CPU s on one core (section 8)",
            f"{wb['events_per_cpu_s']:,.0f} ({wb['commit']})" if wb else "-",
            f"{w['exporter_events_per_cpu_s']:,.0f}", w["exporter_events_per_cpu_s"] >= 30000)
    sinks = results.get("sinks", {}).get("sinks", {})
    if "kafka" in sinks:
        k = sinks["kafka"]
        kb = k.get("before")
        row("3. Kafka >= 50,000 records/s, confirmed (section 2)",
            f"{kb['records_per_s']:,.0f} records/s, {kb['cpu_us_per_record']:.1f} us ({kb['commit']})" if kb
            else b["kafka"], f"{k['records_per_s']:,.0f} records/s, {k['cpu_us_per_record']:.1f} us CPU/record",
            k["records_per_s"] >= 50000)
    otlp = [(n, v) for n, v in ordered(sinks) if n.startswith("otlp")]
    if any(n.endswith("-debug") for n, _ in otlp):  # the sink's own figure (the file exporter's is the Collector's)
        otlp = [(n, v) for n, v in otlp if n.endswith("-debug")]
    if otlp:
        def one(n: str, v: dict) -> str:
            return f"{n} {v['records_per_s']:,.0f}/s"
        befores = [f"{n} {v['before']['records_per_s']:,.0f}/s" for n, v in otlp if v.get("before")]
        row("4. OTLP gRPC and HTTP >= 40,000 records/s, confirmed (section 2)",
            (", ".join(befores) + f" ({otlp[0][1]['before']['commit']})") if befores else b["otlp"],
            ", ".join(one(n, v) for n, v in otlp), all(v["records_per_s"] >= 40000 for _, v in otlp))
    r = results.get("replay")
    if r:
        rb = r.get("before")
        row("5. replay to stdout <= 1.0x floor.py's CPU (section 1)",
            f"{rb['ratio_median']:.2f}x ({rb['commit']}, same rounds)" if rb else b["replay"],
            f"{r['ratio_median']:.2f}x", r["ratio_median"] <= 1.0)
    m = results.get("memory")
    if m:
        row("6. stdout-only <= 35 MiB RSS; flat from 10k to 1M Events (sections 4, 7)", b["memory"],
            f"replay {max(x['maxrss_mib'] for x in m['sizes']):.1f} MiB, growth {m['growth_mib']:+.1f} MiB "
            "from 10k to 1M lines; `run` 33.3 MiB without rich, as in the image (section 7)",
            max(x["maxrss_mib"] for x in m["sizes"]) <= 35 and abs(m["growth_mib"]) < 2)
    rs = p.get("restart", {}).get("watchers", {}).get("kube-event-exporter (ours)")
    if rs:
        rate = p["restart"].get("rate", 100.0)
        row("7. duplicates after SIGKILL at 100/s <= 1 s of Events (section 5)", b["repeats"],
            f"{rs['duplicated']} duplicated (~{rs['duplicated'] / rate:.2f} s of Events), {rs['lost']} lost",
            rs["duplicated"] <= rate)
    if p:
        row("8. the peers in `python -m bench` (section 5)", "-",
            ", ".join(n for n, _ in ordered(p.get("peers", {}))), True)
    if not rows:
        return ""
    return ("Each goal of issue 16, before and after, from the sections below (before: the same run where "
            "the benchmark runs the old commit beside the checkout, else the issue's own figures).\n\n"
            + table(["goal", "before", "after", ""], rows))


def _machine_text(results: dict) -> str:
    ms = {json.dumps(v["machine"], sort_keys=True) for v in results.values() if "machine" in v}
    seen = []
    for key, _, _ in SECTIONS:
        if key in results:
            m = results[key]["machine"]
            sig = (m["nproc"], m["cpu_model"], m["mem_gib"])
            if sig not in [s for s, _ in seen]:
                seen.append((sig, m))
    lines = []
    for (nproc, model, mem), m in seen:
        lines.append(f"- {nproc} CPUs ({model}), {mem} GiB RAM, Linux {m['kernel']}, Python {m['python']}")
    lines.append("- Shared machine (other engineers run test suites on the same 2 cores): the 1-minute load "
                 "average when each benchmark started is below; absolute times drift, ratios measured side by "
                 "side hold better.")
    for key, title, _ in SECTIONS:
        if key in results:
            m = results[key]["machine"]
            load = results[key].get("load_at_start")
            load_text = f"load average {load:.2f}" if load is not None else \
                f"load average {m['loadavg']:.2f} (at the start of the whole run)"
            cmd = results[key].get("command")
            src = f"commit {m['commit']}"
            if m.get("source") == "commit":
                src += " (git archive of the commit)"
            elif m.get("uncommitted"):
                src += f" + uncommitted changes in {', '.join(m['uncommitted'])}"
            lines.append(f"  - {title.split('. ', 1)[1]}: measured {results[key]['measured']}, "
                         f"{src}, {load_text}, took {results[key].get('seconds', 0):.0f} s"
                         + (f", `{cmd}`" if cmd else ""))
    del ms
    return "\n".join(lines)


METHOD = """\
All figures are for whole processes, measured by the kernel: CPU seconds are
user+system and peak RSS of the command as `/usr/bin/time -f '%U %S %M'` reports
them (the harness runs each measured command under `/usr/bin/time -o FILE`: Python's
subprocess starts children with vfork, and Linux then folds the harness's own
high-water RSS into the child's `ru_maxrss`, so the harness cannot use its own
`wait4` figure), or `/proc/PID/stat` utime+stime deltas for long-running processes;
memory is also VmRSS sampled from `/proc/PID/status` every 0.2 s. Every component is real and on loopback
(tests/components: etcd + kube-apiserver, a KRaft Kafka broker, otelcol-kee).

1. **Replay to stdout.** `python -m exporter replay FILE > /dev/null` beside
   `python bench/floor.py FILE > /dev/null` on the same
   `gen_stream.py -n 100000` stream (cached in `~/.cache/kube-event-exporter/bench/streams`,
   keyed by the generator's hash); one untimed warm-up each, then `--runs` pairs
   (5 by default; the table says how many), alternating which goes first. The figure is the
   median of the per-pair CPU ratios (exporter / floor), target 2.0 or less; the ratio of the
   medians and of the minima (the least disturbed run of each) are printed beside it, since on
   this shared machine single runs of the same command vary by up to ~1.6x. Both run with the
   project's venv Python.
2. **Replay to Kafka / OTLP.** The same stream replayed with one sink enabled
   (`--set sinks.stdout.enabled=false --set sinks.kafka.enabled=true --set sinks.kafka.brokers=...
   --set sinks.kafka.topic=<fresh topic>`; `--set sinks.otlp.enabled=true --set sinks.otlp.endpoint=...
   --set sinks.otlp.protocol=grpc|http/protobuf`), defaults otherwise (Kafka: zstd, acks=all, idempotent).
   The replay exits after its sinks confirmed every record, so wall time covers delivery.
   `elasticsearch` (only with `--sinks ...,elasticsearch`): `--set sinks.elasticsearch.enabled=true
   --set sinks.elasticsearch.url=... --set sinks.elasticsearch.index=<fresh index>` into the test bench's
   OpenSearch 2.19.6 (512 MiB heap, SerialGC, C1 only), defaults otherwise (gzip, 1000 per _bulk).
   Delivery is checked after each run (topic high watermark; log records in the Collector's file;
   documents in the index). Two Collectors receive OTLP: `otlp-grpc`/`otlp-http` end in the file
   exporter (content verified end to end; its JSON writer costs the Collector about as much CPU per record
   as the sink, on the same cores), `otlp-grpc-debug`/`otlp-http-debug` in the debug exporter (basic: a
   line per request), delivery counted by the Collector's `otelcol_receiver_accepted_log_records`: the
   sink's figure. Either way a record is confirmed only when the Collector answered its request.
   Runs alternate the order of the sinks. "Receiver CPU" is the broker's / Collector's CPU over the run.
3. **Latency.** `python -m exporter run --kubeconfig K --namespace NS --listen 127.0.0.1:0` against
   etcd + kube-apiserver (no controller-manager, scheduler or KWOK: nothing else writes Events).
   core/v1 Events are POSTed over one kept-alive HTTPS connection at a fixed rate (open loop); the
   exporter's stdout is a pipe read line by line by the benchmark, which timestamps each record.
   The exporter watches events.k8s.io/v1 (its default). A second exporter then runs with stdout,
   Kafka (`--set sinks.kafka.*`, a fresh topic on a local broker) and OTLP gRPC (a local Collector
   whose file exporter flushes every 10 ms) enabled together; a Kafka consumer (fetch.wait.max.ms=5)
   and a poller of the Collector's output file (every 5 ms) timestamp each record's arrival.
4. **Memory.** `replay` of 10k, 100k and 1M-line streams (1M lines is ~1.2 GB) to /dev/null, VmRSS
   sampled every 0.2 s plus ru_maxrss. Flat means the peak does not grow with the stream.
5. **Peers** (bench/peers.py). One namespace, watched at the same time by our exporter
   (`run`, stdout to a file, file checkpoint), by otelcol-kee with only the contrib `k8s_events`
   receiver (file exporter, JSON; built by `scripts/testbin`), and by the peers whose binaries are
   given on the command line: `--peer resmoio=PATH` (resmoio/kubernetes-event-exporter, upstream
   907ce91: `-conf` with `namespace`, `omitLookup: true`, `maxEventAgeSeconds: 60`, one `stdout`
   receiver), `--peer kube-eventer=PATH` (AliyunContainerService/kube-eventer, 0974bca:
   `--source=kubernetes:?inClusterConfig=false&localKubeConfig=K --sink=log --frequency=5s`, the
   shortest batch interval it accepts; it has no namespace option and watches every namespace, where
   only the benchmark writes Events), `--peer eventrouter=PATH` (heptiolabs/eventrouter, eec9229:
   `config.json` with `kubeconfig` and `sink: stdout`; every namespace too). The binaries are built
   outside this repository from their own; the benchmark only takes their paths, and a peer without
   one is skipped (the section says so). Each watcher's output is polled every 10 ms for the Events'
   uids (JSON; kube-eventer's klog lines by the first uid of each line), which gives when each Event
   was first written (latency from the POST's response, +-10 ms) and how many times. After every
   watcher wrote a warm-up Event, 5 s idle are measured; then, for each rate of `--peer-rates`
   (`max` = the rate a closed-loop probe over 8 connections reaches with every watcher
   running), `--peer-rounds` rounds of `--peer-events` Events are POSTed open-loop over
   `--peer-conns` connections; a round ends when every watcher has written every Event (or 30 s).
   Last, the restart test: Events at 100/s for 15 s, every watcher SIGKILLed after 5 s and restarted
   5 s later (ours resumes from its checkpoint file; the others as they do). A watcher that fails to
   start, or dies, is reported in the section and left out of the rest; the others go on.
6. **Enrichment** (bench/enrich.py). etcd + kube-apiserver; Deployments, one ReplicaSet each and
   their Pods (labels, ownerReferences, nodeName on fake nodes) created through the API, as the
   controllers would. Two exporters watch the namespace at once, one with `enrich.enabled=true`
   (defaults), one without; Events about the Pods are POSTed at a fixed rate, the Pod picked
   Zipf-like; CPU from /proc/PID/stat deltas over the load, RSS sampled every 0.5 s, API requests
   from the enriched exporter's `kee_enrich_api_requests_total` and, per client, from the
   apiserver's audit log of reads (by User-Agent). With `--enrich-resmoio PATH` the load is run a
   second time with resmoio's exporter (its own lookups on) beside ours. Part E lists and watches
   Pods (whole and metadata-only) and ReplicaSets (metadata-only) the way a watch-backed cache
   would (`bench/probes/enrich_watch.py`) under Pod/ReplicaSet status churn. Then one enriched
   exporter with the rate limit lifted gets Events about N distinct Pods (the real ones, then
   deleted names).
8. **Watch path at full speed** (bench/watch.py, issue 16 goal 2). No apiserver: a local TLS
   server (Python http.server + ssl, its own process, a throwaway certificate made with the openssl
   CLI) answers the exporter's preflight LIST (empty) and streams the `gen_stream.py` stream
   (`--lines`) as a watch response: `Transfer-Encoding: chunked`, one line per chunk as the
   apiserver sends them (`--watch-group N` for N), the streaming initial state first (its
   initial-events-end BOOKMARK), the body pre-framed in memory and written as fast as TLS takes it.
   The measured process is the real `python -m exporter run --kubeconfig K --namespace bench
   --listen '' --checkpoint-file F > /dev/null`; its CPU is the /proc/PID/stat delta from just
   before the first byte of the stream to the moment it opens the next watch from the stream's last
   resourceVersion (it has handled every line), so start-up is outside. The floor is `floor.py` on
   the same file, minus its start-up (the same command on an empty file). An untimed warm-up run
   writes stdout to a file and counts the records; then `--runs` alternating pairs. Events = the
   stream's envelopes other than BOOKMARK; Events/s = Events / that wall time. Then `--watch-rates`
   (100 and 500/s by default): the server sends one chunk every 1/rate s instead (a live cluster's
   pace, where each Event arrives alone), two rounds per exporter, alternating, each after 10 s idle
   on an open watch: idle CPU, then CPU per Event over the paced stream (`--watch-paced-seconds`).
   `--watch-before REV` runs that commit's exporter in every round too.
"""

RERUN = """\
```sh
scripts/testbin all                                   # the real components, once (cached)
~/.cache/kube-event-exporter/venv/bin/python -m bench # everything: prints the tables, rewrites this file
~/.cache/kube-event-exporter/venv/bin/python -m bench --only replay            # one benchmark
~/.cache/kube-event-exporter/venv/bin/python -m bench --only latency,peers --no-docs  # print only
~/.cache/kube-event-exporter/venv/bin/python -m bench --help                   # sizes, runs, rates
```
Benchmarks: `replay` (`--replay-before REV`), `sinks` (`--sinks`, `--sinks-before REV`; the OTLP rows
`otlp-grpc-debug`/`otlp-http-debug` measure the sink against a Collector that only counts, `elasticsearch`
needs asking for), `latency`, `memory`, `peers`, `watch` (`--watch-group`, `--watch-before REV`); a
`--...-before REV` runs that commit's exporter in the same rounds (issue 16's before/after). Probes:
`python -m bench.probes.replay_stages [--callgrind]` (where replay's CPU goes, by stage or in instructions);
`enrich` (`--enrich-pods`, `--enrich-deployments`,
`--enrich-seconds`, `--enrich-distinct`, `--enrich-distinct-rate`, `--enrich-watch-seconds`, `--enrich-resmoio PATH`;
also alone: `python -m bench.enrich --help`). Sizes: `--lines`, `--runs`,
`--sink-runs`, `--memory-sizes 10000,100000,1000000`, `--rates 10,100`, `--latency-seconds`,
`--peer-events`, `--peer-rates 100,500,max`, `--peer-rounds`, `--peer NAME=PATH` (resmoio, kube-eventer,
eventrouter: the peers' binaries, built outside this repository; without them the peers benchmark
runs ours and the Collector only). A subset run keeps the other sections of this file
(their raw results are in the comment at its end). Streams are cached in
`~/.cache/kube-event-exporter/bench/streams` (delete them to free ~1.4 GB). The whole suite takes
about 5-6 minutes. The smoke test `tests/unit/test_bench_smoke.py` runs the replay measure on a
200-line stream so the harness cannot rot; the benchmarks themselves are not in the test suite.
"""


def document(results: dict, errors: dict) -> str:
    parts = ["# Benchmarks", "",
             "How fast kube-event-exporter is, how much memory it holds, and how it compares with the peers "
             "(issue 7). Generated by `python -m bench` (bench/); do not edit by hand: rerun it.", "",
             "## Summary", "", headline(results), "",
             *(["## Issue 16: the performance goals, before and after", "", issue16(results), ""]
               if issue16(results) else []),
             "## Machine", "", _machine_text(results), "",
             "## How to rerun", "", RERUN,
             "## Method", "", METHOD]
    for key, title, fn in SECTIONS:
        parts += [f"## {title}", ""]
        if key in results:
            parts += [fn(results[key]), ""]
        else:
            parts += [f"Not measured{': ' + errors[key] if key in errors else ''}.", ""]
    parts += [ISSUE16.strip(), ""]
    notes = NOTES.strip()
    if notes:
        parts += ["## Notes", "", notes, ""]
    parts += [f"<!-- {MARK}", json.dumps(results, indent=None, default=str), "-->", ""]
    return "\n".join(parts)


#: Issue 16, goals 6-7: figures from bench/probes (not `python -m bench`), kept here so a rerun keeps them.
ISSUE16 = """\
## 7. Start-up memory and repeats after a crash (issue 16, goals 6 and 7)

Measured 2026-12-02 01:50-02:10 UTC on the machine above (2 CPUs, shared: load average 8-12
throughout), branch `perf` against `a71709b` (before), each side run alternately in one run by
the probes named below. "venv" is the development virtualenv, which holds `rich` (import-linter
needs it; structlog imports it when present, +4.4 MiB); "no rich" makes it unimportable, as in the
container image, which does not install it.

**Goal 6, memory.** The sinks' libraries were already imported only when their sink is enabled
(exporter/app.py); the live `run` still loaded all of `kubernetes` (its __init__ imports dynamic,
watch, stream, informer, leaderelection, pydantic, websocket) and, through kubernetes.config,
requests and oauthlib for OIDC. exporter/kube/client.py now imports only
kubernetes.client.configuration, kubernetes.client.rest and kubernetes.config; the rest loads
on first use (tests/unit/test_start_imports.py).

| stdout-only exporter, max RSS MiB | before venv | after venv | before no rich | after no rich |
|---|---|---|---|---|
| `run` at ~100 Events/s, 3 rounds | 53.1/53.2/53.1 | 38.0/38.0/37.9 | 49.2/49.2/49.2 | **33.3/33.3/33.3** |
| `replay` 100,000 lines, 2 rounds | 34.3/34.5 | 34.6/34.5 | 30.3/30.2 | **30.2/30.4** |

- `run`: `python -m bench.probes.crash_repeats --before a71709b --rounds 3 --without-rich`
  (VmRSS just before the SIGKILL). `replay`: `/usr/bin/time -f %M python -m exporter replay s.jsonl
  >/dev/null` on `python bench/gen_stream.py -n 100000` (115 MiB), with and without rich.
- Goal <= 35 MiB: met without rich (33.3 `run`, 30.3 `replay`; the image itself was not
  measured, rich made unimportable stands for it); in the dev venv `run` is 38.0 (rich).
  Where the 31 MiB of a stdout-only `run` go before the first Event (ru_maxrss after
  each import, no rich): interpreter 10.6, ssl +5.1, msgspec+orjson +3.9, yaml +0.9, structlog
  +4.4, urllib3 +4.0, exporter modules +1.6, kubernetes config/rest +0.6, stdout sink +0.1;
  the rest (to 33.3) comes at run time and was not broken down.
- Flat from 10k to 1M lines (max RSS MiB at 10k / 100k / 1M): stdout 34.0 / 34.6 / 34.5
  (`python -m bench --only memory`, venv, +0.6 MiB); Kafka 76.3 / 78.3 / 55.6 and OTLP gRPC
  54.0 / 55.4 / 57.7 (`python -m bench.probes.sink_memory`, local broker and Collector): bounded
  by the sinks' queues, no growth with the stream.

**Goal 7, repeats after a crash.** The file checkpoint is saved within
`checkpoint.file_interval_seconds` (0.2 s) of the acknowledged position moving (never past an
unacknowledged record: it saves what `Pipeline.commit()` returns); the ConfigMap store keeps
`checkpoint.interval_seconds` (5 s: each save is an apiserver write).

| SIGKILL at a random instant of a 5 s window, ~100 Events/s | before (5 s) | after (0.2 s) |
|---|---|---|
| duplicated, venv (of 1205 / 1154 / 873 vs 904 / 945 / 1047 Events) | 382 / 343 / 135 | **20 / 21 / 12** |
| duplicated, no rich (of 1060 / 1213 / 809 vs 1072 / 1101 / 1125) | 201 / 338 / 803 | **25 / 5 / 7** |
| lost | 0 in every round | 0 in every round |

- `python -m bench.probes.crash_repeats --before a71709b --rounds 3 --without-rich`: Events
  POSTed at 100/s (the loaded machine achieved ~95/s), the exporter killed 8-13 s into the load,
  restarted from its checkpoint until every Event is out; duplicates = (uid, resourceVersion)
  emitted twice. After: at most 25 = ~0.25 s of Events (goal <= 1 s: met); before: 1.4-4 s, and
  803 when the kill came before the old first save (5 s after start), so the restart listed all.
- The live test (`tests/integration/test_exporter_live.py::test_sigkill_at_several_points...`,
  25 Events/s) now bounds each kill's repeat window at 25 records (1 s); it measured 2 / 1 / 0 / 2
  (5 duplicates in all) where its old bound was 60.
- Cost of a save (`python -m bench.probes.checkpoint_fsync`, ext4 on virtio, 200 saves): wall
  p50 4.2 ms, p99 64-130 ms (a shared disk), CPU 0.51-0.53 ms per save (another run, by step:
  encode 0.07, write 0.07, fsync 0.12, rename 0.08, directory fsync 0.06). At the 5 saves/s bound that is 2.6 ms
  of CPU per second: ~26 us/Event at 100 Events/s, ~5 us/Event at 500/s; no save while nothing
  moves. In situ (`python -m bench.probes.checkpoint_cpu --before a71709b`, both exporters on
  the same Events at 100/s, CPU from /proc in 10 ms ticks): 245 vs 245 us/Event over 2000 Events
  and 242.5 vs 250.0 over 4000 (`--seconds 40 --idle 40`), i.e. 0-8 us/Event; idle 0.0 vs 0.5 and
  0.25 vs 0.25 ms/s (the 0.2 s tick calls `commit()`, a min over the sinks, and saves nothing).
"""


#: Observations written by whoever last ran and read the figures (kept in code so a rerun keeps them).
#: Figures quoted here are dated; the tables above are regenerated by every run.
NOTES = """\
- **Elasticsearch (section 2).** The exporter's CPU per record is about Kafka's; the wall time is
  the test-bench OpenSearch indexing every document (its CPU is the receiver column: ~250 us per
  document, one `_bulk` in flight). docs/elasticsearch.md.
- **Replay memory: found by benchmark 4, fixed in 0058366.** Before that commit `replay` held about
  160 bytes per record (max RSS 27 / 41 / 184 MiB at 10k / 100k / 1M lines): it never called
  `Pipeline.commit()`, so the stream's `acks.Ledger` kept one `(seq, resourceVersion)` entry per
  record for the whole run (the live `run` calls `commit()` every `checkpoint.interval_seconds`, so
  it was never affected). `bench/probes/replay_commit.py` showed it: with `commit()` on every tick,
  25.9 / 26.0 MiB at 10k / 1M lines, and the 1M replay's CPU fell from 17.5 s to 13.5 s (sys 3.4 s
  -> 1.0 s: fewer page faults). 0058366 makes replay commit as it goes; section 4 is measured after it.
- **The replay ratio moves with the machine's load.** Six measurements on 2026-11-29 (5 or 9 pairs
  each, commits 7e1fe55..0a57d03, load averages 0.5-11) gave median pair ratios of 2.27, 1.98, 1.86,
  1.85, 1.60 and 1.41 (median 1.85); an A/B of two commits with the same replay path, 7 alternating
  runs each, differed by 10 % in median CPU with the faster one changing between attempts. Treat a
  single run's ratio as +-0.3; compare changes with `--runs 9` or more, side by side, at low load.
- **Where replay's CPU goes, and why goal 5 (<= 1.0x floor.py) is not met** (2026-12-02,
  `python -m bench.probes.replay_stages --callgrind --lines 5000`: instructions counted by
  valgrind, exact whatever the machine's load). floor.py: start-up 154 M instructions, 47.7 k per
  line (orjson's parse building every dict and string of the line ~25 k, its dumps of the
  metadata, dict inserts and frees). The exporter: start-up 452 M, 61.3 k per line: the Python
  interpreter loop itself 13.3 k (the record built in `records.record`, `Pipeline.handle`,
  the sink's buffer, the ledger), msgspec's typed decode ~12 k (field matching 4.8 k, string
  building 3.9 k, skipping managedFields and the rest 2.7 k), msgspec's encode of a 1 KB record
  ~5.4 k, allocation and copies ~6 k. The line read went straight into the reader's buffer
  (`os.readv`, -1.1 k per line). So even with no Python at all between the library calls
  (13.3 k fewer) a line would cost ~48 k, the floor's own 47.7 k, and the start-up is 300 M
  instructions more (structlog imports asyncio: ~25 % of it; the settings' 17 dataclasses
  generate and compile their methods at import: ~25 %; the sinks', pipeline's and wire's imports
  the rest), i.e. ~5,000 lines' worth. Seconds, side by side (`python -m bench.probes.replay_stages`,
  in one process, alternating rounds): decode_line 3.6, record() 2.2, encode 1.6, the pipeline and
  the stdout sink around them ~1-2 us per line, against orjson.loads + dumps at 4.9. Reaching 1.0x
  needs the per-line work out of the interpreter (a native decode -> record -> encode, with the
  Python path kept for every odd line), which this project has not taken on.
- **Kafka and OTLP against issue 16's goals 3 and 4 (50,000 and 40,000 records/s): not met.**
  Both sinks now take the record as its struct (`Sink.reads_struct`): with no filter or enrichment
  the pipeline builds no record dict for them. Kafka: a group of 64 records is counted in flight
  once, when sealed, not per record; the ordered acknowledgement keeps a deque, not a heap; a group
  keeps only seqs and values (topic, key, headers derived again from the value on the rare failure
  path). OTLP: the encoder reads the struct (one `assemble()` for both shapes, byte-identical by
  test), and `batch_max_records` 512 -> 2048 (the Collector's CPU per record -25%). Side by side
  (`python -m bench --only sinks --sinks kafka --sink-runs 5 --sinks-before REV`, 2026-12-02 16:05
  UTC, load ~1.1): Kafka 30.3 vs 32.1 us CPU/record against 3a9dd5f (28.8k vs 27.3k records/s) and
  28.9 vs 33.9 against a0c39a4 (32.2k vs 28.7k records/s); in section 2's 3-run table the same
  comparison with a0c39a4 came out even (27.9 vs 28.1): a 6-15 % gain, within this machine's noise
  on 3 runs. OTLP: 28-33 us vs 53-57 us per record against a0c39a4 in section 2 (about half).
  Where the rest is (perf per thread, replay to a warm broker / a Collector ending in the debug
  exporter, load ~1): the source thread, which bounds the rate, spends ~26 us per Kafka record and
  ~23 us per OTLP record, of which ~60 % is what stdout also pays (decode ~3.6-5.8, record ~2.2-3.6,
  JSON line ~1.6-2.2 us: it bounds the record's size for every sink); Kafka adds ~4 us of sink
  Python, ~2.7 us of copies (librdkafka copies each value, confluent-kafka again into each delivery
  report object) and ~1.4 us in the client library; OTLP adds ~6.7 us of protobuf encoding and
  ~2.6 us of batching and admission. On the other core: librdkafka's thread ~5.5 us (zstd, produce
  requests) and the Java broker ~4.6 us per record; the Collector ~10-14 us per record decoding the
  requests (debug exporter) plus 12-17 us writing them (file exporter). 50k/s needs the source
  thread under 20 us per record with the other core under ~20 us: not on these 2 shared cores with
  the broker or the Collector beside. Success delivery reports stay on (librdkafka's
  `delivery.report.only.error` would confirm only when its whole queue is empty: the checkpoint
  would move in bursts of `max_in_flight_records`); zstd stays the default (lz4: no difference
  above noise). docs/kafka.md and docs/otlp.md have the details.
- **The OTLP rows.** `otlp-grpc` / `otlp-http`: the Collector writes every record to its file
  exporter and the bench counts them there (content verified end to end); its file writing costs
  more CPU per record than the exporter's whole pipeline, on the same 2 cores. `otlp-grpc-debug` /
  `otlp-http-debug`: the Collector's pipeline ends in the debug exporter (one line per request) and
  delivery is counted by its own `otelcol_receiver_accepted_log_records`: the sink's figure, which
  issue 16's goal 4 is judged on. Both confirm a record only after the Collector answered.
- **Live path at low rates (issue 16 goal 1, 2026-12-02, branch `livepath`).** On this machine a
  thread that sleeps and wakes costs ~150 us of CPU per wake-up before it does anything (a probe:
  the same 5 orjson loads+dumps cost 35-45 us back to back, 167-204 us with a 10 ms sleep between),
  so at 100 Events/s, one Event per TLS record and per wake-up, the wake-ups were most of the
  ~500 us per Event (section 8, paced). What changed: (1) the watch body is de-chunked by the
  exporter (`kube/client.py`), one read per TLS record instead of urllib3's chunk-size readline, data
  read and CRLF read per chunk; (2) a read takes every record already in the socket (a poll that
  never waits), so one batch, one stdout write, per wake-up; (3) `kubernetes.read_linger_seconds`
  (50 ms): while Events flow, after the socket is drained, wait that long before reading again, so
  one wake-up takes ~5 Events at 100/s (a lone Event is read at once; full speed never waits); at
  most 50 ms more latency; (4) the checkpointer is event-driven (woken by the sources, a fatal sink,
  a lost lease, a signal; no timer while idle) and the metrics server's accept loop no longer polls
  twice a second: idle CPU 1.0 -> 0.0 ms/s in 10 ms ticks; (5) the file checkpoint fsyncs its
  directory once, not per save (~0.2 ms of CPU and half the wall time of a save); (6) `gc.freeze()`
  after start-up. Where the rest goes at 100/s (perf, paced, file checkpoint): the watch thread's
  ~20 wake-ups/s and per-Event Python work in cold caches (~150 us/Event), the checkpoint's 5
  saves/s (~0.6 ms of CPU each: create, write, fsync, rename on ext4; ~40 us/Event at 100/s,
  `checkpoint.file_interval_seconds` trades it against repeats after a crash); syscalls per Event:
  2 reads (OpenSSL reads a record's header, then its body; Python's ssl cannot set read-ahead),
  1 poll(0); per batch 1 write, 1 sleep.
  On the real apiserver, both exporters watching the same namespace at once (`python -m
  bench.probes.live_cpu --before 9719d64 --rates 100,500,max --seconds 20 --idle 20`, metrics server
  on, stdout a pipe read by the probe; load average 6-12 on the 2 shared cores, so the single poster
  reached only ~120/s when asked for 500/s or flat out):

  | set-up, rate asked (achieved) | 9719d64 CPU us/Event | livepath | ratio | p50 / p99 ms, 9719d64 | livepath |
  |---|---|---|---|---|---|
  | file checkpoint, idle (20 s) | 1.0 ms/s | 0.0 ms/s | | | |
  | file checkpoint, 100/s (99) | 575 | **205** | 0.36 | 0.4 / 22 | 27 / 71 |
  | file checkpoint, 500/s (122) | 502 | **166** | 0.33 | 0.6 / 21 | 28 / 64 |
  | file checkpoint, flat out (120) | 362 | **154** | 0.43 | 2.1 / 56 | 27 / 85 |
  | no checkpoint (as `peers` runs ours), 100/s (96) | 475 | **145** | 0.31 | 0.5 / 16 | 27 / 60 |

  Goal 1 (<= 190 us/Event at 100/s, 0.5x the best peer of the issue's table): met in the peers'
  set-up (145) and at 500/s; with the file checkpoint at 100/s, 205 (its 5 saves/s are ~40 us of
  it). The p50 of ~27 ms is the read linger (half of 50 ms); p99 stays under 0.1 s.
- **Latency.** Since `kubernetes.read_linger_seconds` (50 ms, livepath) a record waits up to 50 ms
  while Events flow (p50 ~27 ms, p99 ~70 ms at 100/s in section 3; set it to 0 for the old
  behaviour, at about twice the CPU per Event at 100/s). Before that the record was usually on
  stdout within a millisecond of the POST's response: the
  apiserver sends the watch event as it answers the POST, so creation-to-record is bounded by the
  POST's own duration (the `from POST start` columns). Negative values (record before the response
  was read) are kept in the percentiles. Kafka's ~20-25 ms p50 is mostly `sinks.kafka.linger_ms`
  (20 ms by default: a batch waits to fill) plus acks=all; OTLP's figure includes the Collector's
  own pipeline and its file exporter's 10 ms flush interval. The p99 at 10/s rests on 200 samples
  (the 2nd worst), so one scheduling hiccup on this shared machine moves it.
- **Sinks.** Records/s is wall-clock and the machine is shared (load averages under Machine), so it
  is a floor, not a ceiling; exporter CPU per record is the steadier figure. Kafka: zstd + acks=all +
  idempotence. In section 2's run the debug-exporter rows came out slower than the file-exporter
  ones (28.7k vs 33.0k records/s over gRPC, exporter CPU 33.1 vs 28.2 us per record), where the
  OTLP branch's paired runs (one Collector each, alternating main and branch) had measured 36.3k
  (gRPC) and 29.4k (HTTP) to the debug Collector; not explained: the 3 runs per row are few on this
  machine.
- **Enrichment (section 6), measured 2026-12-02 05:17-05:40 UTC at load average 12-17 on the 2
  shared cores**, at the issue's size: 10,000 Pods under 200 Deployments, 100 Events/s Zipf-like.
  Part A (alone, second run): CPU per Event 342 -> 655 us (1.9x), RSS 39.3 -> 42.5 MiB, 1,323
  requests in the minute (1,292/min: 930 Pods, 197 ReplicaSets, 196 Deployments by the audit log),
  capped by the 20/s token bucket with the cache cold (1,158 of 6,000 records `rate_limited`; the
  earlier 2,000-Pod runs: 257 -> 505 us, ~976/min). The cost is the lookups, not the record path:
  a record whose object and owners are cached costs ~8 us more, one GET through the kube client
  ~0.8 ms of exporter CPU (probe: 1000 sequential GETs of one Pod, connection reused; mostly urllib3
  and TLS), so the 1,323 GETs are ~1.1 s of the 1.9 s extra CPU. Requests per minute follow the
  distinct objects with Events per `enrich.ttl_seconds` (300 s), not the Event rate: a warm cache
  over a stable set of Pods costs a few requests a minute. The first run (resmoio's exporter beside
  ours) slowed the apiserver to 34 POSTs/s; ours still wrote all 6,000 records (747 partial:
  `degraded`/`timeout` - the 0.5 s wait bound at work) at 380 -> 942 us per Event.
- **Metadata-only vs whole Pods.** PartialObjectMetadata still carries `managedFields`, so a Pod's
  metadata is 2.0 KB against 3.1 KB whole (ReplicaSet 1.1 vs 1.6 KB): reading Pods whole for
  `spec.nodeName` (one request either way) costs ~50 % more bytes per Pod lookup; owners
  (ReplicaSets, Deployments, Jobs...) are read as metadata. The apiserver CPU per GET in part C
  (1.6-3.6 ms at load average 12-16) is too noisy on this machine to rank the two.
- **Watches vs GETs, per kind (part E; decision in docs/design.md): GETs for every kind.** At 10k
  Pods a Pod watch needs whole objects (nodeName): a LIST of 29.7 MiB costing the apiserver 1.4 s
  and the client 1.2 s of CPU at every start and 410, 28.7 MiB held (~2.9 KiB a Pod, ~290 MiB at
  100k Pods: over the 128 MiB bound, and a watch-backed store cannot evict), and one 3.6 KB event
  (~320 us of client CPU) per Pod change whether or not the Pod has Events. GETs cost ~0.8 ms of
  exporter CPU and ~3 KB each but only one per distinct Pod with an Event per TTL, in a bounded
  cache. Per unit the watch event is cheaper, so on CPU alone the two break even when Pods change
  ~2.5x as often as they are looked up; memory and relists decide for GETs. Owners: 200 ReplicaSets
  as a metadata watch are cheap to list (0.2 MiB) but every status update is an event (1.4 KB,
  ~350 us), and an owner's status changes with each of its Pods' readiness, while GETs read each
  owner once per TTL (200 ReplicaSets + 200 Deployments per 5 min here).
- **Memory bound.** The cache is bounded by entries (50,000) and approximate bytes (32 MiB, counted
  high). Part D churns 100k distinct Pods through it: 17.7k kept, VmRSS +33.6 MiB (allocator slack
  after 82k evictions). Part B (20k distinct objects through the real apiserver at 10k Pods, 10k of
  them 404s, rate limit lifted) took the exporter from 39.8 to 65.9 MiB with the cache at 20.4k
  entries / 23 MiB, below its byte bound; at the bound (32 MiB) that is ~76 MiB, under the
  documented 128 MiB. 100k distinct objects were not pushed through the live apiserver in this run
  (~117 Events/s reachable here: 15 min); part D is the 100k figure.
- **resmoio's kubernetes-event-exporter** (built from its source outside the repo; the binary's path
  is given with `--enrich-resmoio`) with `omitLookup: false`, `kubeQPS: 100`, `kubeBurst: 500` (its
  README's advice against throttling) and a stdout `layout` with the labels and ownerReferences.
  Each lookup miss makes ~24 discovery requests before its GET (a fresh REST mapper from the full
  discovery per miss: 15,168 discovery GETs for 632 object GETs in the run), so its client-side
  limiter, not the apiserver, caps it at ~4 lookups/s: at 100 Events/s over 10k Pods it fell behind,
  dropped 4,247 of 6,000 Events as older than `maxEventAgeSeconds` (60) and slowed the shared
  apiserver enough that the POSTs reached only 34/s (hence part A is measured again without it).
  Its CPU per Event is per Event POSTed (6,000); per record it wrote, ~9.9 ms. Its cache is an ARC
  of 1024 entries keyed by uid/resourceVersion of the Event's reference, no TTL.
"""
