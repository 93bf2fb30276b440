"""The exporter's own logs: structlog, JSON lines on stderr, never mixed with records.

The only structlog import. Two ways to log:

    from exporter import log
    log.info("event_name", key=value)             # one-off lines (the module functions)
    lg = log.get(stream=key)                      # a bound logger: the context rides along
    lg.warning("watch_failed_retrying", error=...)
    lg.exception("watch_source_crashed")          # inside `except`: the traceback is logged

Every line passes :func:`exporter.redact.scrub` (credentials in URLs, every secret
value the configuration named) before it is rendered, whoever wrote it.

Caching: :func:`configure` with ``cache=True`` (what the CLI does, once, before
anything logs) turns on ``cache_logger_on_first_use``: a bound logger then resolves
its processors once instead of on every call. The import-time default leaves it
off, so tests can still capture logs (``structlog.testing.capture_logs``).
"""
from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

# structlog imports rich, when it is installed, for pretty tracebacks in its console renderer. The image
# does not install rich (only the dev venv has it, for import-linter); importing it anyway costs more
# start-up CPU than the rest of structlog (issue 16): hide it while structlog loads, so both behave
# like the image (plain tracebacks). Someone who imported rich before us keeps it.
_HIDDEN = "rich" not in sys.modules
if _HIDDEN:
    sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" now raises ImportError
try:
    import structlog
finally:
    if _HIDDEN:
        del sys.modules["rich"]

from exporter.redact import scrub_value  # noqa: E402 - after structlog, which loads without rich (above)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
NAME = "kube-event-exporter"


def _scrub(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask secrets in every string value (after tracebacks are formatted, before rendering)."""
    for k, v in event.items():
        event[k] = scrub_value(v)
    return event


def configure(level: str = "info", fmt: str = "json", *, cache: bool = False) -> None:
    """Level (case-insensitive), renderer (json | console), and logger caching (see the module docstring).

    Loggers from :func:`get` made before a later call keep the configuration they were cached with.
    """
    global _logger
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level.lower(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=cache,
    )
    _logger = structlog.get_logger(NAME)  # a lazy proxy: resolved (and, with caching, kept) on first use


_logger: Any = None
configure()


def get(**context: Any) -> Any:
    """A logger carrying `context` (stream=, lease=, sink=) on every line; `.bind(**more)` adds to it."""
    return structlog.get_logger(NAME).bind(**context)


def debug(event: str, **kw: Any) -> None:
    _logger.debug(event, **kw)


def info(event: str, **kw: Any) -> None:
    _logger.info(event, **kw)


def warning(event: str, **kw: Any) -> None:
    _logger.warning(event, **kw)


def error(event: str, **kw: Any) -> None:
    _logger.error(event, **kw)


def exception(event: str, **kw: Any) -> None:
    """An error line with the traceback of the exception being handled (call it inside `except`)."""
    _logger.exception(event, **kw)
