"""The Elasticsearch / OpenSearch sink: records into _bulk, acknowledged per item.

A :class:`~exporter.sinks.batching.BatchingSink` (exporter/sinks/delivery.py does
the bounds, the backoff, the conditions and the drain): ``encode()`` turns a
record into one bulk item (bulk.py: action line with ``_id`` = record id, then the
JSON line with ``@timestamp``), and ``deliver()`` sends a batch as one gzipped
``_bulk`` request. A batch is confirmed only when every item in it is settled:
stored (2xx), or rejected for good and written to the dead-letter target.
Settled items are removed from the batch's frame list in place, so a retry sends
only what is left (re-sending a stored item would be harmless anyway: same _id,
same index, it overwrites).

- connection errors, 429 and 5xx (whole request or single items): transient,
  retried with the shared backoff; the checkpoint waits;
- 401/403 (credentials), 404/405 (URL), 413 (batch too large), 400 on the whole
  request, a template the cluster refuses: conditions (held, logged naming the
  setting, ``kee_sink_condition``);
- an item rejected for good (400 mapping conflict, ...): logged with its id and
  reason, counted (kee_elasticsearch_rejected_records), then by ``on_rejected``:
  ``dead_letter`` writes it to ``dead_letter`` and it counts as settled (the
  stream and the checkpoint go on); ``hold`` keeps the batch as a ``rejected``
  condition, retried in place until a person fixes the mapping (the checkpoint,
  then the stream, wait; nothing is lost).

Re-delivery after a crash sends the same ``_id`` to the same index (the index
name comes from the record's stable fields), so it overwrites: documents =
distinct occurrences.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import exporter.sinks.elasticsearch.bulk as bulk
import exporter.sinks.elasticsearch.template as template
from exporter import log, wire
from exporter.backoff import Backoff
from exporter.errors import ConfigError
from exporter.metrics import Stats
from exporter.redact import mask_text
from exporter.settings import ElasticsearchSinkSettings
from exporter.sinks.base import Condition, Metric
from exporter.sinks.batching import BatchingSink, DeliveryFailed
from exporter.sinks.delivery import Delivery
from exporter.sinks.elasticsearch.deadletter import DeadLetter
from exporter.sinks.elasticsearch.transport import Transport, TransportError

_AUTH = Condition("authentication", "sinks.elasticsearch.username / password / api_key",
                  "the cluster refuses the credentials or their privileges: correct them (secrets_from_env / "
                  "secrets_from_files) or grant index and (for manage_template) manage_index_templates")
_ENDPOINT = Condition("endpoint", "sinks.elasticsearch.url",
                      "no Elasticsearch/OpenSearch _bulk API at this URL: check the host, port and path prefix")
_REFUSED = Condition("refused", "sinks.elasticsearch.url",
                     "the cluster refused the request as invalid: check that the URL is an Elasticsearch 8 or "
                     "OpenSearch 2 node and sinks.elasticsearch.pipeline names an existing ingest pipeline")
_TOO_LARGE = Condition("request_too_large", "sinks.elasticsearch.batch_max_bytes",
                       "lower sinks.elasticsearch.batch_max_bytes, or raise the cluster's http.max_content_length")
_TEMPLATE = Condition("template", "sinks.elasticsearch.manage_template",
                      "the cluster refuses the index template: see the error (an overlapping template with the "
                      "same priority, missing privileges); fix it or set manage_template=false")
_REJECTED = Condition("rejected", "sinks.elasticsearch.on_rejected",
                      "documents are rejected for good (see elasticsearch_document_rejected: a mapping conflict?): "
                      "fix the index mapping/template, or set on_rejected=dead_letter; held until then")
CONDITIONS = {401: _AUTH, 403: _AUTH, 404: _ENDPOINT, 405: _ENDPOINT, 413: _TOO_LARGE, 400: _REFUSED}


class ElasticsearchSink(BatchingSink):
    """See the module docstring."""

    name = "elasticsearch"
    condition_kinds = ("authentication", "endpoint", "refused", "rejected", "request_too_large", "template")

    def __init__(self, cfg: ElasticsearchSinkSettings, *, stats: Stats | None = None,
                 env: dict[str, str] | None = None, transport: Transport | None = None) -> None:
        check_settings(cfg, env)
        self.cfg = cfg
        self.stats = stats if stats is not None else Stats()
        self._index = bulk.IndexName(cfg.index)
        self._op = cfg.op_type
        self._prefixes: dict[str, bytes] = {}
        self._t = transport if transport is not None else Transport(cfg, env)
        secrets = list(self._t.secrets.values()) + [self._t.headers.get("Authorization", "")]
        self._gzip = cfg.compression == "gzip"
        self._bulk_path = f"/_bulk?filter_path={bulk.FILTER_PATH}"
        self._dead = DeadLetter(cfg.dead_letter) if cfg.on_rejected == "dead_letter" else None
        self._template_ok = not cfg.manage_template
        self.rejected = 0
        self.dead_lettered = 0
        self.sent_bytes = 0
        delivery = Delivery(self.name, max_records=cfg.max_in_flight_records, max_bytes=cfg.max_in_flight_bytes,
                            backoff=Backoff(cfg.retry_backoff_initial_seconds, cfg.retry_backoff_max_seconds),
                            stats=self.stats, redact=lambda text: mask_text(text, [s for s in secrets if s]))
        super().__init__(delivery, batch_max_records=cfg.batch_max_records, batch_max_bytes=cfg.batch_max_bytes,
                         linger_seconds=cfg.batch_timeout_seconds)
        log.info("elasticsearch_sink_started", index=cfg.index, op_type=cfg.op_type, compression=cfg.compression,
                 on_rejected=cfg.on_rejected, manage_template=cfg.manage_template, **self._t.describe())

    # --- pipeline thread -------------------------------------------------------------

    def encode(self, seq: int, line: bytes, record: dict[str, Any]) -> bytes:
        index = self._index.render(record)
        prefix = self._prefixes.get(index)
        if prefix is None:
            if len(self._prefixes) > 4096:
                self._prefixes.clear()
            prefix = self._prefixes[index] = bulk.action_prefix(self._op, index, self.cfg.pipeline)
        return bulk.encode(prefix, record.get("id") or "", record.get("timestamp"), line)

    # --- worker thread ---------------------------------------------------------------

    def deliver(self, frames: list[bytes], count: int) -> None:
        """One _bulk request for what is left of the batch; settled items leave ``frames`` (see the docstring)."""
        if not self._template_ok:
            self._install_template()
        body = b"".join(frames)
        headers = {"Content-Type": "application/x-ndjson"}
        if self._gzip:
            z = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: gzip framing; level 1: ~6x on a bulk body of Events
            body = z.compress(body) + z.flush()
            headers["Content-Encoding"] = "gzip"
        try:
            status, resp = self._t.request("POST", self._bulk_path, body, headers)
        except TransportError as exc:
            raise DeliveryFailed("connection", str(exc)) from exc
        if status != 200:
            error = f"HTTP {status}: {resp[:300].decode('utf-8', 'replace')}"
            raise DeliveryFailed(f"http_{status}", error, condition=CONDITIONS.get(status))
        try:
            outcomes = bulk.parse_items(resp, len(frames))
        except bulk.BadResponse as exc:
            raise DeliveryFailed("bad_response", str(exc)) from exc
        self.sent_bytes += len(body)
        if outcomes is None:
            return
        self._settle(frames, outcomes)

    def _settle(self, frames: list[bytes], outcomes: list[bulk.Outcome]) -> None:
        """Drop stored and dead-lettered items from ``frames``; raise for what is left."""
        left: list[bytes] = []
        retry: list[bulk.Outcome] = []
        rejected: list[tuple[bytes, bulk.Outcome]] = []
        for frame, o in zip(frames, outcomes, strict=True):
            c = bulk.classify(o, self._op)
            if c == bulk.RETRY:
                left.append(frame)
                retry.append(o)
            elif c == bulk.REJECT:
                rejected.append((frame, o))
        hold = False
        if rejected:
            policy = self.cfg.on_rejected
            entries = []
            for frame, o in rejected:
                rec_id, index = _target(frame)
                log.error("elasticsearch_document_rejected", id=rec_id, index=index, status=o.status,
                          error_type=o.error_type, reason=self.delivery.redact(o.reason or "")[:500], policy=policy)
                entries.append((rec_id, index, o.status, o.error_type, o.reason, _document(frame)))
            self.rejected += len(rejected)
            self.stats.error(self.name, "rejected")
            if self._dead is not None:
                try:
                    self._dead.write(entries)
                    self.dead_lettered += len(rejected)
                except OSError as exc:
                    log.error("elasticsearch_dead_letter_failed", target=self._dead.target, error=str(exc),
                              records=len(rejected), note="not acknowledged: sent again")
                    left.extend(f for f, _ in rejected)
            else:
                hold = True
                left.extend(f for f, _ in rejected)
        frames[:] = left
        if hold:
            first = rejected[0][1]
            raise DeliveryFailed("rejected", f"{len(rejected)} documents rejected: {first.error_type}: "
                                 f"{(first.reason or '')[:300]}", condition=_REJECTED)
        if retry:
            first = retry[0]
            raise DeliveryFailed(f"item_{first.status}", f"{len(retry)} items to retry, first: {first.status} "
                                 f"{first.error_type}: {(first.reason or '')[:300]}",
                                 retry_after=None)

    def _install_template(self) -> None:
        """PUT the shipped index template before the first document (raises DeliveryFailed like a request)."""
        try:
            status, body = self._t.request("GET", "/")
            if status == 200:
                flavour = template.distribution(wire.loads(body))
                doc = template.fitted(template.load(), flavour, self.cfg.template_patterns)
                status, body = self._t.request("PUT", f"/_index_template/{self.cfg.template_name}",
                                               wire.dumps(doc), {"Content-Type": "application/json"})
                if status == 200:
                    self._template_ok = True
                    log.info("elasticsearch_template_installed", name=self.cfg.template_name, flavour=flavour,
                             patterns=self.cfg.template_patterns)
                    return
        except TransportError as exc:
            raise DeliveryFailed("connection", str(exc)) from exc
        except ValueError as exc:  # GET / answered something that is not JSON
            raise DeliveryFailed("bad_response", f"GET / answered: {exc}", condition=_ENDPOINT) from exc
        error = f"template: HTTP {status}: {body[:300].decode('utf-8', 'replace')}"
        cond = CONDITIONS.get(status, _TEMPLATE) if status < 500 and status != 429 else None
        if cond is _REFUSED:
            cond = _TEMPLATE
        raise DeliveryFailed(f"template_{status}", error, condition=cond)

    def release(self) -> None:
        self._t.close()
        if self._dead is not None:
            self._dead.close()

    def describe(self) -> dict[str, Any]:
        return {"url": self._t.url}

    def sink_metrics(self) -> Iterator[Metric]:
        yield ("kee_elasticsearch_bulk_requests", "counter", "_bulk requests whose items all settled", {},
               self.requests)
        for kind, n in sorted(self.failures.items()):
            yield ("kee_elasticsearch_bulk_failures", "counter",
                   "_bulk attempts with something left to retry (never dropped), by kind", {"kind": kind}, n)
        yield ("kee_elasticsearch_rejected_records", "counter",
               "documents the cluster rejected for good (mapping conflict, 400), see on_rejected",
               {"policy": self.cfg.on_rejected}, self.rejected)
        yield ("kee_elasticsearch_dead_lettered_records", "counter", "rejected documents written to dead_letter",
               {}, self.dead_lettered)
        yield ("kee_elasticsearch_request_seconds", "counter", "seconds spent in _bulk requests that settled", {},
               self.request_seconds)
        yield ("kee_elasticsearch_sent_bytes", "counter", "request body bytes sent in _bulk requests that were "
               "answered (after compression)", {}, self.sent_bytes)


def _target(frame: bytes) -> tuple[str, str]:
    """(_id, _index) from an item's action line (only for rejected items: not the hot path)."""
    action = wire.loads(frame[:frame.index(b"\n")])
    (head,) = action.values()
    return str(head.get("_id")), str(head.get("_index"))


