"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager.

What kubebuilder's envtest does, for Python: the binaries ``build.sh`` built (one pinned
release, cached), started with generated certificates, RBAC authorization, the default
admission plugins plus OwnerReferencesPermissionEnforcement, and a service-account signing
key, so TokenRequest tokens work and the operator can be run as exactly its ServiceAccount.
kube-controller-manager runs only the controllers that need no kubelet: garbage collection
(ownerReferences) and namespace deletion. No scheduler, no kubelet: pods never run.

By hand: ``python -m tests.envtest`` starts one and prints the kubeconfig path.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .pki import Pki, write_pki

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
#: Controllers that act without a kubelet; the Deployment controller stays off so the tests'
#: stand-in can report Deployments rolled out (no pod ever becomes ready here).
CONTROLLERS = "garbagecollector,namespace"


class ControlPlaneUnavailable(RuntimeError):
    """The binaries are not built, or a component did not come up (its log tail attached)."""


def binaries(build: bool = False) -> Path:
    """The folder holding the three binaries: reused from the cache, or built when ``build``."""
    override = os.environ.get("KUBEREC_ENVTEST_BIN")
    if override:
        return Path(override)
    args = ["bash", str(BUILD_SCRIPT)] + ([] if build else ["--check"])
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise ControlPlaneUnavailable(done.stderr.strip().splitlines()[-1] if done.stderr
                                      else f"{BUILD_SCRIPT} exited {done.returncode}")  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@dataclass
class ControlPlane:
    bin_dir: Path
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kuberec-envtest-")))
    keep_workdir: bool = False  # logs and etcd data stay after stop (a folder given by hand)
    pki: Pki | None = None
    port: int = 0
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    def start(self, timeout: float = 120.0) -> ControlPlane:
        self.pki = write_pki(self.workdir / "pki")
        etcd_port, peer_port, self.port = _free_port(), _free_port(), _free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn("etcd", [
            "--name=envtest", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=envtest=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--listen-metrics-urls=",
        ])  # fmt: skip
        pki = self.pki
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki.server_cert}", f"--tls-private-key-file={pki.server_key}",
            f"--client-ca-file={pki.ca_cert}", "--authorization-mode=RBAC",
            # on top of the defaults: setting blockOwnerDeletion needs update on the owner's
            # finalizers subresource, as on hardened clusters
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
        ])  # fmt: skip
        self._write_kubeconfig(self.admin_kubeconfig, {
            "client-certificate-data": _b64(pki.admin_cert),
            "client-key-data": _b64(pki.admin_key),
        })  # fmt: skip
        self._wait_ready(timeout)
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={self.admin_kubeconfig}", f"--controllers={CONTROLLERS}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--root-ca-file={pki.ca_cert}", "--leader-elect=false",
            f"--secure-port={_free_port()}", "--bind-address=127.0.0.1",
            "--concurrent-gc-syncs=5",
        ])  # fmt: skip
        return self

    def stop(self) -> None:
        for name in reversed(list(self._processes)):
            process = self._processes.pop(name)
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def alive(self) -> bool:
        return all(p.poll() is None for p in self._processes.values())

    # --- kubeconfigs -----------------------------------------------------------------------------

    def token_kubeconfig(self, path: Path, token: str, namespace: str = "default") -> Path:
        """A kubeconfig that authenticates with ``token`` only (a ServiceAccount's)."""
        return self._write_kubeconfig(path, {"token": token}, namespace)

    def _write_kubeconfig(self, path: Path, user: dict[str, str],
                          namespace: str = "default") -> Path:  # fmt: skip
        assert self.pki is not None
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "envtest",
            "clusters": [{"name": "envtest", "cluster": {
                "server": self.url, "certificate-authority-data": _b64(self.pki.ca_cert)}}],
            "users": [{"name": "envtest", "user": user}],
            "contexts": [{"name": "envtest", "context": {
                "cluster": "envtest", "user": "envtest", "namespace": namespace}}],
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    # --- processes -------------------------------------------------------------------------------

    def _spawn(self, name: str, args: list[str]) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self._processes[name] = subprocess.Popen(
                [str(self.bin_dir / name), *args], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

    def _wait_ready(self, timeout: float) -> None:
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self._processes.items():
                if process.poll() is not None:
                    tail = self.log(name, 800)
                    self.stop_quietly()
                    raise ControlPlaneUnavailable(f"{name} exited {process.returncode}: {tail}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(
                    f"{self.url}/readyz", context=context, timeout=5
                ) as response,
            ):
                if response.status == 200:
                    return
            last = self.log("kube-apiserver", 800)
            time.sleep(0.5)
        self.stop_quietly()
        raise ControlPlaneUnavailable(f"kube-apiserver not ready after {timeout:.0f}s: {last}")

    def stop_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()


def request_token(api_client: Any, name: str, namespace: str, seconds: int = 3600) -> str:
    """A token for ServiceAccount ``name`` from the TokenRequest API (what a kubelet mounts)."""
    from kubernetes import client

    body = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    made = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        name, namespace, body
    )
    return str(made.status.token)
