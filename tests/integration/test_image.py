"""The container image, built (scripts/image) and run for real, as the Deployment runs it.

- the built image's OCI config agrees with deploy/kustomize: user 65532 = runAsUser/runAsGroup,
  the exposed port = the container port = server.listen's port, entrypoint + the Deployment's
  args = `kube-event-exporter run`, its working directory is on a volume the pod mounts, its
  version label and tag = the package version = the kustomization's newTag;
- the overlays apply with the image reference the build produced, and the pods get it;
- the image is clean: no compiler, pip, ensurepip or bundled wheels, no build-time pip.conf
  or CA bundle of the build machine, nothing in /root, non-root by default;
- it runs under the pod's security context (uid 65532, read-only root filesystem, all
  capabilities dropped, no new privileges, /tmp the only writable volume) against the real
  apiserver with the ServiceAccount's in-cluster credentials and the shipped config.yaml:
  exports Events to stdout, checkpoints (ConfigMap, or a file on the /tmp volume),
  answers /healthz and /readyz, exits 0 on SIGTERM.

Marker `image`: scripts/image builds on first use (~5 min cold, seconds cached).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import tomllib
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.components import free_port, wait_until
from tests.support.events import core_event, create, v1_event
from tests.support.exporter_proc import Exporter, ids
from tests.support.image import BUILD_TIMEOUT, Image, podman_base, ulimit_args

# the first test also waits for a cold build (scripts/image, up to BUILD_TIMEOUT)
pytestmark = [pytest.mark.image, pytest.mark.timeout(BUILD_TIMEOUT + 600)]

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZE = ROOT / "deploy" / "kustomize"
BASE = KUSTOMIZE / "base"
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
LICENSE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]
PUBLISHED = "ghcr.io/example/kube-event-exporter"  # the name the manifests use
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CHECKPOINT_NAME = "kube-event-exporter-checkpoint"


@pytest.fixture(scope="module")
def image() -> Image:
    return Image.build()


def deployment() -> dict:
    (dep,) = [d for d in yaml.safe_load_all((BASE / "deployment.yaml").read_text()) if d and d["kind"] == "Deployment"]
    return dep


def pod_and_container(dep: dict) -> tuple[dict, dict]:
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    return pod, c


# --- the image and the manifests agree ------------------------------------------------------

def test_image_config_matches_what_the_deployment_needs(image):
    cfg = image.config()
    pod, c = pod_and_container(deployment())
    # user: the image's default user is the one the pod runs as (and not root)
    uid, gid = cfg["User"].split(":")
    assert (int(uid), int(gid)) == (c["securityContext"]["runAsUser"], c["securityContext"]["runAsGroup"])
    assert (int(uid), int(gid)) == (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"])
    assert int(uid) != 0 and c["securityContext"]["runAsNonRoot"] is True
    # command: the Deployment keeps the image's entrypoint and passes its own args
    assert "command" not in c, "a command in the Deployment would bypass the image's entrypoint"
    assert cfg["Entrypoint"] == ["kube-event-exporter"]
    assert c["args"] == cfg["Cmd"] == ["run"]
    # port: exposed = containerPort = the port of server.listen in the shipped config
    listen = yaml.safe_load((BASE / "config.yaml").read_text())["server"]["listen"]
    ports = {p["containerPort"] for p in c["ports"]}
    assert set(cfg["ExposedPorts"]) == {f"{p}/tcp" for p in ports} == {f"{listen.rsplit(':', 1)[1]}/tcp"}
    # volumes: KEE_CONFIG lies in the config mount; the working directory and /tmp are on the
    # writable emptyDir (the root filesystem is read-only); nothing else needs writing
    env = {e["name"]: e.get("value") for e in c["env"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert str(Path(env["KEE_CONFIG"]).parent) in mounts and mounts[str(Path(env["KEE_CONFIG"]).parent)]["readOnly"]
    assert "configMap" in volumes[mounts[str(Path(env["KEE_CONFIG"]).parent)]["name"]]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert cfg["WorkingDir"] == "/tmp" and "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert not mounts["/tmp"].get("readOnly")
    # the image's environment does not fight the Deployment's
    image_env = dict(e.split("=", 1) for e in cfg["Env"])
    assert image_env["PATH"].startswith("/venv/bin:")
    assert image_env.get("PYTHONDONTWRITEBYTECODE") == "1"  # nothing tries to write .pyc files
    assert not set(image_env) & set(env), "the Deployment overrides an image variable"


def test_image_labels_and_tag_carry_the_package_version(image):
    labels = image.config()["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION == image.tag
    assert labels["org.opencontainers.image.licenses"] == LICENSE
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert labels["org.opencontainers.image.title"] == "kube-event-exporter"
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    (img,) = kust["images"]
    assert img["name"] == PUBLISHED and img["newTag"] == VERSION


def test_overlays_apply_with_the_built_image_reference(image, control_plane, tmp_path):
    cp = control_plane
    cp.kubectl("apply", "-k", str(KUSTOMIZE / "namespace"))
    for overlay in ("stdout", "ha"):
        d = tmp_path / overlay
        d.mkdir()
        (d / "kustomization.yaml").write_text(json.dumps({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "resources": [os.path.relpath(KUSTOMIZE / "overlays" / overlay, d)],
            "images": [{"name": PUBLISHED, "newName": image.name, "newTag": image.tag}]}))
        built = [x for x in yaml.safe_load_all(cp.kubectl("kustomize", str(d)).stdout) if x]
        (dep,) = [x for x in built if x["kind"] == "Deployment"]
        assert pod_and_container(dep)[1]["image"] == image.ref
        dry = cp.kubectl("apply", "-k", str(d), "--dry-run=server")
        assert "violate PodSecurity" not in dry.stderr, dry.stderr
        cp.kubectl("apply", "-k", str(d))
        live = cp.kubectl_json("get", "deployment", "kube-event-exporter", "-n", "kube-event-exporter")
        assert pod_and_container(live)[1]["image"] == image.ref, overlay

    # the pods (run by KWOK's fake kubelets) are created with that reference
    def pods_with_ref():
        pods = cp.kubectl_json("get", "pods", "-n", "kube-event-exporter",
                               "-l", "app.kubernetes.io/name=kube-event-exporter")["items"]
        return [p for p in pods if p["spec"]["containers"][0]["image"] == image.ref]
    wait_until(pods_with_ref, 60, f"a pod with image {image.ref}")
    cp.kubectl("scale", "deployment", "kube-event-exporter", "-n", "kube-event-exporter", "--replicas=0")


# --- the image is small and clean -----------------------------------------------------------

def test_image_has_no_build_tools_installers_or_build_secrets(image):
    with image.rootfs() as root:
        for tool in ("gcc", "cc", "c++", "g++", "make", "ld", "as", "pip", "pip3", "apt", "apt-get"):
            for d in ("usr/bin", "usr/local/bin", "venv/bin"):
                assert not (root / d / tool).exists(), f"/{d}/{tool} is in the image"
        site = list((root / "venv" / "lib").glob("python3*/site-packages"))
        assert len(site) == 1
        assert (site[0] / "exporter" / "schemas" / "config.schema.json").is_file()  # a file, not a link
        for gone in ("pip", "setuptools", "wheel", "aiohttp", "kubernetes/aio"):
            assert not (site[0] / gone).exists(), f"{gone} is in the venv"
        for pattern in ("usr/lib/python3*/ensurepip", "usr/local/lib/python3*/ensurepip"):
            assert not list(root.glob(pattern)), pattern
        assert not (root / "usr/share/python-wheels").exists()
        assert not list(root.glob("usr/local/lib/python3*/site-packages/pip"))
        # what the build mounted (pip.conf, this machine's CA bundle) stayed out of the image
        for leftover in ("etc/pip.conf", "run/secrets", "root/.cache", "src", "wheels"):
            assert not (root / leftover).exists(), f"/{leftover} is in the image"
        image_ca = root / "etc/ssl/certs/ca-certificates.crt"
        assert image_ca.exists()
        with image.base_rootfs() as base:  # the base's own bundle, not the build machine's
            assert image_ca.read_bytes() == (base / "etc/ssl/certs/ca-certificates.crt").read_bytes()
        for pem in list(root.glob("venv/**/*.pem")) + list(root.glob("etc/**/*.key")):
            assert b"PRIVATE KEY" not in pem.read_bytes(), pem
        # bytecode is precompiled: the read-only root filesystem could not cache it
        assert list((site[0] / "exporter").glob("__pycache__/*.pyc"))


def test_image_size_stays_small(image):
    uncompressed, compressed = image.sizes()
    print(f"{image.ref}: {uncompressed / 1e6:.0f} MB uncompressed, {compressed / 1e6:.0f} MB compressed")
    # measured 2026-12-02 with the local Debian base: see docs/image.md. A guard against
    # regressions (build tools, caches or a second copy of the venv in the final stage).
    assert compressed < 90e6, compressed
    assert uncompressed < 260e6, uncompressed


def test_image_runs_as_non_root_by_default_and_reports_its_version(image):
    r = subprocess.run([*podman_base(), "run", "--rm", "--network", "none", *ulimit_args(), image.ref, "--version"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"kube-event-exporter {VERSION}"
    r = subprocess.run([*podman_base(), "run", "--rm", "--network", "none", "--entrypoint", "python3", *ulimit_args(),
                        image.ref, "-c", "import os; print(os.getuid(), os.getgid())"],
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["65532", "65532"], r.stderr


# --- the image runs like the pod, against the real apiserver ---------------------------------

class ContainerExporter(Exporter):
    """The exporter in the image under podman; records from stdout, logs (stderr) to a file."""

    def __init__(self, image: Image, log_path: Path, options: list[str], args: list[str]) -> None:
        self.args = args
        self.read_delay = 0.0
        self.log_path = log_path
        self.records: list[dict] = []
        self.invalid: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._log = open(log_path, "ab")
        self.name = f"kee-image-test-{uuid.uuid4().hex[:8]}"
        self.proc = image.podman_run(*args, options=["--name", self.name, *options],
                                     stdout=subprocess.PIPE, stderr=self._log)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def stop(self) -> None:
        subprocess.run([*podman_base(), "rm", "--force", "--time", "0", self.name], capture_output=True, timeout=60)
        super().stop()


def install_base(cp, tmp_path: Path, namespace: str) -> str:
    """The base's ServiceAccount and RBAC in `namespace` (no pod: replicas 0); its name."""
    prefix = f"i{namespace[-5:]}-"
    d = tmp_path / "kust"
    d.mkdir()
    (d / "kustomization.yaml").write_text(json.dumps({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "namespace": namespace, "namePrefix": prefix, "resources": [os.path.relpath(BASE, d)],
        "patches": [{"target": {"kind": "Deployment"},
                     "patch": json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 0}])}]}))
    cp.kubectl("apply", "-k", str(d))
    return prefix + "kube-event-exporter"


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def checkpoint_in_configmap(cp, namespace: str) -> str | None:
    status, raw = cp.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{CHECKPOINT_NAME}")
    if status != 200:
        return None
    streams = json.loads(json.loads(raw)["data"]["checkpoint.json"])["streams"]
    return next(iter(streams.values()))["resource_version"] if streams else None


