"""Ordered acknowledgements -> the committable resourceVersion of one stream.

A watch stream advances through positions (resourceVersions). Some positions
carry a record (an Event occurrence handed to the sinks under a seq), others
carry none (a BOOKMARK, a filtered-out event, a DELETED, the end of a LIST).
The checkpoint may move to a position only once every record up to it is
confirmed by every sink; a later confirmation never moves it past an earlier
unconfirmed record (Vector's ordered finalizer, in resourceVersion terms).

The ledger stores (seq of the last record handed out before the position, rv).
Given the minimum sink watermark W, the committable rv is that of the newest
entry whose seq <= W. Entries are pruned as they are passed, so memory is
bounded by what is in flight.
"""
from __future__ import annotations

import threading
from collections import deque


def rv_key(rv: str) -> tuple[int, str]:
    """Order opaque resourceVersions: by length, then lexicographically.

    kube-apiserver RVs are decimal integers of arbitrary size; never parse them
    into a fixed-width int (api-concepts: opaque, but orderable from 1.35).
    """
    return (len(rv), rv)


def rv_newer(a: str, b: str | None) -> bool:
    """True when resourceVersion a is strictly after b (None is before all)."""
    return b is None or (len(a), a) > (len(b), b)


class Ledger:
    """Positions of one stream, and the one committable rv derived from them.

    Its own small lock: the source appends while the checkpointer advances, and the
    checkpointer must never wait for the pipeline's lock (a sink blocked by
    backpressure holds that one for as long as its outage lasts).
    """

    __slots__ = ("_entries", "_lock", "committed")

    def __init__(self, start_rv: str | None = None) -> None:
        self._entries: deque[tuple[int, str]] = deque()
        self._lock = threading.Lock()
        #: The rv up to which everything is confirmed (what a checkpoint saves).
        self.committed: str | None = start_rv

    def position(self, last_seq: int, rv: str) -> None:
        """The stream reached rv; the last record handed out so far has last_seq."""
        with self._lock:
            entries = self._entries
            if entries and entries[-1][0] == last_seq:
                entries[-1] = (last_seq, rv)
            else:
                entries.append((last_seq, rv))

    def advance(self, watermark: int) -> str | None:
        """Move ``committed`` to the newest position covered by the watermark."""
        with self._lock:
            entries = self._entries
            while entries and entries[0][0] <= watermark:
                self.committed = entries.popleft()[1]
            return self.committed

    def pending(self) -> int:
        return len(self._entries)
