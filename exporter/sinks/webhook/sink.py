"""An alert webhook: Warning Events to a chat service, told once, repeats folded, rate limited.

Built on the shared machinery (exporter/sinks/delivery.py) like every sink, with one
difference in policy, on purpose: by default an alert sink does **not** gate the
checkpoint. ``acked()`` follows what the pipeline gave it, so a chat outage never
stalls the log pipeline; messages are retried with the shared backoff (429 and
Retry-After honoured) up to ``retry_max_attempts``, and what is given up is logged
(``webhook_message_given_up``) and counted (``kee_webhook_messages_given_up``).
With ``gate_checkpoint: true`` it behaves like the other sinks: a record is
acknowledged only once the message carrying it (its first message, or the follow-up
that counted it) got a 2xx, held and retried until then; records the filter, the
rate limit or the group bound leave without a message are acknowledged at once.

The data path: send() (pipeline thread) filters, groups (noise.py), and queues a
first message; one worker thread collects follow-ups as windows end, applies the
rate limit, renders (template.py), shapes and signs (presets.py) and POSTs
(transport.py). Time comes from an injected clock, so tests drive the windows.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from exporter import log
from exporter.backoff import Backoff
from exporter.errors import SinkFatal
from exporter.metrics import Stats
from exporter.redact import mask_text
from exporter.settings import WebhookSettings
from exporter.sinks.base import Condition, Metric, Sink
from exporter.sinks.delivery import Delivery
from exporter.sinks.webhook.config import Resolved
from exporter.sinks.webhook.noise import Grouper, Message, RateLimit
from exporter.sinks.webhook.presets import request, service_error
from exporter.sinks.webhook.template import key_function, lookup, text_of
from exporter.sinks.webhook.transport import Answer, post

#: The worker re-reads the clock at least this often (seconds), so a test's fake clock is seen.
MAX_WAIT = 0.5
#: Without gate_checkpoint, the longest close() waits for queued messages (seconds): a chat
#: service that is down must not hold a shutdown for the whole drain budget.
UNGATED_CLOSE = 5.0
#: Seconds between two webhook_groups_evicted warnings (each carries the running totals).
EVICTED_LOG_INTERVAL = 10.0


def duration(seconds: float) -> str:
    """90 -> '1m30s', 300 -> '5m', 7200 -> '2h', 12 -> '12s'."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


