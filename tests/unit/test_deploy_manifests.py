"""The kustomize manifests agree with the exporter: every shipped config.yaml loads, the
Role's resourceNames match the configured Lease and checkpoint names, the pod is locked
down. (tests/integration/test_deploy.py builds and applies them on a real apiserver.)
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exporter import config, redact

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "kustomize"
BASE = ROOT / "base"
OVERLAYS = ["stdout", "kafka", "otlp", "ha", "namespaced"]
CONFIGS = [BASE / "config.yaml"] + [p for p in (ROOT / "overlays" / o / "config.yaml" for o in OVERLAYS) if p.exists()]


@pytest.fixture(autouse=True)
def _forget_secrets():
    """config.load registers secret values process-wide (for log masking): none leak into other tests."""
    yield
    redact.forget_secrets()


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def by_kind(path: Path, kind: str) -> list[dict]:
    return [d for d in docs(path) if d["kind"] == kind]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_shipped_config_loads(path, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "x")
    cfg = config.load(str(path), {"KAFKA_SASL_PASSWORD": "x"})
    assert cfg.server.listen.endswith(":8080")
    assert cfg.checkpoint.store == "kubernetes"
    assert cfg.checkpoint.namespace is None and cfg.leader_election.namespace is None  # own namespace


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.parent.name)
def test_role_resource_names_match_config(path, monkeypatch):
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "x")
    cfg = config.load(str(path), {"KAFKA_SASL_PASSWORD": "x"})
    role = by_kind(BASE / "rbac.yaml", "Role")[0]
    named = {(r["apiGroups"][0], r["resources"][0]): set(r.get("resourceNames", [])) for r in role["rules"]
             if r.get("resourceNames")}
    assert named[("coordination.k8s.io", "leases")] == {cfg.leader_election.lease_name}
    assert named[("", "configmaps")] == {cfg.checkpoint.name}


def test_cluster_role_reads_events_only():
    (cr,) = by_kind(BASE / "rbac.yaml", "ClusterRole")
    assert cr["rules"] == [{"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
                            "verbs": ["get", "list", "watch"]}]


def test_role_never_grants_wildcards_list_or_delete():
    for path in (BASE / "rbac.yaml", ROOT / "overlays" / "namespaced" / "watch-roles.yaml"):
        for role in by_kind(path, "Role") + by_kind(path, "ClusterRole"):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                forbidden = {"delete", "deletecollection", "patch", "escalate", "bind", "impersonate"}
                assert not forbidden & set(rule["verbs"])
                if rule["resources"] != ["events"]:
                    assert "list" not in rule["verbs"] and "watch" not in rule["verbs"]


def test_namespaced_overlay_roles_cover_configured_namespaces():
    ov = ROOT / "overlays" / "namespaced"
    cfg = config.load(str(ov / "config.yaml"), {})
    role_ns = {r["metadata"]["namespace"] for r in by_kind(ov / "watch-roles.yaml", "Role")}
    binding_ns = {r["metadata"]["namespace"] for r in by_kind(ov / "watch-roles.yaml", "RoleBinding")}
    assert role_ns == binding_ns == set(cfg.kubernetes.namespaces)


def test_pod_is_locked_down():
    (dep,) = by_kind(BASE / "deployment.yaml", "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert set(c["resources"]) == {"requests", "limits"}
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["KEE_CONFIG"]["value"] == "/etc/kube-event-exporter/config.yaml"
    assert pod["terminationGracePeriodSeconds"] == 30
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "8080"


def test_base_is_namespace_agnostic():
    for f in ("serviceaccount.yaml", "rbac.yaml", "deployment.yaml"):
        for d in docs(BASE / f):
            assert "namespace" not in d["metadata"], f"{f}: {d['kind']} pins a namespace"
    assert "namespace" not in yaml.safe_load((BASE / "kustomization.yaml").read_text())


# --- NetworkPolicy: in only to the metrics port; out only to DNS, the apiserver and the sinks --------

def ports(rules: list[dict]) -> set[tuple[int, str]]:
    return {(p["port"], p.get("protocol", "TCP")) for r in rules for p in r["ports"]}


def pod_labels() -> dict[str, str]:
    (dep,) = by_kind(BASE / "deployment.yaml", "Deployment")
    return dep["spec"]["template"]["metadata"]["labels"]


def selects_the_exporter(policy: dict) -> bool:
    sel = policy["spec"]["podSelector"]
    (dep,) = by_kind(BASE / "deployment.yaml", "Deployment")
    return (set(sel) == {"matchLabels"} and sel["matchLabels"].items() <= pod_labels().items()
            and sel["matchLabels"] == dep["spec"]["selector"]["matchLabels"])


def test_base_network_policy_admits_only_the_metrics_port_and_reaches_only_dns_and_the_apiserver():
    assert "networkpolicy.yaml" in yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    (np,) = by_kind(BASE / "networkpolicy.yaml", "NetworkPolicy")
    assert selects_the_exporter(np)
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = np["spec"]["ingress"]
    (dep,) = by_kind(BASE / "deployment.yaml", "Deployment")
    metrics = dep["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert ingress == {"ports": [{"port": metrics["containerPort"], "protocol": "TCP"}]}  # from anywhere, one port
    egress = np["spec"]["egress"]
    assert all(r.get("ports") for r in egress), "an egress rule without ports allows every port"
    assert ports(egress) == {(53, "UDP"), (53, "TCP"), (443, "TCP"), (6443, "TCP")}
    cfg = config.load(str(BASE / "config.yaml"), {})
    assert cfg.server.listen.endswith(f":{metrics['containerPort']}")


@pytest.mark.parametrize("overlay,sink_ports", [("kafka", {9092, 9093}), ("otlp", {4317, 4318})])
def test_sink_overlays_add_egress_to_their_sink_and_nothing_else(overlay, sink_ports, monkeypatch):
    ov = ROOT / "overlays" / overlay
    assert "networkpolicy.yaml" in yaml.safe_load((ov / "kustomization.yaml").read_text())["resources"]
    (np,) = by_kind(ov / "networkpolicy.yaml", "NetworkPolicy")
    assert selects_the_exporter(np)
    assert np["spec"]["policyTypes"] == ["Egress"] and "ingress" not in np["spec"]
    assert ports(np["spec"]["egress"]) == {(p, "TCP") for p in sink_ports}
    # the overlay's own config talks to a port its policy opens
    cfg = config.load(str(ov / "config.yaml"), {"KAFKA_SASL_PASSWORD": "x"})
    address = cfg.sinks.kafka.brokers if overlay == "kafka" else cfg.sinks.otlp.endpoint
    assert int(address.rsplit(":", 1)[1].split("/")[0]) in sink_ports


@pytest.mark.parametrize("overlay", ["stdout", "ha", "namespaced"])
def test_other_overlays_open_nothing_more(overlay):
    ov = ROOT / "overlays" / overlay
    assert not (ov / "networkpolicy.yaml").exists()
    assert "networkpolicy.yaml" not in (ov / "kustomization.yaml").read_text()
