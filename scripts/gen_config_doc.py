"""Write docs/configuration.md from exporter/settings.py (names, defaults, units and reasons).

    python scripts/gen_config_doc.py          # rewrite the doc
    python scripts/gen_config_doc.py --check  # exit 1 when the doc is stale (a unit test runs this)
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {  # Settings attribute -> dataclass, in document order
    "kubernetes": "KubernetesSettings", "records": "RecordSettings", "filters": "FilterSettings",
    "sinks.stdout": "StdoutSettings", "sinks.kafka": "KafkaSettings", "sinks.otlp": "OtlpSettings",
    "sinks.elasticsearch": "ElasticsearchSinkSettings",
    "sinks.webhook[]": "WebhookSettings",
    "checkpoint": "CheckpointSettings", "server": "ServerSettings", "log": "LogSettings",
    "leader_election": "LeaderElectionSettings", "enrich": "EnrichSettings",
    "sources.pod_terminations": "PodTerminationSettings",
}

HEAD = """# Configuration

Generated from `exporter/settings.py` by `scripts/gen_config_doc.py`; the
contract is `schemas/config.schema.json`. Precedence, lowest first: defaults,
the YAML file (`--config` / `KEE_CONFIG`), environment variables
`KEE__SECTION__KEY=value` (e.g. `KEE__SINKS__KAFKA__TOPIC=events`, values read
as YAML scalars), flags (`--set sinks.kafka.topic=events`, and the shortcuts
`--kubeconfig --context --api --namespace --cluster-name --field-selector
--checkpoint-file --listen --log-level`).

An invalid setting stops the exporter with exit code 2 and a message that names
the setting and the fix, e.g.
`configuration error at kubernetes.api: 'v2' is not one of: events.k8s.io/v1, v1 (fix: ...)`.
`kube-event-exporter --check-config` validates and prints the effective settings
(secrets masked); it runs the same validation as a start (`exporter/config.py`),
so a start never refuses what it accepted.

Beyond the types, ranges and names in the schema, loading checks:

- durations (`*_seconds`) are finite, greater than 0 (except `sinks.otlp.batch_timeout_seconds`,
  where 0 means no wait) and at most a year; backoff initial <= backoff max
  (`kubernetes.*`, `sinks.kafka.retry_backoff_*`, `sinks.otlp.retry_backoff_*`);
- `server.listen` is `''` or `[host]:port`, an IPv4 address or host name and a port from 0 to 65535
  (whether that address is free and belongs to the host is only known where it runs: a start
  that cannot listen exits 2 too, logging `metrics_listen_failed` with the fix);
- `kubernetes.field_selector` is read as the apiserver reads it, with the field names it accepts
  for the configured `kubernetes.api` (`regarding.kind` for events.k8s.io/v1,
  `involvedObject.kind` for v1); `kubernetes.label_selector` as `kubectl -l`;
  `filters.field_selector` against the record's fields;
- `kubernetes.namespaces` holds namespace names (no commas: the `--namespace` flag splits
  `a,b` into two names, a list in the file must have one name per entry);
- `sinks.kafka.brokers` is `[proto://]host[:port]` entries with ports 1-65535, and the whole
  librdkafka configuration (`sinks.kafka.config` plus the sink's own keys and the secrets) is
  checked by librdkafka itself, without connecting: unknown keys, bad values, conflicts;
- each `sinks.webhook[]` item has a unique `name`, exactly one URL source, a template and `group_by`
  naming record fields, a `filter` in `filters.field_selector` syntax (docs/webhook.md);
- `sinks.otlp.endpoint` has a host and a valid port; `checkpoint.name` and
  `leader_election.lease_name` are valid object names; `log.level` is case-insensitive.
"""


def comments(src: str) -> dict[tuple[str, str], str]:
    lines = src.splitlines()
    tree = ast.parse(src)
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for st in node.body:
                if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name):
                    text = []
                    first = lines[st.lineno - 1]
                    if "#" in first:
                        text.append(first.split("#", 1)[1].strip())
                    n = st.end_lineno  # continuation comment lines
                    while n < len(lines) and lines[n].strip().startswith("#"):
                        text.append(lines[n].strip().lstrip("#").strip())
                        n += 1
                    default = ast.get_source_segment(src, st.value) if st.value is not None else ""
                    if default.startswith("field(default_factory="):
                        default = {"list": "[]", "dict": "{}"}.get(default[22:-1], default)
                        if default.startswith("field(default_factory=lambda: "):
                            default = " ".join(default[30:-1].split())
                    out[(node.name, st.target.id)] = (ast.get_source_segment(src, st.annotation), default,
                                                      " ".join(text))
    return out


def render() -> str:
    src = (ROOT / "exporter" / "settings.py").read_text()
    info = comments(src)
    parts = [HEAD]
    for section, cls in SECTIONS.items():
        parts.append(f"\n## `{section}`\n\n| setting | type | default | meaning |\n|---|---|---|---|")
        for (c, name), (typ, default, text) in info.items():
            if c == cls:
                typ_text, doc_text = typ.replace(" | ", " or "), text.replace("|", "/")
                parts.append(f"| `{section}.{name}` | `{typ_text}` | `{default}` | {doc_text} |")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    doc = ROOT / "docs" / "configuration.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if doc.exists() and doc.read_text() == text else 1)
    doc.write_text(text)
