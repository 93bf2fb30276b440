"""The exporter's own log lines (exporter/log.py): bound context, tracebacks, caching, secrets masked.

Each case runs in a fresh interpreter: structlog's configuration is process-wide, and a
cached logger would leak into other tests' log capture.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run(code: str) -> list[dict]:
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    return [json.loads(x) for x in p.stderr.splitlines()]


def test_bound_logger_carries_its_context_and_more_can_be_bound():
    lines = run("""
        from exporter import log
        log.configure("info", "json", cache=True)
        lg = log.get(stream="all|*", sink="kafka")
        lg.info("first", n=1)
        lg.bind(attempt=2).warning("second")
        lg.info("third")
    """)
    assert [(x["event"], x["stream"], x["sink"]) for x in lines] == [("first", "all|*", "kafka"),
                                                                      ("second", "all|*", "kafka"),
                                                                      ("third", "all|*", "kafka")]
    assert lines[1]["attempt"] == 2 and "attempt" not in lines[2]


def test_exception_logs_the_traceback():
    (line,) = run("""
        from exporter import log
        def inner():
            raise ValueError("bad thing")
        try:
            inner()
        except ValueError:
            log.get(lease="ns/x").exception("crashed", step="renew")
    """)
    assert line["level"] == "error" and line["lease"] == "ns/x" and line["step"] == "renew"
    assert line["exception"].startswith("Traceback (most recent call last)")
    assert "in inner" in line["exception"] and "ValueError: bad thing" in line["exception"]


def test_module_functions_keep_their_signature_and_levels_filter():
    lines = run("""
        from exporter import log
        log.configure("WARNING", "json", cache=True)
        log.debug("d", k=1); log.info("i", k=1); log.warning("w", k=1); log.error("e", k=1)
    """)
    assert [(x["event"], x["level"], x["k"]) for x in lines] == [("w", "warning", 1), ("e", "error", 1)]


def test_caching_is_on_once_configured_by_the_cli():
    (line,) = run("""
        import structlog
        from exporter import log
        before = structlog.get_config()["cache_logger_on_first_use"]
        log.configure("info", "json", cache=True)
        log.info("cfg", before=before, after=structlog.get_config()["cache_logger_on_first_use"])
    """)
    assert line["before"] is False and line["after"] is True


def test_every_log_line_masks_url_credentials_and_registered_secrets():
    (line,) = run("""
        from exporter import config, log
        config.load(None, {}, [("sinks.otlp.enabled", True),
                               ("sinks.otlp.headers", {"x-honeycomb-team": "hc-SECRET-1"}),
                               ("sinks.otlp.endpoint", "http://kee:pw-SECRET-2@collector:4318")])
        log.get(sink="otlp").warning("export_failed_retrying",
                                     error="POST http://kee:pw-SECRET-2@collector:4318/v1/logs: 401 for hc-SECRET-1",
                                     headers={"x-honeycomb-team": "hc-SECRET-1"}, attempts=[1, "hc-SECRET-1"])
    """)
    text = json.dumps(line)
    assert "SECRET" not in text
    assert line["error"] == "POST http://***@collector:4318/v1/logs: 401 for ***"
    assert line["headers"] == {"x-honeycomb-team": "***"} and line["attempts"] == [1, "***"]


def test_runner_and_leader_bind_their_context_instead_of_repeating_it():
    """The modules migrated to bound loggers: no call repeats stream=/lease= by hand."""
    import re
    for name in ("runner.py", "leader.py", "app.py", "cli.py"):
        src = (ROOT / "exporter" / name).read_text()
        assert not re.search(r"log\.(info|warning|error|debug)\([^)]*\b(lease|stream)=", src), name
    assert "log.get(lease=" in (ROOT / "exporter" / "leader.py").read_text()


def test_an_exception_kept_for_later_is_logged_with_its_traceback():
    """The runner reports a watch thread's crash from the main thread: exc_info=the exception object."""
    (line,) = run("""
        from exporter import log
        def watch():
            raise KeyError("boom")
        try:
            watch()
        except KeyError as e:
            kept = e
        log.get(stream="s").error("watch_source_failed", exc_info=kept)
    """)
    assert line["stream"] == "s" and "in watch" in line["exception"] and "KeyError: 'boom'" in line["exception"]
