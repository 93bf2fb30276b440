"""Noise control of one webhook: group occurrences, tell once, fold repeats, limit the rate. Pure, clocked.

- **group**: occurrences with the same ``group_by`` values (default cluster,
  namespace, object kind/name, reason: one crash-looping Pod's BackOffs).
- **first**: the first occurrence of a group (or the first after it went quiet)
  is a message at once, and opens the group's window (``window_seconds``).
- **fold**: later occurrences within the window are counted, not sent; at the
  window's end ONE follow-up carries the count and the last occurrence, and a
  new window opens. A window that ends with nothing folded closes the group: it
  has gone quiet, and its next occurrence is a "first" again.
- **bounded**: at most ``max_groups`` groups; beyond it the group whose window
  opened longest ago is evicted (what it had folded is counted in ``evicted_occurrences``).
- **rate limit** (:class:`RateLimit`): at most N messages in any 60 s; a message
  over it is suppressed and counted, and the next message allowed is preceded by
  one summary of what was suppressed.

Nothing here reads a clock or sends anything: ``now`` is passed in (monotonic
seconds), so the unit tests drive the windows with a fake clock.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

#: Seconds of the rate limit's sliding window ("messages per minute").
RATE_WINDOW = 60.0
#: Group names quoted in a rate-limit summary (the rest are counted).
SUMMARY_GROUPS = 5


@dataclass
class Message:
    """One message to send. ``kind``: first | followup | suppressed."""
    kind: str
    group: tuple[Any, ...]
    record: dict[str, Any] | None     # the occurrence (first) or the last one folded (followup)
    count: int                        # occurrences this message stands for
    span: float                       # seconds the follow-up covers (0 for a first)
    seqs: list[int] = field(default_factory=list)  # records it carries (for gate_checkpoint)
    suppressed_groups: list[tuple[Any, ...]] = field(default_factory=list)


class _Group:
    __slots__ = ("opened", "folded", "last", "seqs")

    def __init__(self, opened: float) -> None:
        self.opened = opened
        self.folded = 0
        self.last: dict[str, Any] | None = None
        self.seqs: list[int] = []


class Grouper:
    """See the module docstring (group, first, fold, bounded)."""

    def __init__(self, window: float, max_groups: int, *, keep_seqs: bool = True) -> None:
        self.window = float(window)
        #: remember each folded record's seq (gate_checkpoint acknowledges them with the follow-up);
        #: without it a group's state stays O(1) however often it repeats
        self.keep_seqs = keep_seqs
        self.max_groups = max(1, int(max_groups))
        # key -> group, in the order their windows opened (so the front is due first)
        self._groups: OrderedDict[tuple[Any, ...], _Group] = OrderedDict()
        self.folded = 0                # occurrences folded into follow-ups
        self.evicted = 0               # groups evicted by max_groups
        self.evicted_occurrences = 0   # folded occurrences lost with them (never sent)
        self.evicted_seqs: list[int] = []  # their records (for gate_checkpoint: confirmed as given up)

    def __len__(self) -> int:
        return len(self._groups)

    def observe(self, key: tuple[Any, ...], record: dict[str, Any], seq: int, now: float) -> Message | None:
        """One occurrence: a first message, or None when folded into its group's open window.

        Callers collect :meth:`due` first, so a group present here has an open window."""
        g = self._groups.get(key)
        if g is not None:
            g.folded += 1
            g.last = record
            if self.keep_seqs:
                g.seqs.append(seq)
            self.folded += 1
            return None
        while len(self._groups) >= self.max_groups:
            _, old = self._groups.popitem(last=False)
            self.evicted += 1
            self.evicted_occurrences += old.folded
            self.evicted_seqs.extend(old.seqs)
        self._groups[key] = _Group(now)
        return Message("first", key, record, 1, 0.0, [seq])

    def next_due(self) -> float | None:
        """When the oldest window ends (monotonic seconds), or None with no group."""
        for g in self._groups.values():
            return g.opened + self.window
        return None

    def due(self, now: float) -> Iterator[Message]:
        """Follow-ups of every window that ended by ``now``; quiet groups are forgotten."""
        groups = self._groups
        while groups:
            key, g = next(iter(groups.items()))
            if g.opened + self.window > now:
                return
            groups.popitem(last=False)
            if g.folded:
                span = now - g.opened
                yield Message("followup", key, g.last, g.folded, span, g.seqs)
                groups[key] = _Group(now)  # a new window: repeats keep being folded

    def flush(self, now: float) -> Iterator[Message]:
        """Close: every pending follow-up at once (the rest of their windows is given up)."""
        for key, g in list(self._groups.items()):
            if g.folded:
                yield Message("followup", key, g.last, g.folded, now - g.opened, g.seqs)
        self._groups.clear()


class RateLimit:
    """At most ``per_minute`` messages in any RATE_WINDOW seconds; a summary of what was suppressed."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = max(1, int(per_minute))
        self._sent: deque[float] = deque()
        self.suppressed = 0                # messages suppressed since the last summary
        self.suppressed_occurrences = 0
        self.suppressed_since = 0.0
        self._groups: list[tuple[Any, ...]] = []
        self._more = 0
        self.total_suppressed = 0          # metrics: all time
        self.summaries = 0

    def _room(self, now: float) -> int:
        sent = self._sent
        while sent and sent[0] <= now - RATE_WINDOW:
            sent.popleft()
        return self.per_minute - len(sent)

    def admit(self, msg: Message, now: float) -> list[Message]:
        """The messages to send now for ``msg``: [] (suppressed), [msg], or [summary, msg] when one is owed."""
        room = self._room(now)
        if room < 1:
            self._suppress(msg, now)
            return []
        out = [self._summary(now), msg] if self.suppressed and room >= 2 else [msg]
        self._sent.extend(now for _ in out)
        return out

    def _suppress(self, msg: Message, now: float) -> None:
        if not self.suppressed:
            self.suppressed_since = now
        self.suppressed += 1
        self.total_suppressed += 1
        self.suppressed_occurrences += msg.count
        if msg.group not in self._groups and len(self._groups) < SUMMARY_GROUPS:
            self._groups.append(msg.group)
        elif msg.group not in self._groups:
            self._more += 1

    def _summary(self, now: float) -> Message:
        m = Message("suppressed", (), {"suppressed_messages": self.suppressed, "more_groups": self._more},
                    self.suppressed_occurrences, now - self.suppressed_since, suppressed_groups=list(self._groups))
        self.suppressed = self.suppressed_occurrences = self._more = 0
        self._groups = []
        self.summaries += 1
        return m

    def pending_summary(self, now: float) -> Message | None:
        """A summary owed and room to send it (the worker calls this when nothing else is sent)."""
        if self.suppressed and self._room(now) >= 1:
            self._sent.append(now)
            return self._summary(now)
        return None

    def next_room(self) -> float | None:
        """When a slot frees (for a summary still owed), or None."""
        if self.suppressed and self._sent:
            return self._sent[0] + RATE_WINDOW
        return None
