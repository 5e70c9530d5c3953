"""What the operator tests run beside the real operator: stand-ins for what cannot run here.

* ``PrometheusStandIn``: ``/api/v1/query`` answering kuberec's per-version
  queries with numbers a test sets (no Prometheus server can run here);
* ``DeploymentController``: marks Deployments rolled out in the emulator, as
  kube-controller-manager would (the emulator stores objects, runs no pods);
* ``OperatorProcess``: ``kuberec operator run`` as a subprocess on loopback;
* ``finish_run``: what a KFP run's package step leaves (``result.json``) plus
  the run's state in the KFP stand-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kuberec.api.spec import RecommenderJob, spec_hash
from kuberec.pipelines.context import local_path, run_result_uri
from tests.k8s_emulator import KubeEmulator
from tests.support.jobs import JOBS, job_document
from tests.support.kfp_standin import KfpStandIn
from tests.support.paths import ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.1) -> Any:  # fmt: skip
    """Poll until ``predicate()`` is truthy; its value, or AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- Prometheus ---------------------------------------------------------------------------------


@dataclass
class Traffic:
    requests: float = 0.0
    errors: float = 0.0
    p95_s: float | None = None
    impressions: float = 0.0
    clicks: float = 0.0


@dataclass
class PrometheusStandIn:
    """Answers instant queries with the ``Traffic`` set per model version."""

    traffic: dict[str, Traffic] = field(default_factory=dict)
    unavailable: bool = False
    queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _prometheus_handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PrometheusStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, query: str) -> tuple[int, dict[str, Any]]:
        self.queries.append(query)
        if self.unavailable:
            return 503, {"status": "error", "errorType": "unavailable", "error": "down"}
        match = re.search(r'model_version=~"([^"]*)"', query)
        pattern = json.loads(f'"{match.group(1)}"') if match else ".*"
        field_name = _field_of(query)
        result = []
        for version, traffic in self.traffic.items():
            value = getattr(traffic, field_name)
            if value is None or not re.fullmatch(pattern, version):
                continue
            result.append({"metric": {"model_version": version},
                           "value": [time.time(), str(value)]})  # fmt: skip
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def _field_of(query: str) -> str:
    if query.startswith("histogram_quantile"):
        return "p95_s"
    if 'event="impression"' in query:
        return "impressions"
    if 'event="click"' in query:
        return "clicks"
    return "errors" if 'status=~"5.."' in query else "requests"


def _prometheus_handler(standin: PrometheusStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path != "/api/v1/query":
                code, payload = 404, {"status": "error", "error": "not found"}
            else:
                code, payload = standin.answer(parse_qs(parsed.query)["query"][0])
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


# --- the Deployment controller ------------------------------------------------------------------


class DeploymentController:
    """Marks every Deployment rolled out (all replicas ready), like kube-controller-manager."""

    def __init__(self, emulator: KubeEmulator, interval: float = 0.1) -> None:
        self.emulator = emulator
        self.interval = interval
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> DeploymentController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.paused or not self.emulator.running:
                continue
            for item in self.emulator.list("apps/v1", "Deployment"):
                self._roll_out(item)

    def _roll_out(self, item: dict[str, Any]) -> None:
        meta, status = item["metadata"], item.get("status") or {}
        replicas = item["spec"].get("replicas", 1)
        want = {"observedGeneration": meta.get("generation", 1), "replicas": replicas,
                "updatedReplicas": replicas, "readyReplicas": replicas,
                "availableReplicas": replicas}  # fmt: skip
        if all(status.get(k) == v for k, v in want.items()):
            return
        with contextlib.suppress(Exception):  # deleted meanwhile: the next sweep sees the truth
            self.emulator.set_status("apps/v1", "Deployment", meta["name"], want,
                                     meta["namespace"])  # fmt: skip


# --- the operator process -----------------------------------------------------------------------


class OperatorProcess:
    """``kuberec operator run`` against the emulator or a real API server, its log in a file."""

    def __init__(self, kubeconfig: Path, workdir: Path, env: dict[str, str],
                 args: tuple[str, ...] = (), peering: str | None = None,
                 namespace: str = "default") -> None:  # fmt: skip
        self.peering = peering
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.log_path = workdir / f"operator-{time.monotonic_ns()}.log"
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.env = env
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        command = [
            sys.executable, "-m", "kuberec.cli",
            *(["-v"] if os.environ.get("KUBEREC_TEST_OPERATOR_DEBUG") else []),
            "operator", "run", "--namespace", self.namespace,
            f"--peering={self.peering}" if self.peering else "--standalone",
            f"--metrics-port={self.metrics_port}",
            f"--liveness=http://127.0.0.1:{self.health_port}/healthz", *self.args,
        ]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "OMP_NUM_THREADS": "1",
               **self.env}  # fmt: skip
        env.pop("KUBERNETES_SERVICE_HOST", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env=env, cwd=ROOT)  # fmt: skip
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_started(self, timeout: float = 120.0) -> OperatorProcess:
        """Until kopf's liveness endpoint answers: logged in, watches started (imports alone
        take tens of seconds on a busy machine)."""
        wait_for(lambda: self.get("/healthz", self.health_port)[0] == 200, timeout=timeout,
                 what="the operator's liveness endpoint")  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, port: int | None = None) -> tuple[int, str]:
        url = f"http://127.0.0.1:{port or self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status, response.read().decode()
        except OSError as exc:
            return 0, str(exc)


