"""Typed settings, one dataclass per concern: the data and its schema, nothing else.

Sources, lowest to highest precedence: defaults below, the YAML file
(``--config`` / KEE_CONFIG), environment variables ``KEE__SECTION__KEY=value``
(double underscores between levels, values parsed as YAML scalars), and flags
(``--set section.key=value`` and the shortcuts in cli.py). The merged document is
validated against schemas/config.schema.json (:func:`parse`); an error names the
field and the fix and the CLI exits 2 (exporter/cli.py).

The rules a schema cannot say (cross-field bounds, selector syntax, librdkafka
keys, addresses) live in exporter/config.py, which imports this module and the
modules that own each rule: ``exporter.config.load`` is the one entry that both
``--check-config`` and start-up use. This module imports no other part of the
exporter but two leaves, the error tree and the secret-name list (redact.py, so a
schema error never quotes a secret back), so nothing here can form an import cycle.

Every attribute's comment gives its unit and why the default is what it is.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.errors import ConfigError
from exporter.redact import MASK, is_secret_key


def _schema_dir() -> Path:
    """KEE_SCHEMAS, else the copy shipped in the package (exporter/schemas), else the checkout's schemas/."""
    if os.environ.get("KEE_SCHEMAS"):
        return Path(os.environ["KEE_SCHEMAS"])
    here = Path(__file__).resolve().parent
    packaged = here / "schemas"
    return packaged if (packaged / "config.schema.json").exists() else here.parent / "schemas"


SCHEMA_DIR = _schema_dir()


@dataclass
class KubernetesSettings:
    kubeconfig: str | None = None          # path; None: in-cluster service account, then ~/.kube/config
    context: str | None = None             # kubeconfig context; None: current-context
    api: str = "events.k8s.io/v1"          # or "v1" (core). Watch ONE API: both serve the same objects
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces (needs a ClusterRole)
    field_selector: str = ""               # server-side, sent to the apiserver
    label_selector: str = ""               # server-side
    initial: str = "list"                  # "list": export Events that exist at first start; "now": only new ones
    page_size: int = 500                   # items per LIST page: small enough for a fast first byte, few round trips
    watch_timeout_seconds: int = 300       # server closes each watch after this; routine, resumes from the last RV
    inactivity_timeout_seconds: float = 70.0  # no bytes for this long: connection presumed dead (bookmarks ~60 s)
    read_linger_seconds: float = 0.05      # while Events (or Pods: pod_terminations) flow, wait this long for more
    # before reading again: one wake-up per linger, not one per object (CPU), at most this much later; 0: at once
    connect_timeout_seconds: float = 10.0  # TCP+TLS connect; an apiserver that takes longer is as good as down
    watch_list: str = "auto"               # streaming initial state (sendInitialEvents): auto|true|false
    backoff_initial_seconds: float = 0.5   # first retry delay after an error; doubled with jitter
    backoff_max_seconds: float = 30.0      # cap, so an outage of the apiserver is noticed within 30 s of recovery


@dataclass
class RecordSettings:
    cluster_name: str | None = None        # written into every record, so one topic can hold many clusters
    recurring: str = "every"               # "every": each occurrence is a record; "count_delta": only count changes
    max_message_bytes: int = 8192          # UTF-8 bytes; longer messages are truncated with a marker, never dropped
    max_record_bytes: int = 983040         # encoded record, newline included (960 KiB): under Kafka's defaults
                                           # (producer message.max.bytes 1000000, broker 1048588) with room for
                                           # key and headers; longer strings are cut with a marker to fit


@dataclass
class FilterSettings:
    types: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    exclude_reasons: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    exclude_namespaces: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)   # involved object kinds
    names: list[str] = field(default_factory=list)   # involved object names
    field_selector: str = ""                         # client-side, kubectl syntax: "type!=Normal,reason=BackOff"


@dataclass
class StdoutSettings:
    enabled: bool = True
    buffer_bytes: int = 65536              # flushed when this full, or when the source waits: one write per burst
    format: str = "json"                   # json: one record per line (for pipes and log agents); text: one line
                                           # per record for a person at a terminal, like kubectl get events


