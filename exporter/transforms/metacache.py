"""The enrichment cache: bounded in entries AND bytes, with a TTL, remembering 404s too.

Why its own module: it is what keeps enrichment's memory flat however many
distinct objects Events touch (Google's event-exporter cached every object and
reached 800 MB at 5k nodes). An LRU (OrderedDict, oldest first) is trimmed on
every insert until both bounds hold; a value past its TTL is a miss. Negative
entries (the object is gone: 404; or forbidden: 403) live for their own, shorter
TTL so a burst of Events about a deleted Pod costs one request, not one each.

Thread-safe (one lock; every operation is O(1)): watch threads read, lookup
workers write.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

#: What a negative entry costs (key tuple and its name/namespace strings, entry, LRU link), bytes:
#: ~350 measured with tracemalloc for the key, entry and link, plus the strings the key holds.
NEGATIVE_SIZE = 450


class Entry(Generic[V]):
    __slots__ = ("value", "missing", "expires", "fetched", "size")

    def __init__(self, value: V | None, missing: str | None, expires: float, fetched: float, size: int) -> None:
        self.value = value          # None for a negative entry
        self.missing = missing      # None, or why there is no value: "not_found", "forbidden", ...
        self.expires = expires      # monotonic seconds
        self.fetched = fetched      # monotonic seconds
        self.size = size


class MetaCache(Generic[V]):
    def __init__(self, *, max_entries: int, max_bytes: int, ttl: float, negative_ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._d: OrderedDict[Hashable, Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.evictions = 0          # removed to keep the bounds (not expiry)
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, key: Hashable) -> Entry[V] | None:
        """The live entry for key (positive or negative), or None (absent or expired)."""
        with self._lock:
            e = self._d.get(key)
            if e is None:
                return None
            if e.expires <= self.clock():
                self._remove(key, e)
                self.expirations += 1
                return None
            self._d.move_to_end(key)
            return e

    def put(self, key: Hashable, value: V, size: int) -> Entry[V]:
        now = self.clock()
        return self._insert(key, Entry(value, None, now + self.ttl, now, size))

    def put_missing(self, key: Hashable, why: str) -> Entry[V]:
        now = self.clock()
        return self._insert(key, Entry(None, why, now + self.negative_ttl, now, NEGATIVE_SIZE))

    def _insert(self, key: Hashable, e: Entry[V]) -> Entry[V]:
        with self._lock:
            old = self._d.pop(key, None)
            if old is not None:
                self.bytes -= old.size
            if e.size > self.max_bytes:  # an entry alone above the bound is not kept at all
                return e
            self._d[key] = e
            self.bytes += e.size
            d = self._d
            while len(d) > self.max_entries or self.bytes > self.max_bytes:
                _, victim = d.popitem(last=False)
                self.bytes -= victim.size
                self.evictions += 1
            return e

    def _remove(self, key: Hashable, e: Entry[V]) -> None:
        del self._d[key]
        self.bytes -= e.size
