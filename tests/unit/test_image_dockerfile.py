"""The Dockerfile, requirements.lock and deploy/kustomize agree, read as text (no image needed;
tests/integration/test_image.py checks the same against the built image's OCI config).
"""
from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BASE = ROOT / "deploy" / "kustomize" / "base"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(ln for ln in DOCKERFILE.splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in text.splitlines() if ln.strip()]


def container() -> dict:
    (dep,) = [d for d in yaml.safe_load_all((BASE / "deployment.yaml").read_text()) if d and d["kind"] == "Deployment"]
    return dep["spec"]["template"]["spec"]["containers"][0]


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not set(version) & set("<>=!~*, "), f"not an exact pin: {line!r}"
            pins[canon(name)] = version
    return pins


def test_version_label_default_matches_the_package_and_the_kustomization():
    args = dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)
    assert args["VERSION"] == PROJECT["version"]
    (img,) = yaml.safe_load((BASE / "kustomization.yaml").read_text())["images"]
    assert img["newTag"] == PROJECT["version"]


def test_default_base_is_the_official_slim_python_of_a_supported_version():
    args = dict(a.split("=", 1) for i, a in instructions() if i == "ARG" and "=" in a)
    m = re.fullmatch(r"python:(\d+\.\d+\.\d+)-slim-(\w+)", args["PYTHON_IMAGE"])
    assert m, args["PYTHON_IMAGE"]
    floor = PROJECT["requires-python"].removeprefix(">=")
    assert Version(m.group(1)) >= Version(floor)
    froms = [a for i, a in instructions() if i == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]  # both stages, one base


def test_user_port_entrypoint_match_the_deployment():
    ins = instructions()
    c = container()
    (user,) = [a for i, a in ins if i == "USER"]
    assert user == f"{c['securityContext']['runAsUser']}:{c['securityContext']['runAsGroup']}"
    (expose,) = [a for i, a in ins if i == "EXPOSE"]
    assert [int(expose)] == [p["containerPort"] for p in c["ports"]]
    (entry,) = [a for i, a in ins if i == "ENTRYPOINT"]
    (cmd,) = [a for i, a in ins if i == "CMD"]
    assert yaml.safe_load(entry) == ["kube-event-exporter"] and "command" not in c
    assert yaml.safe_load(cmd) == c["args"]


def test_dockerignore_admits_everything_the_dockerfile_copies():
    rules = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]

    def admitted(path: str) -> bool:
        ok = True
        for rule in rules:
            neg = rule.startswith("!")
            pat = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
                ok = neg
        return ok
    sources = [s for i, a in instructions() if i == "COPY" and not a.startswith("--from")
               for s in a.split()[:-1]]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert admitted(src), f"{src} is copied by the Dockerfile but excluded by .dockerignore"


def test_lock_pins_every_dependency_exactly_within_pyproject():
    pins = lock()
    for dep in PROJECT["dependencies"]:
        req = Requirement(dep)
        assert canon(req.name) in pins, f"{req.name} is not in requirements.lock"
        assert req.specifier.contains(pins[canon(req.name)], prereleases=True), (dep, pins[canon(req.name)])


def test_dockerfile_installs_with_the_lock():
    runs = " ".join(a for i, a in instructions() if i == "RUN")
    assert "-c requirements.lock" in runs
    assert "not pinned by requirements.lock" in runs  # the build fails on an unpinned package