@dataclass
class KafkaSettings:
    """The Kafka sink (exporter/sinks/kafka.py, docs/kafka.md)."""
    enabled: bool = False
    brokers: str = ""                      # bootstrap.servers: host:port[,host:port]
    topic: str = "kube-events"             # fixed, or a template over record fields: "events.{event.namespace}"
    key: str = "event_uid"                 # event_uid | object_uid | none (see docs/kafka.md for the trade-off)
    compression: str = "zstd"              # zstd | lz4 | gzip | snappy | none: zstd is ~4x on Event JSON
    acks: str = "all"                      # all: the only setting where a delivery report means durable;
                                           # idempotence is on with all, off (librdkafka requires it) otherwise
    linger_ms: int = 20                    # ms a batch waits to fill: throughput without visible latency
    batch_bytes: int = 1048576             # librdkafka batch.size: bytes per partition batch (1 MiB)
    max_in_flight_records: int = 10000     # records sent but not confirmed; above it send() blocks (backpressure)
    max_in_flight_bytes: int = 67108864    # 64 MiB of record values held for retries: the other bound on memory
    delivery_timeout_ms: int = 300000      # librdkafka message.timeout.ms: its own retries give up after 5 min,
                                           # then the sink re-produces the record itself (never dropped)
    retry_backoff_initial_ms: int = 500    # first delay before the sink re-produces a failed record; doubled
    retry_backoff_max_ms: int = 30000      # cap of that delay: a fixed broker is used within 30 s
    headers: bool = True                   # headers type, reason, namespace, cluster (absent when null)
    config: dict[str, Any] = field(default_factory=dict)  # to librdkafka as is (security.protocol, sasl.*, ssl.*)
    secrets_from_env: dict[str, str] = field(default_factory=dict)    # librdkafka key -> env var holding the value
    secrets_from_files: dict[str, str] = field(default_factory=dict)  # librdkafka key -> file holding the value


@dataclass
class OtlpSettings:
    """The OTLP logs sink (exporter/sinks/otlp.py, docs/otlp.md).

    Transport fields left unset (None, {}) fall back to the standard environment:
    OTEL_EXPORTER_OTLP_LOGS_* first, then OTEL_EXPORTER_OTLP_*; a value set here wins.
    """
    enabled: bool = False
    protocol: str | None = None            # grpc | http/protobuf; None: env *_PROTOCOL, else grpc
    endpoint: str | None = None            # grpc: http(s)://host:4317; http: base URL (/v1/logs appended) or
                                           # full URL; None: env *_ENDPOINT, else localhost:4317 / :4318
    headers: dict[str, str] = field(default_factory=dict)  # merged over env *_HEADERS (these win per key)
    insecure: bool | None = None           # gRPC without TLS; None: env *_INSECURE, else from the endpoint scheme
    ca_file: str | None = None             # PEM CA bundle; None: env *_CERTIFICATE, else system roots
    client_cert_file: str | None = None    # mTLS client certificate (PEM); env *_CLIENT_CERTIFICATE
    client_key_file: str | None = None     # mTLS client key (PEM); env *_CLIENT_KEY
    compression: str | None = None         # gzip | none; None: env *_COMPRESSION, else none
    timeout_seconds: float | None = None   # per export request, the SDK's quick retries included; None: env
                                           # *_TIMEOUT (milliseconds, as the OTLP spec says), else 10 s
    batch_max_records: int = 2048          # records per export request (~2 MB of Events): the Collector spends
                                           # ~25% less CPU per record than with 512 (docs/otlp.md)
    batch_max_bytes: int = 4194304         # 4 MiB encoded per request: under gRPC's default 4 MiB receive limit
                                           # (requests are a little over this when one record alone is bigger)
    batch_timeout_seconds: float = 1.0     # a partial batch waits at most this long (the source's idle flush
                                           # sends it at once)
    max_in_flight_records: int = 10000     # records held until confirmed; above it send() blocks (backpressure)
    max_in_flight_bytes: int = 67108864    # 64 MiB of encoded records held for retries: the other memory bound
    retry_backoff_initial_seconds: float = 0.5  # first delay before a failed request is sent again; doubled
    retry_backoff_max_seconds: float = 30.0     # cap: a recovered Collector is used within 30 s
    resource_attributes: dict[str, str] = field(default_factory=dict)  # added to every record's resource,
                                           # over OTEL_RESOURCE_ATTRIBUTES; k8s.cluster.name comes from records