@pytest.mark.parametrize("store", ["configmap", "file"])
def test_image_runs_under_the_pod_security_context_and_exports(image, control_plane, namespace, tmp_path, store):
    cp = control_plane
    sa = install_base(cp, tmp_path, namespace)
    # what the kubelet would mount: the ServiceAccount's credentials, the config, an emptyDir
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(cp.service_account_token(namespace, sa, create=False))
    shutil.copy(cp.ca_path, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(namespace)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shutil.copy(BASE / "config.yaml", config_dir / "config.yaml")
    for p in (sa_dir, config_dir):
        for f in [p, *p.iterdir()]:
            f.chmod(0o755 if f.is_dir() else 0o644)
    tmp_volume = tmp_path / "tmp-volume"
    tmp_volume.mkdir()
    os.chown(tmp_volume, 65532, 65532)  # fsGroup 65532
    port = free_port()
    host, api_port = cp.server.removeprefix("https://").rsplit(":", 1)
    env = {"KEE_CONFIG": "/etc/kube-event-exporter/config.yaml", "POD_NAMESPACE": namespace,
           "POD_NAME": f"exporter-{store}", "KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": api_port,
           # host network in the test: a free loopback port instead of 0.0.0.0:8080
           "KEE__SERVER__LISTEN": f"127.0.0.1:{port}", "KEE__CHECKPOINT__INTERVAL_SECONDS": "0.5"}
    if store == "file":
        env |= {"KEE__CHECKPOINT__STORE": "file", "KEE__CHECKPOINT__PATH": "/tmp/checkpoint/checkpoint.json"}
    options = ["--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
               "--user", "65532:65532",
               "-v", f"{sa_dir}:{SA_DIR}:ro", "-v", f"{config_dir}:/etc/kube-event-exporter:ro",
               "-v", f"{tmp_volume}:/tmp"]
    for k, v in env.items():
        options += ["-e", f"{k}={v}"]
    exp = ContainerExporter(image, tmp_path / "exporter.log", options, ["run"])
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/healthz") == 200, 120, "/healthz 200")
        made = [create(cp, core_event(namespace, message=f"c{i}")) for i in range(3)]
        made += [create(cp, v1_event(namespace, note=f"v{i}")) for i in range(3)]
        want = {(m["metadata"]["uid"], m["metadata"]["resourceVersion"]) for m in made}
        exp.wait_for(lambda r: want <= set(ids(r)), 60, "the 6 events on stdout")
        assert not exp.invalid, exp.invalid[:3]
        wait_until(lambda: get(f"http://127.0.0.1:{port}/readyz") == 200, 30, "/readyz 200")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            assert b"kee_" in r.read()
        max_rv = max((m["metadata"]["resourceVersion"] for m in made), key=lambda v: (len(v), v))
        ckpt = tmp_volume / "checkpoint" / "checkpoint.json"

        def saved() -> str | None:
            if store == "configmap":
                return checkpoint_in_configmap(cp, namespace)
            if not ckpt.exists():
                return None
            streams = json.loads(ckpt.read_text())["streams"]
            return next(iter(streams.values()))["resource_version"] if streams else None
        wait_until(lambda: (rv := saved()) is not None and (len(rv), rv) >= (len(max_rv), max_rv), 30,
                   "a checkpoint covering the events")
        logs = exp.logs()
        assert any(e.get("event") for e in logs), exp.log_tail()
        assert "in-cluster" in json.dumps(logs), exp.log_tail()  # the ServiceAccount, as in a pod
        assert exp.terminate(60) == 0, exp.log_tail()
        text = exp.log_path.read_text(errors="replace")
        assert "Read-only file system" not in text and "Permission denied" not in text, exp.log_tail()
        assert not [e for e in exp.logs() if e.get("level") in ("error", "critical")], exp.log_tail()
        # the only writes went to the /tmp volume, as 65532; with the ConfigMap store, none at all
        written = sorted(str(p.relative_to(tmp_volume)) for p in tmp_volume.rglob("*") if p.is_file())
        if store == "file":
            assert written == ["checkpoint/checkpoint.json"], written
            assert ckpt.stat().st_uid == 65532
            final = json.loads(ckpt.read_text())["streams"]
            assert all((len(s["resource_version"]), s["resource_version"]) >= (len(max_rv), max_rv)
                       for s in final.values())
        else:
            assert written == [], written
    finally:
        exp.stop()
