"""What a stdout-only exporter loads at start: no sink library it never calls, no unused kubernetes client.

Memory (issue 16, goal 6): every module imported stays resident. Each test starts a fresh
interpreter (the test process itself has imported everything by now) and reads sys.modules.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SINK_LIBRARIES = ("confluent_kafka", "grpc", "requests", "google.protobuf", "opentelemetry")
UNUSED_KUBERNETES = ("kubernetes.client.models", "kubernetes.client.api_client", "kubernetes.dynamic",
                     "kubernetes.stream", "kubernetes.watch", "kubernetes.informer", "kubernetes.leaderelection",
                     "pydantic", "websocket", "requests_oauthlib.oauth2_session", "oauthlib.oauth2.rfc6749")


def modules_after(code: str) -> dict[str, object]:
    """Run code in a fresh interpreter (cwd = the checkout); it prints a JSON object, returned here."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def loaded(prefixes: tuple[str, ...]) -> str:
    return f"sorted(m for m in sys.modules if m.split('.')[0] in {prefixes!r} or m.startswith({prefixes!r}))"


def test_a_stdout_only_pipeline_imports_no_kafka_grpc_requests_or_protobuf():
    got = modules_after(f"""
import json, sys
from exporter import app, config
from exporter.metrics import Stats
cfg = config.load(None, env={{}}, overrides=[("server.listen", "")])
assert cfg.sinks.stdout.enabled and not cfg.sinks.kafka.enabled and not cfg.sinks.otlp.enabled
stats = Stats()
sinks = app.build_sinks(cfg, stats)
app.build_pipeline(cfg, sinks, stats, live=True)
import exporter.runner  # the live lifecycle is imported by `run` before any sink is built
print(json.dumps({{"sinks": [s.name for s in sinks], "loaded": {loaded(SINK_LIBRARIES)}}}))
""")
    assert got["sinks"] == ["stdout"]
    assert got["loaded"] == [], f"a stdout-only start imported sink libraries: {got['loaded']}"


def test_the_kube_client_loads_credentials_without_the_kubernetes_models_or_oidc_libraries(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:6443/", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}]}))
    got = modules_after(f"""
import json, sys
from exporter.kube.client import KubeClient
c = KubeClient(kubeconfig={str(kubeconfig)!r})
print(json.dumps({{"host": c.host, "auth": c._headers()["Authorization"], "loaded": {loaded(UNUSED_KUBERNETES)}}}))
""")
    assert got["host"] == "https://127.0.0.1:6443" and got["auth"] == "Bearer t0ken"
    assert got["loaded"] == [], f"the kube client imported what it never calls: {got['loaded']}"


def test_the_rest_of_the_kubernetes_package_still_loads_on_first_use(tmp_path):
    got = modules_after("""
import json, sys
from exporter.kube import client
client._kubernetes()
import kubernetes, kubernetes.client
from kubernetes.config import kube_config
import oauthlib.oauth2
session = kube_config.OAuth2Session(client_id="x")  # what an OIDC refresh builds
api = kube_config.ApiClient(configuration=kubernetes.client.Configuration())
print(json.dumps({"version": kubernetes.__version__, "watch": kubernetes.watch.Watch.__name__,
                  "core": kubernetes.client.CoreV1Api.__name__, "api_client": type(api).__module__,
                  "session": type(session).__module__,
                  "oidc_error": oauthlib.oauth2.rfc6749.errors.InvalidClientIdError.__name__}))
""")
    assert got["watch"] == "Watch" and got["core"] == "CoreV1Api" and got["version"]
    assert got["api_client"] == "kubernetes.client.api_client"
    assert got["session"] == "requests_oauthlib.oauth2_session"
    assert got["oidc_error"] == "InvalidClientIdError"
