"""Sinks: where records leave the exporter, confirmed before the checkpoint moves.

    base.py       the Sink interface the pipeline and the runner use (all of it)
    delivery.py   the machinery every sink uses: bounds, ordered acks, backoff, failure policy, drain
    batching.py   a batching request/response sink on that machinery (OTLP; next: Elasticsearch, webhooks)
    stdout.py     JSON lines on stdout
    kafka/        librdkafka (its only importer is kafka/client.py)
    otlp/         OTLP/gRPC and OTLP/HTTP (grpc, requests, opentelemetry each imported in one module)

docs/design.md ("Sinks: one delivery machinery", "Writing a sink") explains how they fit.
"""
