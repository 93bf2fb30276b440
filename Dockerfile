# syntax=docker/dockerfile:1
# kube-event-exporter container image: two stages, non-root (65532), no compilers,
# pip or setuptools in the final image; dependencies at the versions of requirements.lock.
#
#   docker build -t ghcr.io/example/kube-event-exporter:0.1.0 .
#
# PYTHON_IMAGE is the base of both stages: any Debian-like image whose `python3` is
# CPython >= 3.11 with the venv module (docs/image.md). The default is the official slim
# image (tag checked against docker-library's official-images list; its digest was not
# checked here). Pin it by digest in release builds:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-trixie@sha256:<digest> .
# scripts/image builds this same file with buildah, FROM a Debian root filesystem made
# locally with mmdebstrap (python3 from Debian's packages).
ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

# --- build: the package and its locked dependencies, installed into /venv -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every dependency ships manylinux wheels (orjson, msgspec, PyYAML, grpcio, protobuf,
# confluent-kafka with librdkafka inside; --only-binary makes sure): no compiler, even here.
# Two steps so that a code change reuses the dependency layer: first the dependencies of
# pyproject.toml, each at its version in requirements.lock (-c), then the package itself.
# Optional build secrets, for a network that needs them (never stored in any layer):
#   --secret id=pip.conf,src=<a pip.conf: index URL, cert = /run/secrets/ca.crt, ...>
#   --secret id=ca.crt,src=<the CA bundle of a TLS-inspecting proxy>
COPY requirements.lock pyproject.toml ./
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca.crt \
    python3 -m venv /venv \
 && python3 -c "import tomllib; print('\\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > deps.txt \
 && /venv/bin/pip install --only-binary=:all: --no-compile -c requirements.lock -r deps.txt
COPY README.md ./
COPY schemas ./schemas
COPY exporter ./exporter
# Then drop what is not needed at run time: pip/setuptools, and kubernetes/aio, the asyncio
# client (~65 MB with its bytecode), with aiohttp and the packages only aiohttp needs: the
# exporter never imports them (exporter/kube/client.py uses kubernetes.client and
# kubernetes.config only; the image test runs it against a real apiserver). Fail if
# anything left is not pinned by requirements.lock. Compile the bytecode here (the root
# filesystem is read-only at run time, Python cannot cache it there), and check that the
# entry point starts.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=ca.crt \
    /venv/bin/pip install --no-deps --no-compile . \
 && /venv/bin/pip uninstall -y -q aiohttp aiohttp-retry aiohappyeyeballs aiosignal frozenlist multidict \
      propcache yarl pip setuptools wheel \
 && rm -rf /venv/lib/python3*/site-packages/kubernetes/aio \
 && /venv/bin/python -c "import importlib.metadata as m, re, sys; \
n = lambda s: re.sub(r'[-_.]+', '-', s).lower(); \
lock = {n(a) + '==' + b.strip() for a, _, b in (l.split('#')[0].strip().partition('==') for l in open('requirements.lock')) if b}; \
got = {n(d.metadata['Name']) + '==' + d.version for d in m.distributions()} - {'kube-event-exporter==' + m.version('kube-event-exporter')}; \
bad = sorted(got - lock); \
sys.exit('not pinned by requirements.lock: %s' % bad if bad else 0)" \
 && find /venv -name __pycache__ -prune -exec rm -rf {} + \
 && /venv/bin/python -m compileall -q -j 0 /venv/lib \
 && /venv/bin/kube-event-exporter --help >/dev/null

# --- runtime ---------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kube-event-exporter" \
      org.opencontainers.image.description="Export every Kubernetes Event occurrence to stdout, Kafka or OTLP, resuming from an acknowledged resourceVersion" \
      org.opencontainers.image.source="https://github.com/example/kube-event-exporter" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# No installer in the runtime: the base's pip/setuptools/wheel (official image) and
# ensurepip's bundled wheels (either base) go.
RUN if python3 -m pip --version >/dev/null 2>&1; then python3 -m pip uninstall -y -q pip setuptools wheel; fi \
 && rm -rf /usr/local/lib/python3*/ensurepip /usr/lib/python3*/ensurepip /usr/share/python-wheels
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
# distroless' "nonroot" uid/gid; the Deployment also sets runAsUser 65532 and a read-only
# root filesystem, with /tmp an emptyDir (the only writable path).
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["kube-event-exporter"]
CMD ["run"]