class WebhookSink(Sink):
    """See the module docstring."""

    name = "webhook"
    condition_kinds = ("authentication", "endpoint", "refused", "signature")

    def __init__(self, cfg: WebhookSettings, index: int = 0, *,
                 predicate: Callable[[dict[str, Any]], bool] | None, stats: Stats | None = None,
                 env: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 poster: Callable[[str, bytes, float], Answer] = post) -> None:
        self.cfg = cfg
        self.r = Resolved(cfg, index, env)
        self.label = f"webhook-{cfg.name}"
        secrets = self.r.secrets()
        self.stats = stats if stats is not None else Stats()
        self.delivery = Delivery(self.label, max_records=cfg.max_in_flight_records,
                                 max_bytes=cfg.max_in_flight_records,
                                 backoff=Backoff(cfg.retry_backoff_initial_seconds, cfg.retry_backoff_max_seconds),
                                 stats=self.stats, redact=lambda text: mask_text(text, secrets))
        self.gate = cfg.gate_checkpoint
        self._clock, self._wall, self._post = clock, wall, poster
        self._predicate = predicate  # sinks.webhook.N.filter, built by exporter/app.py
        self._key = key_function(self.r.group_paths)
        self.grouper = Grouper(cfg.window_seconds, cfg.max_groups, keep_seqs=self.gate)
        self.limit = RateLimit(cfg.max_messages_per_minute)
        self._cv = threading.Condition(threading.Lock())
        self._queue: deque[Message] = deque()
        self._closing = False
        self._busy = False
        self._given = 0
        self.records = 0                       # records handed to this sink
        self.matched = 0                       # of them, through the filter
        self.sent: dict[str, int] = {}         # messages confirmed, by kind
        self.given_up = 0                      # messages given up after retry_max_attempts (ungated)
        self.given_up_occurrences = 0
        self.dropped = 0                       # messages dropped: queue over max_queued_messages
        self.failures: dict[str, int] = {}     # failed POSTs by kind
        self._evicted_logged = 0
        self._evicted_logged_at = -1e9
        self._thread = threading.Thread(target=self._run, name=f"{self.label}-delivery", daemon=True)
        self._thread.start()
        log.info("webhook_sink_started", preset=cfg.preset, gate_checkpoint=self.gate,
                 window_seconds=cfg.window_seconds, max_messages_per_minute=cfg.max_messages_per_minute,
                 signed=bool(self.r.secret), **self.r.describe())

    # --- the pipeline side ------------------------------------------------------------

    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        gate = self.gate
        if gate:
            self.delivery.admit(seq, 1)   # bounded: blocks (interruptibly) while max_in_flight_records are held
        self.records += 1
        pred = self._predicate
        if pred is not None and not pred(record):
            if gate:
                self.delivery.confirm(seq, 1)
            self._given = seq
            return
        self.matched += 1
        key = self._key(record)
        with self._cv:
            now = self._clock()
            self._collect(now)
            msg = self.grouper.observe(key, record, seq, now)
            if msg is not None:
                self._enqueue(msg, now)
            self._settle_evicted()
            self._given = seq
            if msg is not None:
                self._cv.notify_all()

    def flush(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def acked(self) -> int:
        return self.delivery.watermark() if self.gate else self._given

    @property
    def fatal(self) -> SinkFatal | None:
        return self.delivery.fatal

    def interrupt(self) -> None:
        self.delivery.interrupt()

    # --- noise control (lock held) ---------------------------------------------------------

    def _collect(self, now: float) -> None:
        """Follow-ups of the windows that ended, through the rate limit, onto the queue."""
        for msg in self.grouper.due(now):
            self._enqueue(msg, now)

    def _enqueue(self, msg: Message, now: float) -> None:
        admitted = self.limit.admit(msg, now)
        if not admitted:
            self._release(msg)  # suppressed: counted in the summary that follows
        q = self._queue
        for m in admitted:
            q.append(m)
        while len(q) > self.cfg.max_queued_messages:
            old = q.popleft()
            self.dropped += 1
            self.stats.error(self.label, "queue_full")
            log.warning("webhook_message_dropped", webhook=self.cfg.name, kind=old.kind, occurrences=old.count,
                        queued=len(q), setting=f"{self.r.where}.max_queued_messages",
                        fix="the service is down or slower than the alerts; raise max_queued_messages or check "
                            "the service")
            self._release(old)

    def _release(self, msg: Message) -> None:
        """gate_checkpoint: records leaving without a message of their own are acknowledged (by policy)."""
        if self.gate and msg.seqs:
            self.delivery.confirm_many(msg.seqs, len(msg.seqs))

    def _settle_evicted(self) -> None:
        g = self.grouper
        if g.evicted > self._evicted_logged and time.monotonic() - self._evicted_logged_at >= EVICTED_LOG_INTERVAL:
            self._evicted_logged_at = time.monotonic()
            log.warning("webhook_groups_evicted", webhook=self.cfg.name, evicted=g.evicted - self._evicted_logged,
                        evicted_total=g.evicted, occurrences_lost_total=g.evicted_occurrences,
                        setting=f"{self.r.where}.max_groups",
                        fix="more distinct groups than max_groups within a window: raise it or group by fewer fields")
            self._evicted_logged = g.evicted
        if g.evicted_seqs:
            if self.gate:
                self.delivery.confirm_many(g.evicted_seqs, len(g.evicted_seqs))
            g.evicted_seqs = []

    # --- the worker ---------------------------------------------------------------------

    def _next(self) -> Message | None:
        with self._cv:
            while True:
                self._busy = False
                now = self._clock()
                self._collect(now)
                if self._closing:
                    for msg in self.grouper.flush(now):
                        self._enqueue(msg, now)
                if not self._queue:
                    summary = self.limit.pending_summary(now)
                    if summary is not None:
                        self._queue.append(summary)
                if self._queue:
                    self._busy = True
                    return self._queue.popleft()
                if self._closing or self.delivery.aborted:
                    return None
                wake = [t for t in (self.grouper.next_due(), self.limit.next_room()) if t is not None]
                self._cv.wait(min([MAX_WAIT, *(t - now for t in wake)]) if wake else MAX_WAIT)

    def _run(self) -> None:
        while True:
            msg = self._next()
            if msg is None:
                return
            self._send(msg)

    def text(self, msg: Message) -> str:
        """The message's text: the template for a first; a fold or a rate-limit summary otherwise."""
        t = self.r.template
        if msg.kind == "first" and msg.record is not None:
            return t.render(msg.record)
        if msg.kind == "followup" and msg.record is not None:
            rec = msg.record
            ns, name = lookup(rec, ("object", "namespace")), text_of(lookup(rec, ("object", "name")))
            where = f"{ns}/{name}" if ns else name
            return (f"{text_of(rec.get('reason'))} x{msg.count} in {duration(msg.span)} on {where}, "
                    f"last: {t.render(rec)}")
        info = msg.record or {}
        groups = ["/".join(text_of(v) for v in g[1:] if v) or "-" for g in msg.suppressed_groups]
        more = f" (+{info.get('more_groups')} more)" if info.get("more_groups") else ""
        return (f"rate limit: {info.get('suppressed_messages', 0)} alert messages ({msg.count} occurrences) not "
                f"sent in {duration(msg.span)} (max_messages_per_minute={self.cfg.max_messages_per_minute}); "
                f"groups: {', '.join(groups)}{more}")

    def _send(self, msg: Message) -> None:
        """POST until a 2xx; ungated: give up after retry_max_attempts (logged, counted)."""
        d, cfg = self.delivery, self.cfg
        text = self.text(msg)
        attempt = 0
        while True:
            url, body = request(cfg.preset, self.r.url, self.r.secret, msg, text, now=self._wall(),
                                        group_by=cfg.group_by, window=cfg.window_seconds)
            a = self._post(url, body, cfg.timeout_seconds)
            failure = self._failure(a)
            if failure is None:
                self.sent[msg.kind] = self.sent.get(msg.kind, 0) + 1
                if self.gate and msg.seqs:
                    d.confirm_many(msg.seqs, len(msg.seqs))
                d.ok()
                if attempt:
                    log.info("sink_delivery_recovered", sink=self.label, attempts=attempt + 1)
                return
            kind, error, cond, retry_after = failure
            self.failures[kind] = self.failures.get(kind, 0) + 1
            if cond is not None:
                d.report(cond, error, message=msg.kind, **self.r.describe())
            else:
                d.transient(kind, error, message=msg.kind, attempt=attempt + 1, **self.r.describe())
            attempt += 1
            if not self.gate and (attempt >= cfg.retry_max_attempts or self._closing):
                self.given_up += 1
                self.given_up_occurrences += msg.count
                self.stats.error(self.label, "given_up")
                log.warning("webhook_message_given_up", kind=msg.kind, occurrences=msg.count, attempts=attempt,
                            last_error=d.redact(error)[:300], **self.r.describe(),
                            note="gate_checkpoint is false: the records were acknowledged; the log pipeline "
                                 "is not held by an alert service")
                return
            if d.aborted or d.sleep(d.retry_delay(attempt - 1, retry_after)):
                return

    def _failure(self, a: Answer) -> tuple[str, str, Condition | None, float | None] | None:
        where = self.r.where
        if 200 <= a.status < 300:
            bad = service_error(self.cfg.preset, a.body)
            if bad is None:
                return None
            error, kind, retry_after = bad
            if kind is None:
                return "rate_limited", error, None, retry_after
            return kind, error, self._condition(kind, where), None
        if a.status == 0:
            return ("timeout" if a.error.startswith("timeout") else "connection"), a.error, None, None
        error = f"HTTP {a.status}: {a.body[:200].decode('utf-8', 'replace')}"
        if a.status == 429:
            return "rate_limited", error, None, a.retry_after
        if a.status >= 500 or a.status == 408:
            return f"http_{a.status}", error, None, a.retry_after
        kind = {401: "authentication", 403: "authentication", 404: "endpoint", 410: "endpoint"}.get(a.status,
                                                                                                    "refused")
        return f"http_{a.status}", error, self._condition(kind, where), a.retry_after

    def _condition(self, kind: str, where: str) -> Condition:
        url = self.r.url_setting
        fixes = {
            "authentication": (url, "the service refuses the webhook's token: copy the webhook URL again from the "
                                    "service (it may have been revoked or rotated)"),
            "endpoint": (url, "no webhook at this address (deleted, or a wrong URL): create it again and update "
                              "the URL"),
            "signature": (self.r.secret_setting, "the service refuses the signature, keyword or source IP: check "
                                                 "the signing secret (DingTalk: the SEC... string) and the robot's "
                                                 "security settings (keywords must appear in the template)"),
            "refused": (f"{where}.preset", "the service refused the message: check that the preset matches the "
                                          "service and the template's text"),
        }
        setting, fix = fixes[kind]
        return Condition(kind, setting, fix)

    # --- shutdown and metrics -------------------------------------------------------------

    def close(self, timeout: float) -> None:
        budget = timeout if self.gate else min(timeout, UNGATED_CLOSE)
        deadline = time.monotonic() + budget
        self.interrupt()
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            self.delivery.abort()
            with self._cv:
                left = len(self._queue)
                self._queue.clear()
                self._cv.notify_all()
            self._thread.join(timeout=max(1.0, self.cfg.timeout_seconds + 1.0))
            if not self.gate:
                log.warning("webhook_messages_left_at_close", webhook=self.cfg.name, queued=left,
                            note="not delivered within the close budget; gate_checkpoint is false, so the "
                                 "records were acknowledged")
        if self.limit.suppressed:  # the summary was still waiting for room under the rate limit
            log.warning("webhook_summary_unsent_at_close", suppressed_messages=self.limit.suppressed,
                        occurrences=self.limit.suppressed_occurrences, **self.r.describe())
        if self.gate and self.delivery.in_flight()[0]:
            self.delivery.undelivered(timeout, **self.r.describe())
        log.info("sink_closed", sink=self.label, messages=sum(self.sent.values()), given_up=self.given_up,
                 retries=self.delivery.retries)

    def metrics(self) -> Iterator[Metric]:
        d = self.delivery
        if self.gate:
            yield from d.metrics(self.condition_kinds)
        else:
            yield from d.metrics(self.condition_kinds, held=(0, 0), confirmed=self.records)
        lab = {"webhook": self.cfg.name}
        for kind in ("first", "followup", "suppressed"):
            yield ("kee_webhook_messages", "counter", "alert messages the service accepted, by kind (first "
                   "occurrence, folded follow-up, rate-limit summary)", {**lab, "kind": kind}, self.sent.get(kind, 0))
        yield ("kee_webhook_records_matched", "counter", "records through the webhook's filter", lab, self.matched)
        yield ("kee_webhook_occurrences_folded", "counter", "occurrences folded into a follow-up instead of a "
               "message each", lab, self.grouper.folded)
        yield ("kee_webhook_groups", "gauge", "groups with an open window", lab, len(self.grouper))
        yield ("kee_webhook_groups_evicted", "counter", "groups evicted by max_groups (their folded count is lost)",
               lab, self.grouper.evicted)
        yield ("kee_webhook_messages_suppressed", "counter", "messages not sent because of "
               "max_messages_per_minute (summarised in one message)", lab, self.limit.total_suppressed)
        yield ("kee_webhook_messages_given_up", "counter", "messages given up after retry_max_attempts "
               "(gate_checkpoint false)", lab, self.given_up)
        yield ("kee_webhook_messages_dropped", "counter", "messages dropped because max_queued_messages were "
               "waiting", lab, self.dropped)
        yield ("kee_webhook_queued_messages", "gauge", "messages waiting to be posted", lab, len(self._queue))
        for kind, n in sorted(self.failures.items()):
            yield ("kee_webhook_post_failures", "counter", "POSTs that failed, by kind (retried or given up)",
                   {**lab, "kind": kind}, n)