@dataclass
class ElasticsearchSinkSettings:
    """The Elasticsearch / OpenSearch bulk sink (exporter/sinks/elasticsearch, docs/elasticsearch.md)."""
    enabled: bool = False
    url: str = ""                          # http(s)://host:9200 (a path prefix is kept: https://gw/es)
    index: str = "kube-events-{timestamp:%Y.%m.%d}"  # template over record fields; daily by the Event's
                                           # own time, so a re-delivery lands in the same index (_id overwrites)
    op_type: str = "index"                 # index: overwrite by _id; create: for data streams (409 = already in)
    pipeline: str | None = None            # ingest pipeline applied by the server; None: none
    username: str | None = None            # basic auth; the password from secrets_* (or inline, masked)
    password: str | None = None
    api_key: str | None = None             # "id:key" or the base64 of it (Authorization: ApiKey ...)
    secrets_from_env: dict[str, str] = field(default_factory=dict)    # password|api_key -> env var
    secrets_from_files: dict[str, str] = field(default_factory=dict)  # password|api_key -> file
    ca_file: str | None = None             # PEM CA bundle for https; None: system roots
    tls_verify: bool = True                # false only for a lab: the server is not authenticated
    compression: str = "gzip"              # gzip | none: a bulk body of Event JSON shrinks ~6x
    batch_max_records: int = 1000          # documents per _bulk request
    batch_max_bytes: int = 5242880         # 5 MiB of NDJSON per request: the servers' advice is 5-15 MiB,
                                           # far under http.max_content_length (100 MiB)
    batch_timeout_seconds: float = 1.0     # a partial batch waits at most this long (an idle source sends it now)
    max_in_flight_records: int = 10000     # records held until confirmed; above it send() blocks (backpressure)
    max_in_flight_bytes: int = 67108864    # 64 MiB of encoded documents held for retries: the other memory bound
    request_timeout_seconds: float = 30.0  # per _bulk request: a server that takes longer is retried
    retry_backoff_initial_seconds: float = 0.5  # first delay before a failed request is sent again; doubled
    retry_backoff_max_seconds: float = 30.0     # cap: a recovered cluster is used within 30 s
    on_rejected: str = "dead_letter"       # dead_letter: a permanently rejected document goes to dead_letter
                                           # and is acknowledged; hold: kept and retried, the checkpoint waits
    dead_letter: str = "stderr"            # stdout | stderr | a file path (JSON lines, appended, fsynced)
    manage_template: bool = False          # install schemas/elasticsearch/index-template.json on start
    template_name: str = "kube-events"     # name of the index template manage_template installs
    template_patterns: list[str] = field(default_factory=lambda: ["kube-events*"])  # its index_patterns


@dataclass
class WebhookSettings:
    """One alert webhook (exporter/sinks/webhook/, docs/webhook.md): a list item of sinks.webhook."""
    name: str = ""                         # instance name: the sink=webhook-<name> metric label and log field
    preset: str = "generic"                # slack | dingtalk | feishu | teams | generic: the body's shape
    url: str | None = None                 # the webhook URL (it carries a token: prefer url_from_env/_file)
    url_from_env: str | None = None        # environment variable holding the URL
    url_from_file: str | None = None       # file holding the URL (a mounted Secret)
    secret_from_env: str | None = None     # variable holding the signing secret (dingtalk, feishu)
    secret_from_file: str | None = None    # file holding the signing secret
    template: str = "[{type}] {reason} on {object.namespace}/{object.kind}/{object.name}: {message}"
    # the text of one occurrence: {field} and {object.name} placeholders, nothing else (no code)
    filter: str = "type!=Normal"           # filters.field_selector syntax: only Warnings alert by default
    group_by: list[str] = field(default_factory=lambda: [
        "cluster", "object.namespace", "object.kind", "object.name", "reason"])
    # record fields forming a group: one crash-looping Pod's BackOffs are one group
    window_seconds: float = 300.0          # later occurrences of a group are folded into one follow-up sent
                                           # at the window's end: 5 min, the article's "tell me once"
    max_messages_per_minute: int = 20      # per instance: DingTalk documents 20/min per robot; Slack ~1/s
    max_groups: int = 10000                # groups remembered; the oldest is evicted (counted) beyond this
    gate_checkpoint: bool = False          # false: a chat outage never stalls the log pipeline (acked at once)
    timeout_seconds: float = 10.0          # one POST, connect and answer: chat services answer in < 1 s
    retry_max_attempts: int = 5            # without gate_checkpoint: attempts before a message is given up
    retry_backoff_initial_seconds: float = 1.0  # first delay before a failed POST is sent again; doubled
    retry_backoff_max_seconds: float = 60.0     # cap: DingTalk's rate limit resets each minute
    max_queued_messages: int = 1000        # messages waiting for the POST worker; the oldest dropped beyond it
    max_in_flight_records: int = 10000     # gate_checkpoint only: records held until their message is confirmed


