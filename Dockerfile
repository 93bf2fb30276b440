# syntax=docker/dockerfile:1
# kube-event-exporter container image: two stages, slim, non-root (65532), no
# compilers, pip or setuptools in the final image.
#
#   docker build -t ghcr.io/example/kube-event-exporter:0.1.0 .
#
# Pin the base by digest in release builds (the tag below fixes the Python patch
# release and the Debian release; a digest fixes the bytes):
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: wheels for the package and every dependency, installed into /venv ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships manylinux wheels (orjson, PyYAML, rpds-py, grpcio,
# confluent-kafka with librdkafka inside): no compiler is needed even here.
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --prefer-binary --wheel-dir /wheels . \
 && python -m venv /venv \
 && /venv/bin/pip install --no-index --find-links /wheels kube-event-exporter \
 && /venv/bin/pip uninstall -y pip setuptools wheel \
 && /venv/bin/python -m compileall -q /venv/lib

# --- runtime -------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="kube-event-exporter" \
      org.opencontainers.image.description="Export every Kubernetes Event occurrence to stdout, Kafka or OTLP, resuming from an acknowledged resourceVersion" \
      org.opencontainers.image.licenses="Apache-2.0"
# The base's own installer tools are not needed at run time.
RUN python -m pip uninstall -y pip setuptools wheel \
 && rm -rf /root/.cache /usr/local/lib/python3.11/ensurepip
COPY --from=build /venv /venv
# settings.py reads the config JSON Schema from KEE_SCHEMAS (../schemas relative to the
# package only in a source checkout).
COPY schemas /app/schemas
ENV PATH=/venv/bin:$PATH \
    KEE_SCHEMAS=/app/schemas \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /app
# distroless' "nonroot" uid/gid; the Deployment also sets runAsUser 65532 and a read-only root
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["kube-event-exporter"]
CMD ["run"]
