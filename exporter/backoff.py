"""One retry delay policy for everything that retries: the watch, the start-up preflight, every sink.

Exponential (initial, doubled per attempt, capped) with "equal jitter": each delay is drawn
uniformly from [d/2, d]. Half of the delay is guaranteed, so a retry never hammers a
recovering server, and the random half spreads replicas and sinks that failed together.
A server's Retry-After is honoured as a floor, itself capped at RETRY_AFTER_CAP.
"""
from __future__ import annotations

import random

#: Seconds: the longest Retry-After honoured (a server asking for hours is treated as 5 minutes).
RETRY_AFTER_CAP = 300.0


class Backoff:
    """Exponential backoff with jitter. ``next()`` for one retrying loop, ``delay(n)`` for per-item attempts."""

    __slots__ = ("initial", "cap", "attempt")

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = max(0.0, float(initial))
        self.cap = max(self.initial, float(cap))
        self.attempt = 0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 = the first retry)."""
        d = min(self.cap, self.initial * (2 ** min(max(attempt, 0), 62)))
        d = random.uniform(d / 2, d)
        if retry_after:
            d = max(d, min(float(retry_after), RETRY_AFTER_CAP))
        return d

    def next(self, retry_after: float | None = None) -> float:
        """The delay before the next retry of this loop; each call doubles the next one."""
        d = self.delay(self.attempt, retry_after)
        self.attempt += 1
        return d

    def reset(self) -> None:
        """A success: the next failure starts again from ``initial``."""
        self.attempt = 0
