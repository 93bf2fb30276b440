"""Elasticsearch 8 / OpenSearch 2 sink: the _bulk API, one document per record, _id = record id.

- bulk.py: index names, bulk items and answers (no I/O)
- transport.py: HTTP(S) with the standard library, auth and secrets
- template.py: the shipped index template, fitted to the server
- deadletter.py: where permanently rejected documents go
- sink.py: batching, acknowledgement, retries, on_rejected (the Sink class)

docs/elasticsearch.md is the user's view.
"""
from exporter.sinks.elasticsearch.sink import ElasticsearchSink, check_settings

__all__ = ["ElasticsearchSink", "check_settings"]