def _document(data: bytes) -> bytes:
    """The document half of a bulk item (after the action line)."""
    return data[data.index(b"\n") + 1:]


def check_settings(cfg: Any, env: dict[str, str] | None = None) -> None:
    """Fail at start, naming the field, for what would only fail at the first request."""
    if not cfg.url:
        raise ConfigError("sinks.elasticsearch.url", "Elasticsearch is enabled but no url is set",
                          "set sinks.elasticsearch.url to http(s)://host:9200")
    bulk.IndexName(cfg.index)
    for name in ("batch_timeout_seconds",):
        if float(getattr(cfg, name)) < 0:
            raise ConfigError(f"sinks.elasticsearch.{name}", "is negative", "use 0 or more seconds")
    for name in ("request_timeout_seconds", "retry_backoff_initial_seconds", "retry_backoff_max_seconds"):
        if float(getattr(cfg, name)) <= 0:
            raise ConfigError(f"sinks.elasticsearch.{name}", "must be greater than 0",
                              "use a positive number of seconds")
    if cfg.on_rejected == "dead_letter" and cfg.dead_letter not in ("stdout", "stderr"):
        try:
            with open(cfg.dead_letter, "ab"):
                pass
        except OSError as exc:
            raise ConfigError("sinks.elasticsearch.dead_letter", f"cannot append to {cfg.dead_letter}: "
                              f"{exc.strerror}", "give a writable file path, or stdout / stderr") from exc
    Transport(cfg, env)