# --- jobs and runs ------------------------------------------------------------------------------


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "data": {"movielens": "ml-100k"},
        "training": {"backend": "local", "epochs": 2},
        "serving": {"replicas": 2, "canary": {
            "steps": [50, 100], "interval": "1s",
            "analysis": {"minSamples": 10, "maxErrorRate": 0.05, "maxP95LatencyMs": 200,
                         "minClickThroughRatio": 0.5},
        }},
    }  # fmt: skip
    body.update(spec)
    return job_document(name, body, namespace="default")


def stored_job(emulator: KubeEmulator, name: str) -> dict[str, Any]:
    return emulator.get(*JOBS, name) or {}


def status_of(emulator: KubeEmulator, name: str) -> dict[str, Any]:
    return dict(stored_job(emulator, name).get("status") or {})


def typed_job(emulator: KubeEmulator, name: str) -> RecommenderJob:
    stored = stored_job(emulator, name)
    return RecommenderJob.model_validate(
        {k: stored[k] for k in ("apiVersion", "kind", "metadata", "spec")}
    )


def phase_is(cluster: KubeEmulator, name: str, phase: str) -> Callable[[], Any]:
    """A ``wait_for`` predicate: the job's status once its phase is ``phase``."""

    def check() -> Any:
        status = status_of(cluster, name)
        return status if status.get("phase") == phase else None

    return check


def one_run(kfp: KfpStandIn, name: str, count: int = 1) -> dict[str, Any]:
    """The newest KFP run of job ``name`` once it has ``count`` of them."""
    runs = wait_for(lambda: len(runs_of(kfp, name)) >= count and runs_of(kfp, name),
                    what=f"{count} run(s) of {name}")  # fmt: skip
    return dict(runs[-1])


def runs_of(kfp: KfpStandIn, name: str) -> list[dict[str, Any]]:
    return [r for r in list(kfp.runs.values()) if r["display_name"].startswith(f"{name}-")]


def run_key(run: dict[str, Any]) -> str:
    context = run["runtime_config"]["parameters"]["context"]
    return str(json.loads(context if isinstance(context, str) else json.dumps(context))["run_key"])


def finish_run(kfp: KfpStandIn, emulator: KubeEmulator, name: str, run: dict[str, Any],
               artifact_root: str, *, version: str, ndcg: float, accepted: bool = True,
               champion: float | None = None) -> None:  # fmt: skip
    """The package step's ``result.json`` (as pipelines/steps.py writes it), then SUCCEEDED."""
    job = typed_job(emulator, name)
    key = run_key(run)
    result = {
        "runKey": key,
        "model": {
            "version": version, "uri": f"{artifact_root}/default/{name}/models/{version}",
            "modelType": "ease_t", "metrics": {"ndcg@10": ndcg},
            "lineage": {"specHash": spec_hash(job.spec), "datasetDigest": "unobserved",
                        "interactions": 100000, "pipelineRun": run["run_id"],
                        "codeVersion": "test", "trainedAt": "2026-01-01T00:00:00+00:00"},
        },
        "decision": {"accepted": accepted, "reasons": [f"ndcg@10 {ndcg}"], "metric": "ndcg@10",
                     "challenger": ndcg, "champion": champion},
    }  # fmt: skip
    path = local_path(run_result_uri(artifact_root, job, key))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    kfp.set_state(run["run_id"], "SUCCEEDED")


#: What installing the KubeRay operator adds to a cluster, as far as the kuberec operator can
#: tell: the ray.io/v1 RayCluster resource (its real schema is KubeRay's business).
KUBERAY_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rayclusters.ray.io"},
    "spec": {
        "group": "ray.io",
        "names": {"kind": "RayCluster", "listKind": "RayClusterList", "plural": "rayclusters",
                  "singular": "raycluster"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}  # fmt: skip


def install_kuberay(emulator: KubeEmulator) -> None:
    emulator.load_crd(KUBERAY_CRD)