@dataclass
class SinkSettings:
    stdout: StdoutSettings = field(default_factory=StdoutSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    otlp: OtlpSettings = field(default_factory=OtlpSettings)
    elasticsearch: ElasticsearchSinkSettings = field(default_factory=ElasticsearchSinkSettings)
    webhook: list[WebhookSettings] = field(default_factory=list)  # named alert webhooks (docs/webhook.md)


@dataclass
class CheckpointSettings:
    store: str = "none"                    # file | kubernetes | none
    path: str | None = None                # file store: the checkpoint file (on a volume)
    namespace: str | None = None           # kubernetes store: namespace of the ConfigMap; None: own namespace
    name: str = "kube-event-exporter-checkpoint"  # kubernetes store: ConfigMap name
    interval_seconds: float = 5.0          # kubernetes store (and none): save at most this often. Each save is
    # a ConfigMap PUT, an etcd write every ConfigMap watcher sees: 5 s keeps it <= 0.2 writes/s at any Event rate
    file_interval_seconds: float = 0.2     # file store: save this soon after the acknowledged position moves,
    # at most this often. A SIGKILL repeats about this long of Events (plus what sinks held unconfirmed); a save
    # is two fsyncs (~1-5 ms on a local disk, docs/BENCHMARKS.md): <= 5 saves/s, none while nothing moves
    key: str | None = None                 # stream key; None: derived from api, namespaces and selectors


@dataclass
class ServerSettings:
    listen: str = "0.0.0.0:8080"           # /metrics, /healthz, /readyz; "" disables
    stale_after_seconds: float = 300.0     # /healthz fails when the source made no progress for this long


@dataclass
class LogSettings:
    level: str = "info"
    format: str = "json"                   # json | console


@dataclass
class LeaderElectionSettings:
    enabled: bool = False
    namespace: str | None = None           # None: own namespace
    lease_name: str = "kube-event-exporter"
    identity: str | None = None            # None: pod name (HOSTNAME)
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0   # stop emitting when not renewed within this (< lease duration: no overlap)
    retry_period_seconds: float = 2.0


@dataclass
class EnrichSettings:
    """Enrichment (exporter/transforms/enrich.py, docs/records.md#enrichment): labels, owner, workload, node.

    Off by default: it reads objects from the apiserver and needs more RBAC
    (deploy/kustomize/overlays/enrich grants exactly that).
    """
    enabled: bool = False
    kinds: list[str] = field(default_factory=lambda: [
        "Pod", "ReplicaSet", "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Node"])
    # involved-object kinds looked up (owners of any kind are followed); the enrich overlay's RBAC grants these
    labels: list[str] = field(default_factory=lambda: ["*"])  # "*": all; keys, or prefixes "app.kubernetes.io/*"
    annotations: list[str] = field(default_factory=list)     # allow-list only (same syntax); empty: none
    node: bool = True                      # Pods are read whole to get spec.nodeName (metadata has no spec);
                                           # false: metadata only, node from kubelet Events' source host only
    timeout_seconds: float = 0.5           # longest one record waits for its lookups (the whole owner chain);
                                           # a healthy apiserver answers a GET in ~2-10 ms
    request_timeout_seconds: float = 5.0   # one GET on a worker thread; a slower answer still fills the cache
    degraded_seconds: float = 5.0          # after a timeout, misses are not waited for (partial) until that lookup
                                           # is answered, at most this long: a hung apiserver costs the watch
                                           # one timeout per window
    ttl_seconds: float = 300.0             # a cached object is re-read after this: labels changes show within 5 min
    negative_ttl_seconds: float = 30.0     # a 404/403 is remembered this long: a burst about a deleted Pod costs 1 GET
    cache_max_entries: int = 50000         # objects cached; ~50k pods' worth of labels is ~25 MiB
    cache_max_bytes: int = 33554432        # 32 MiB (approximate, errs high): keeps RSS under the documented 128 MiB
    requests_per_second: float = 20.0      # token bucket on lookups: a miss without a token is not waited for
    burst: int = 100                       # tokens saved up: a new Deployment's pods are enriched at once
    concurrency: int = 4                   # worker threads doing GETs
    max_pending: int = 256                 # lookups queued or running; more misses are marked partial at once


@dataclass
class PodTerminationSettings:
    """Container terminations (OOMKilled...) and Pod failures (Evicted...) as records, from Pod status.

    exporter/sources/pods.py; docs/records.md ("Records derived from Pod status").
    """
    enabled: bool = False                  # off by default: it watches every Pod (pods get/list/watch, see
                                           # deploy/kustomize/overlays/terminations)
    namespaces: list[str] = field(default_factory=list)  # empty: kubernetes.namespaces (all when that is empty)
    label_selector: str = ""               # server-side: only the Pods with these labels
    max_tracked_pods: int = 20000          # Pods whose last termination is remembered (~350 B each); beyond it the
                                           # least recently updated is forgotten and a relist may repeat its last one
    relist_grace_seconds: float = 30.0     # restart with a checkpoint too old to list at: terminations finished up
                                           # to this long before the checkpointed high-water mark are sent again
                                           # (same id) rather than risk losing one whose status came in late


@dataclass
class SourceSettings:
    pod_terminations: PodTerminationSettings = field(default_factory=PodTerminationSettings)


@dataclass
class Settings:
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    records: RecordSettings = field(default_factory=RecordSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    sinks: SinkSettings = field(default_factory=SinkSettings)
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    log: LogSettings = field(default_factory=LogSettings)
    leader_election: LeaderElectionSettings = field(default_factory=LeaderElectionSettings)
    enrich: EnrichSettings = field(default_factory=EnrichSettings)
    sources: SourceSettings = field(default_factory=SourceSettings)


# --- loading -----------------------------------------------------------------

def _yaml() -> Any:
    import yaml
    return yaml


def _set_path(doc: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(origin, "empty setting name", "use section.key=value, e.g. sinks.kafka.topic=events")
    node = doc
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(dotted, f"{p} is not a section", "check the setting name")
        node = nxt
    node[parts[-1]] = value


def parse_scalar(text: str) -> Any:
    """'3' -> 3, 'true' -> True, '[a, b]' -> list; anything unparsable stays a string."""
    try:
        return _yaml().safe_load(text) if text != "" else ""
    except Exception:  # noqa: BLE001 - any YAML error (or a recursion limit): the text is meant as a plain string
        return text


def load_document(path: str | None, env: dict[str, str], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    if path:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}", "give a readable YAML file") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError("--config", f"{path} is not UTF-8 text", "give a YAML file in UTF-8") from exc
        try:
            loaded = _yaml().safe_load(text)
        except Exception as exc:
            raise ConfigError(path, f"not valid YAML: {exc}", "fix the YAML syntax") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(path, "the top level must be a mapping", "see docs/configuration.md")
        doc = loaded
    for k, v in sorted(env.items()):
        if k.startswith("KEE__"):
            _set_path(doc, ".".join(p.lower() for p in k[5:].split("__")), parse_scalar(v), k)
    for dotted, value in overrides:
        _set_path(doc, dotted, value, dotted)
    section = doc.get("log")
    if isinstance(section, dict) and isinstance(section.get("level"), str):
        section["level"] = section["level"].lower()  # DEBUG, Debug and debug alike
    return doc


_TYPES = {"string": str, "boolean": bool, "object": dict, "array": list, "null": type(None)}


def _type_ok(value: Any, name: str) -> bool:
    if name == "integer":
        return type(value) is int
    if name == "number":
        return type(value) in (int, float)
    return isinstance(value, _TYPES[name])


def _check(value: Any, schema: dict[str, Any], path: list[str]) -> None:
    """The subset of JSON Schema that config.schema.json uses, with messages for people.

    (A full validator costs ~0.1 s of start-up per run; the tests check this one
    against jsonschema on the same schema.)
    """
    where = ".".join(path) or "(top level)"
    fix = schema.get("description") or "see docs/configuration.md"
    # the value is quoted back, unless it may be a secret (a password, a header value)
    shown = MASK if any(is_secret_key(p) or p == "headers" for p in path) else repr(value)
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join("null" if v is None else str(v) for v in schema["enum"])
        raise ConfigError(where, f"{shown} is not one of: {allowed}", fix)
    if "const" in schema and value != schema["const"]:
        raise ConfigError(where, f"must be {schema['const']!r}", fix)
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_type_ok(value, n) for n in names):
            raise ConfigError(where, f"{shown} is not of type {' or '.join(names)}", fix)
    if type(value) is float and not math.isfinite(value):
        raise ConfigError(where, f"{shown} is not a finite number", fix)
    if type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            raise ConfigError(where, f"{shown} is less than the minimum of {schema['minimum']}", fix)
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            raise ConfigError(where, f"{shown} must be greater than {schema['exclusiveMinimum']}", fix)
        if "maximum" in schema and value > schema["maximum"]:
            raise ConfigError(where, f"{shown} is more than the maximum of {schema['maximum']}", fix)
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise ConfigError(where, f"{shown} is shorter than {schema['minLength']} characters", fix)
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise ConfigError(where, f"longer than {schema['maxLength']} characters", fix)
    if isinstance(value, dict) and ("properties" in schema or "additionalProperties" in schema):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for k in value:
            if k in props:
                _check(value[k], props[k], [*path, str(k)])
            elif extra is False:
                known = ", ".join(sorted(props))
                raise ConfigError(".".join([*path, str(k)]), "unknown setting",
                                  f"remove it or check its spelling (known here: {known})")
            elif isinstance(extra, dict) and extra:
                _check(value[k], extra, [*path, str(k)])
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check(item, schema["items"], [*path, str(i)])


def config_schema() -> dict[str, Any]:
    import json
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / "config.schema.json").read_text())
    return schema


