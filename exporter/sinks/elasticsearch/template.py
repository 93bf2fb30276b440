"""The index template shipped in schemas/elasticsearch/index-template.json, fitted to the cluster.

``sinks.elasticsearch.manage_template`` installs it before the first document
(PUT _index_template/<template_name>), so the first daily index already has the
mapping: keywords for exact filters, ``message`` as text, integers as long,
label-like objects as one ``flat_object`` (OpenSearch) / ``flattened``
(Elasticsearch) field, so keys such as ``app.kubernetes.io/name`` can neither
create a field each nor conflict. GET / tells which server it is.
"""
from __future__ import annotations

import copy
import json
from typing import Any

from exporter.settings import SCHEMA_DIR

TEMPLATE_PATH = SCHEMA_DIR / "elasticsearch" / "index-template.json"


def load() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(TEMPLATE_PATH.read_text())
    doc.pop("_comment", None)
    return doc


def distribution(root: dict[str, Any]) -> str:
    """'opensearch' or 'elasticsearch' from the answer to GET /."""
    version = root.get("version") or {}
    return "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"


def fitted(doc: dict[str, Any], flavour: str, patterns: list[str]) -> dict[str, Any]:
    """The template for this server: its object type for labels, the configured index patterns."""
    out = copy.deepcopy(doc)
    out["index_patterns"] = list(patterns)
    if flavour == "elasticsearch":
        _swap(out, "flat_object", "flattened")
    return out


def _swap(node: Any, old: str, new: str) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "type" and v == old:
                node[k] = new
            else:
                _swap(v, old, new)
    elif isinstance(node, list):
        for v in node:
            _swap(v, old, new)
