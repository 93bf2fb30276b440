"""The fault-injection suite's summary table (scenario, events, lost, duplicated, recovery)."""
from __future__ import annotations

ROWS: list[dict] = []


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    cols = ["scenario", "events", "lost", "duplicated", "recovery_s"]
    w = {c: max(len(c), *(len(str(r[c])) for r in ROWS)) for c in cols}
    terminalreporter.write_sep("=", "fault injection: every sink (stdout, Kafka, OTLP)")
    terminalreporter.write_line("  ".join(c.ljust(w[c]) for c in cols))
    for r in ROWS:
        terminalreporter.write_line("  ".join(str(r[c]).ljust(w[c]) for c in cols))