#: deeper than any setting (sinks.kafka.config.a.b.c... is the deepest real one)
MAX_DEPTH = 24
#: values in one document; a YAML alias bomb expands to far more than any real file holds
MAX_NODES = 100_000


def _shape(doc: Any) -> None:
    """Refuse documents no setting can have: alias loops, absurd depth, alias bombs (before anything walks them)."""
    nodes = 0

    def walk(value: Any, path: list[str], on_path: set[int]) -> None:
        nonlocal nodes
        nodes += 1
        where = ".".join(path) or "(top level)"
        if nodes > MAX_NODES:
            raise ConfigError(where, f"the document holds more than {MAX_NODES} values",
                              "check YAML aliases (*name): each use repeats what the anchor holds")
        if not isinstance(value, (dict, list)):
            return
        if id(value) in on_path:
            raise ConfigError(where, "contains itself (a YAML alias inside its own anchor)", "remove the alias loop")
        if len(path) > MAX_DEPTH:
            raise ConfigError(where, f"nested deeper than {MAX_DEPTH} levels", "see docs/configuration.md")
        on_path.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            walk(v, [*path, str(k)], on_path)
        on_path.discard(id(value))

    walk(doc, [], set())


def validate(doc: dict[str, Any]) -> None:
    _shape(doc)
    _check(doc, config_schema(), [])


def _build(cls: Any, data: dict[str, Any]) -> Any:
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        v = data[f.name]
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            v = _build(f.default_factory, v or {})
        kwargs[f.name] = v
    return cls(**kwargs)


def parse(path: str | None = None, env: dict[str, str] | None = None,
          overrides: list[tuple[str, Any]] | None = None) -> Settings:
    """Merge file, environment and flags; check against the schema; build typed settings.

    Schema only, hence not called load: exporter.config.load adds the rules a schema
    cannot say, and is what the exporter runs.
    """
    doc = load_document(path, dict(os.environ) if env is None else env, overrides or [])
    validate(doc)
    return build(doc)


def build(doc: dict[str, Any]) -> Settings:
    """Typed settings from a document that passed :func:`validate`."""
    settings: Settings = _build(Settings, doc)
    hooks: list[Any] = settings.sinks.webhook
    settings.sinks.webhook = [_build(WebhookSettings, h) if isinstance(h, dict) else h for h in hooks]
    return settings
