"""The contract every sink keeps with the pipeline and the runner: the whole of it, in one class.

A record is handed to a sink as (seq, line, record): seq is a pipeline-wide,
strictly increasing sequence number; line is the record already encoded as one
JSON line (bytes, trailing newline included) so that sinks that ship JSON do not
encode it again; record is the same record as a dict, for sinks that map it to
another shape (OTLP) or read fields of it. A sink that only reads a few fields
(Kafka: keys, topics, headers) may take it as its struct instead (``reads_struct``,
``send_struct``): no dict is built for it.

Acknowledgement flows back as a *watermark*: ``acked()`` returns the highest seq
such that every record with a seq at or below it is confirmed delivered. The
checkpoint is derived from the minimum watermark of all sinks (exporter/acks.py),
so a sink must never report a seq it has not delivered: a failed write is never
acknowledged.

The runner uses nothing but this interface (no attribute probing): ``fatal`` to
stop the process, ``interrupt()`` to free a ``send()`` blocked by backpressure at
shutdown, ``close()`` to drain, ``metrics()`` for /metrics. The shared machinery
that implements most of it is exporter/sinks/delivery.py; docs/design.md ("Writing
a sink") says how to build a new sink on it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from exporter.errors import ExporterError, SinkFatal
from exporter.metrics import Metric as Metric  # re-exported: the sinks' metrics() type
from exporter.wire import Record, record_dict


class SinkInterrupted(ExporterError):
    """send() was waiting for room when the sink was interrupted (shutdown) or became fatal."""


@dataclass(frozen=True)
class Condition:
    """Something only a person can fix (credentials, ACLs, a missing topic, a wrong URL, sizes).

    ``kind`` is the metric label, ``setting`` the setting (or outside thing) to check,
    ``fix`` what to do. Conditions are held and retried, never dropped (see delivery.py).
    """
    kind: str
    setting: str
    fix: str


class Sink(ABC):
    """What the pipeline and the runner need from a sink. See the module docstring."""

    #: Short lowercase name: the ``sink`` metric label and log field.
    name: ClassVar[str]
    #: Whether send() reads its ``record`` argument. A sink that ships only ``line`` says False: when
    #: no sink reads it (and no filter or enrichment does), the pipeline builds no dict and passes an
    #: empty one (pipeline.NO_RECORD, never to be written to).
    reads_record: ClassVar[bool] = True
    #: Whether the sink can take the record as its struct instead (:meth:`send_struct`): the pipeline's
    #: plain path (no filter, enrichment or count_delta) then builds no dict for it, only the struct it
    #: already has (OTLP maps every record to another shape, ~7 us per record less; Kafka reads its key,
    #: topic and headers as attributes).
    reads_struct: ClassVar[bool] = False

    @abstractmethod
    def send(self, seq: int, line: bytes, record: dict[str, Any]) -> None:
        """Take one record. May block for backpressure (interruptible); never drops it.

        Raises SinkInterrupted when interrupted while blocked, SinkFatal when the sink
        can never deliver again in this process.
        """

    def send_struct(self, seq: int, line: bytes, record: Record) -> None:
        """send() with the record as its struct (exporter.wire.Record), for a sink with ``reads_struct``:
        the same record, fields by attribute. Default: the dict, built here."""
        self.send(seq, line, record_dict(record))

    @abstractmethod
    def flush(self) -> None:
        """Push out what is buffered. Called when the source is about to wait."""

    @abstractmethod
    def acked(self) -> int:
        """Highest seq up to which every record is confirmed delivered."""

    @property
    @abstractmethod
    def fatal(self) -> SinkFatal | None:
        """Set when this sink can never deliver again in this process; the runner then stops (exit 1)."""

    @abstractmethod
    def interrupt(self) -> None:
        """Shutdown: make a send() blocked by backpressure raise SinkInterrupted at once."""

    @abstractmethod
    def close(self, timeout: float) -> None:
        """Deliver what is held for up to timeout seconds and release resources.

        Raises SinkFatal naming the setting to check when records are left undelivered
        (they stay unacknowledged: the checkpoint stays before them).
        """

    @abstractmethod
    def metrics(self) -> Iterator[Metric]:
        """The sink's metric samples, read at scrape time."""
