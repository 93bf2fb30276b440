"""The exporter's own logs: structlog, JSON lines on stderr, never mixed with records.

Everywhere else logs through ``from exporter import log; log.info("event_name", key=value)``:
one import of structlog, configured once by :func:`configure`.
"""
from __future__ import annotations

import logging
import sys

import structlog

_logger = structlog.get_logger("kube-event-exporter")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "json") -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


configure()


def debug(event: str, **kw) -> None:
    _logger.debug(event, **kw)


def info(event: str, **kw) -> None:
    _logger.info(event, **kw)


def warning(event: str, **kw) -> None:
    _logger.warning(event, **kw)


def error(event: str, **kw) -> None:
    _logger.error(event, **kw)
