"""One HTTP POST of a JSON body with the standard library (http.client through urllib.request).

Why not ``requests``: the import-linter contract keeps each third-party library in one
module (``requests`` in exporter.sinks.otlp.http_transport), and one small POST a
message needs nothing urllib lacks: a timeout, the status, the body and Retry-After.
Every answer is returned, never raised, so the sink decides what a failure means.
"""
from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """status 0: no HTTP answer (connection refused, timeout: ``error`` says which)."""
    status: int
    body: bytes = b""
    retry_after: float | None = None
    error: str = ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: the backoff applies)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as is: following it would re-send the body (and its signature) elsewhere."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect())
#: Bytes of an answer read: services answer a few hundred bytes; more is never needed to classify it.
MAX_ANSWER = 65536


def post(url: str, body: bytes, timeout: float) -> Answer:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json; charset=utf-8",
                                          "User-Agent": "kube-event-exporter"})
    try:
        with _OPENER.open(req, timeout=timeout) as res:
            return Answer(res.status, res.read(MAX_ANSWER))
    except urllib.error.HTTPError as exc:
        try:
            data = exc.read(MAX_ANSWER)
        except (OSError, ValueError):
            data = b""
        return Answer(exc.code, data, _retry_after(exc.headers.get("Retry-After") if exc.headers else None),
                      f"HTTP {exc.code}")
    except TimeoutError as exc:
        return Answer(0, error=f"timeout after {timeout}s: {exc}")
    except urllib.error.URLError as exc:
        return Answer(0, error=f"{type(exc.reason).__name__}: {exc.reason}")
    except (OSError, ValueError) as exc:
        return Answer(0, error=f"{type(exc).__name__}: {exc}")
