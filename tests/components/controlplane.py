"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and KWOK.

Why this exists: the exporter's promises (resume from a resourceVersion, 410
Gone handling, RBAC sufficiency, real event shapes) are only believable
against the real apiserver. With the controller-manager, the scheduler and
KWOK (fake nodes whose pods become Running without kubelets), creating a
Deployment yields genuine ScalingReplicaSet / SuccessfulCreate / Scheduled /
FailedScheduling events - no hand-written Event objects.

Authentication: one CA (`ca_path`) signs the apiserver's serving cert and an
admin client cert (O=system:masters); a static token file also holds the
admin token (`admin_token`). Authorization is RBAC only, so ServiceAccount
tokens (`service_account_token()`, TokenRequest API) see real 403s.
"""
from __future__ import annotations

import json
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

from .paths import binary, kwok_stages, new_workdir
from .proc import ComponentError, ManagedProcess, free_port, run, wait_until
from .tls import CA, rsa_keypair

SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager, scheduler, KWOK), see the module docstring.

    Attributes: server (https URL), ca_path, admin_token, kubeconfig (admin, client cert),
    token_kubeconfig (admin, bearer token), etcd_endpoint, dir, event_ttl.
    """

    def __init__(self, workdir: Path | None = None, *, controller_manager: bool = True, scheduler: bool = True,
                 kwok: bool = True, event_ttl: str = "1h", apiserver_args: Iterable[str] = (),
                 watch_cache: bool = True, kcm_args: Iterable[str] = ()):
        self.etcd_bin, self.etcdctl_bin = binary("etcd"), binary("etcdctl")
        self.apiserver_bin, self.kubectl_bin = binary("kube-apiserver"), binary("kubectl")
        self.kcm_bin = binary("kube-controller-manager") if controller_manager else None
        self.scheduler_bin = binary("kube-scheduler") if scheduler else None
        self.kwok_bin = binary("kwok") if kwok else None
        self.kwok_config = kwok_stages() if kwok else None
        self.dir = Path(workdir) if workdir else new_workdir("kube")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.event_ttl = event_ttl
        self.ports = {n: free_port() for n in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kwok")}
        self.etcd_endpoint = f"http://127.0.0.1:{self.ports['etcd']}"
        self.server = f"https://127.0.0.1:{self.ports['apiserver']}"
        self.admin_token = uuid.uuid4().hex
        self.admin_user = "kee-admin"
        self._make_pki()
        self.kubeconfig = self.write_kubeconfig(self.dir / "admin.kubeconfig", cert=self.admin_cert,
                                                key=self.admin_key, user=self.admin_user)
        self.token_kubeconfig = self.kubeconfig_for_token(self.admin_token, self.dir / "admin-token.kubeconfig",
                                                          user=self.admin_user)
        self.etcd = ManagedProcess("etcd", self._etcd_argv(), self.dir / "etcd.log")
        self.apiserver = ManagedProcess("kube-apiserver", self._apiserver_argv(list(apiserver_args), watch_cache),
                                        self.dir / "kube-apiserver.log")
        self.controller_manager = (ManagedProcess("kube-controller-manager", self._kcm_argv() + list(kcm_args),
                                                  self.dir / "kube-controller-manager.log")
                                   if controller_manager else None)
        self.scheduler = (ManagedProcess("kube-scheduler", self._scheduler_argv(), self.dir / "kube-scheduler.log")
                          if scheduler else None)
        self.kwok = ManagedProcess("kwok", self._kwok_argv(), self.dir / "kwok.log") if kwok else None

    # -- files ---------------------------------------------------------------------
    def _make_pki(self) -> None:
        pki = self.dir / "pki"
        self.ca = CA(pki, "kee-kube-ca")
        self.ca_path = self.ca.cert
        sans = ("DNS:localhost", "IP:127.0.0.1", "IP:10.0.0.1", "DNS:kubernetes", "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local")
        self.serving_cert, self.serving_key = self.ca.issue("apiserver", "kube-apiserver", server=True, sans=sans)
        self.admin_cert, self.admin_key = self.ca.issue("admin", self.admin_user, orgs=("system:masters",),
                                                        client=True)
        self.sa_key, self.sa_pub = rsa_keypair(pki, "sa")
        self.token_file = pki / "tokens.csv"
        self.token_file.write_text(f'{self.admin_token},{self.admin_user},{self.admin_user}-uid,"system:masters"\n')

    def write_kubeconfig(self, path: Path | str, *, token: str | None = None, cert: Path | None = None,
                         key: Path | None = None, user: str = "user", namespace: str | None = None) -> Path:
        """A kubeconfig file for this apiserver with a bearer token or a client cert."""
        u: dict = {}
        if token:
            u["token"] = token
        if cert:
            u["client-certificate"] = str(cert)
            u["client-key"] = str(key)
        ctx = {"cluster": "kee", "user": user}
        if namespace:
            ctx["namespace"] = namespace
        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "kee",
               "clusters": [{"name": "kee", "cluster": {"server": self.server,
                                                        "certificate-authority": str(self.ca_path)}}],
               "users": [{"name": user, "user": u}],
               "contexts": [{"name": "kee", "context": ctx}], "preferences": {}}
        path = Path(path)
        path.write_text(json.dumps(cfg, indent=1))  # JSON is valid YAML
        path.chmod(0o600)
        return path

    def kubeconfig_for_token(self, token: str, path: Path | str | None = None, *, user: str = "token-user",
                             namespace: str | None = None) -> Path:
        """A kubeconfig file that authenticates with `token` (e.g. a ServiceAccount token)."""
        if path is None:
            path = self.dir / f"token-{uuid.uuid4().hex[:8]}.kubeconfig"
        return self.write_kubeconfig(path, token=token, user=user, namespace=namespace)

    # -- argv ----------------------------------------------------------------------
    def _etcd_argv(self) -> list:
        p = self.ports
        peer = f"http://127.0.0.1:{p['etcd-peer']}"
        return [self.etcd_bin, "--name=kee", f"--data-dir={self.dir / 'etcd-data'}",
                f"--listen-client-urls={self.etcd_endpoint}", f"--advertise-client-urls={self.etcd_endpoint}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=kee={peer}", "--unsafe-no-fsync=true", "--log-level=warn",
                "--quota-backend-bytes=4294967296"]

    def _apiserver_argv(self, extra: list, watch_cache: bool) -> list:
        args = [self.apiserver_bin, f"--etcd-servers={self.etcd_endpoint}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}", f"--cert-dir={self.dir / 'apiserver-certs'}",
                f"--tls-cert-file={self.serving_cert}", f"--tls-private-key-file={self.serving_key}",
                f"--client-ca-file={self.ca_path}", f"--token-auth-file={self.token_file}",
                "--authorization-mode=RBAC", f"--service-account-issuer={SA_ISSUER}",
                f"--service-account-key-file={self.sa_pub}", f"--service-account-signing-key-file={self.sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
                f"--event-ttl={self.event_ttl}", "--endpoint-reconciler-type=none", "--profiling=false",
                f"--watch-cache={'true' if watch_cache else 'false'}",
                # a front-proxy CA, so delegated authn in the controller-manager/scheduler is quiet
                f"--requestheader-client-ca-file={self.ca_path}", "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-", "--v=0"]
        if not self.kcm_bin:
            # no controller-manager: nobody creates the 'default' ServiceAccount of namespaces
            args.append("--disable-admission-plugins=ServiceAccount")
        return args + extra

    def _component_kubeconfig(self, name: str) -> Path:
        return self.write_kubeconfig(self.dir / f"{name}.kubeconfig", cert=self.admin_cert, key=self.admin_key,
                                     user=self.admin_user)

    def _kcm_argv(self) -> list:
        kc = self._component_kubeconfig("kube-controller-manager")
        return [self.kcm_bin, f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}", f"--cert-dir={self.dir / 'kcm-certs'}",
                "--leader-elect=false", f"--service-account-private-key-file={self.sa_key}",
                f"--root-ca-file={self.ca_path}", f"--cluster-signing-cert-file={self.ca_path}",
                f"--cluster-signing-key-file={self.ca.key}", "--v=1"]

    def _scheduler_argv(self) -> list:
        kc = self._component_kubeconfig("kube-scheduler")
        return [self.scheduler_bin, f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}", f"--cert-dir={self.dir / 'scheduler-certs'}",
                "--leader-elect=false", "--v=1"]

    def _kwok_argv(self) -> list:
        kc = self._component_kubeconfig("kwok")
        return [self.kwok_bin, f"--config={self.kwok_config}", f"--kubeconfig={kc}", "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--cidr=10.0.0.1/24", "--node-ip=10.0.0.1", "--node-lease-duration-seconds=40",
                f"--server-address=127.0.0.1:{self.ports['kwok']}"]

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> ControlPlane:
        """Start every component and wait until each is ready."""
        self.start_etcd()
        self.start_apiserver()
        for mp, _port in ((self.controller_manager, self.ports["kcm"]), (self.scheduler, self.ports["scheduler"])):
            if mp is not None:
                mp.start()
        for mp, port in ((self.controller_manager, self.ports["kcm"]), (self.scheduler, self.ports["scheduler"])):
            if mp is not None:
                wait_until(lambda port=port: _https_ok(f"https://127.0.0.1:{port}/healthz"), 60,
                           f"{mp.name} /healthz", proc=mp, interval=0.2)
        if self.controller_manager is not None:
            # the ServiceAccount controller creates 'default' in each namespace; wait for it once
            wait_until(lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                            check=False).returncode == 0, 60,
                       "the default ServiceAccount (controller-manager running)", proc=self.controller_manager)
        if self.kwok is not None:
            self.kwok.start()
            wait_until(lambda: _http_ok(f"http://127.0.0.1:{self.ports['kwok']}/healthz"), 60, "kwok /healthz",
                       proc=self.kwok, interval=0.2)
        return self

    def stop(self) -> None:
        """Stop everything (reverse order); the data directory is kept until the fixture removes it."""
        for mp in (self.kwok, self.scheduler, self.controller_manager, self.apiserver, self.etcd):
            if mp is not None:
                mp.stop(timeout=3 if mp is self.apiserver else 15)

    def start_etcd(self, timeout: float = 30) -> None:
        self.etcd.start()
        wait_until(lambda: json.loads(_http_get(f"{self.etcd_endpoint}/health")).get("health") == "true",
                   timeout, "etcd /health", proc=self.etcd)

    def stop_etcd(self) -> None:
        self.etcd.stop()

    def start_apiserver(self, timeout: float = 90) -> None:
        """Start kube-apiserver and wait for /readyz (all post-start hooks, RBAC bootstrap roles)."""
        self.apiserver.start()
        wait_until(self._apiserver_ready, timeout, "kube-apiserver /readyz", proc=self.apiserver, interval=0.2)

    def stop_apiserver(self, timeout: float = 3) -> None:
        """SIGTERM, then SIGKILL after `timeout` s: v1.36's apiserver stops its controllers and its
        listener at once on SIGTERM but then lingers well past 15 s with watches open; etcd
        holds all state, so the kill loses nothing."""
        self.apiserver.stop(timeout=timeout)

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver (its watch cache is rebuilt from etcd)."""
        self.stop_apiserver()
        self.start_apiserver()

    def _apiserver_ready(self) -> bool:
        status, body = self.request("GET", "/readyz")
        return status == 200 and body.strip() == b"ok"

    # -- HTTP ------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_path))

    def request(self, method: str, path: str, body: dict | bytes | None = None, *, token: str | None = None,
                timeout: float = 10, content_type: str = "application/json") -> tuple[int, bytes]:
        """One HTTP request to the apiserver as admin (or with `token`); returns (status, body)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str, **kw) -> dict:
        status, body = self.request("GET", path, **kw)
        if status != 200:
            raise ComponentError(f"GET {path}: {status} {body[:500]!r}")
        return json.loads(body)

    def watch_first(self, path: str, timeout: float = 10, token: str | None = None) -> tuple[int, dict | None]:
        """Open a watch (path must contain ?watch=1...) and return (HTTP status, first event or error Status).

        A too-old resourceVersion is answered either as HTTP 410 or as HTTP 200 with an
        in-stream {"type": "ERROR", "object": {"kind": "Status", "code": 410}} event."""
        req = urllib.request.Request(self.server + path)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as r:
                try:
                    line = r.readline()
                except TimeoutError:  # nothing happened within `timeout`
                    return r.status, None
                return r.status, (json.loads(line) if line.strip() else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, {"raw": raw.decode("utf-8", "replace")}

    # -- kubectl ---------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60,
                kubeconfig: Path | str | None = None):
        """Run kubectl against this apiserver as admin (or with another kubeconfig).

        Returns subprocess.CompletedProcess (text); raises ComponentError on a non-zero exit when check."""
        return run([self.kubectl_bin, f"--kubeconfig={kubeconfig or self.kubeconfig}", *args], input=input,
                   check=check, timeout=timeout)

    def kubectl_json(self, *args: str, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def apply(self, yaml_text: str, namespace: str | None = None):
        """kubectl apply -f - (as admin)."""
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", *ns, "-f", "-", input=yaml_text)

    def create_namespace(self, name: str, wait_default_sa: bool = True) -> str:
        self.kubectl("create", "namespace", name)
        if wait_default_sa and self.controller_manager is not None:
            def has_sa() -> bool:
                return self.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
            try:
                wait_until(has_sa, 20, f"ServiceAccount default in {name}", proc=self.controller_manager)
            except ComponentError:
                # Seen once in a full run after forced compactions and apiserver restarts: the
                # controller-manager alive but its serviceaccount controller no longer creating.
                # Restart it (as a kubelet would restart a stuck static pod) and wait once more.
                print(f"[controlplane] no ServiceAccount default in {name} after 20 s: restarting "
                      f"kube-controller-manager\n{self.controller_manager.tail()}", file=sys.stderr)
                self.controller_manager.stop()
                self.controller_manager.start()
                wait_until(has_sa, 45, f"ServiceAccount default in {name} (after restarting the controller-manager)",
                           proc=self.controller_manager)
        return name

    def service_account_token(self, namespace: str, name: str, audience: str | None = None,
                              duration: str = "1h", create: bool = True) -> str:
        """A token for ServiceAccount namespace/name from the TokenRequest API (kubectl create token).

        The ServiceAccount is created if missing (create=True). The default audience is the
        apiserver's (the issuer)."""
        if create and self.kubectl("get", "serviceaccount", name, "-n", namespace, check=False).returncode != 0:
            self.kubectl("create", "serviceaccount", name, "-n", namespace)
        args = ["create", "token", name, "-n", namespace, f"--duration={duration}"]
        if audience:
            args.append(f"--audience={audience}")
        return self.kubectl(*args).stdout.strip()

    # -- etcd --------------------------------------------------------------------------
    def etcdctl(self, *args: str, check: bool = True):
        return run([self.etcdctl_bin, f"--endpoints={self.etcd_endpoint}", *args], check=check, timeout=60)

    def etcd_revision(self) -> int:
        """etcd's current revision (what the apiserver calls the resourceVersion)."""
        out = json.loads(self.etcdctl("endpoint", "status", "-w", "json").stdout)
        return int(out[0]["Status"]["header"]["revision"])

    def etcd_compact(self, revision: int | None = None) -> int:
        """Compact etcd up to `revision` (default: the current one); returns the revision."""
        rev = revision if revision is not None else self.etcd_revision()
        self.etcdctl("compact", str(rev), "--physical")
        return rev

    def force_410(self) -> int:
        """Make every resourceVersion older than now answer 410 Gone, also on the events watch.

        Bumps etcd's revision twice (a ConfigMap created and deleted: a watch from RV starts
        at RV+1, which must itself be compacted), compacts etcd to the current revision and
        restarts the apiserver so its watch cache cannot serve old versions from memory.
        Returns the compaction revision C: every resourceVersion observed before this call
        (any RV < C-1) now answers 410 Gone to a watch."""
        name = f"kee-410-{uuid.uuid4().hex[:8]}"
        self.kubectl("create", "configmap", name, "-n", "default", "--from-literal=why=force_410")
        self.kubectl("delete", "configmap", name, "-n", "default")
        rev = self.etcd_compact()
        self.restart_apiserver()
        return rev

    # -- KWOK ---------------------------------------------------------------------------
    def create_kwok_nodes(self, n: int, cpu: str = "32", memory: str = "256Gi", pods: str = "110",
                          prefix: str | None = None, labels: dict | None = None, wait_ready: bool = True) -> list[str]:
        """Create `n` fake Nodes managed by KWOK (Ready, with the given allocatable) and return their names."""
        if self.kwok is None:
            raise ComponentError("this ControlPlane was started without KWOK")
        prefix = prefix or f"kwok-{uuid.uuid4().hex[:5]}"
        names = [f"{prefix}-{i}" for i in range(n)]
        res = {"cpu": cpu, "memory": memory, "pods": pods}
        items = [{"apiVersion": "v1", "kind": "Node",
                  "metadata": {"name": nm,
                               "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                               "labels": {"type": "kwok", "kubernetes.io/hostname": nm, "kubernetes.io/os": "linux",
                                          "kubernetes.io/arch": "amd64", **(labels or {})}},
                  "spec": {},
                  "status": {"allocatable": res, "capacity": res}}
                 for nm in names]
        self.kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        if wait_ready:
            def all_ready():
                got = self.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
                ready = {i["metadata"]["name"] for i in got
                         if any(c["type"] == "Ready" and c["status"] == "True"
                                for c in i.get("status", {}).get("conditions", []))}
                return set(names) <= ready
            wait_until(all_ready, 60, f"{n} KWOK nodes Ready", interval=0.3, proc=self.kwok)
        return names

    def __repr__(self) -> str:
        return f"<ControlPlane {self.server} dir={self.dir}>"


def _http_get(url: str, timeout: float = 2) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def _http_ok(url: str) -> bool:
    try:
        return _http_get(url).strip() == b"ok"
    except OSError:
        return False


def _https_ok(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False
