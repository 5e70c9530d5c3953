"""pytest fixtures: one real control plane per session, a namespace and a chart install per test.

``control_plane`` starts etcd + kube-apiserver + kube-controller-manager once and installs
every CRD (the chart's, and the small ones in ``crds/`` for what the operator writes into
other projects' resources) with ``kubectl apply --server-side``. ``chart`` renders the Helm
chart with the real Helm engine into the test's namespace and applies it the same way;
``operator_kubeconfig`` authenticates as the chart's ServiceAccount through a TokenRequest
token, so the operator has exactly the chart's RBAC.

Missing binaries skip with the command that builds them; CI builds them first
(``.ci/run``), and under KUBEREC_STRICT_SKIPS=1 a skip fails the run.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.support.paths import ROOT

from .cluster import RealCluster
from .controlplane import ControlPlane, ControlPlaneUnavailable, binaries, request_token

CHART = ROOT / "helm" / "kuberec"
TEST_CRDS = Path(__file__).resolve().parent / "crds"
_namespaces = itertools.count(1)


def crd_files() -> list[Path]:
    return sorted((CHART / "crds").glob("*.yaml")) + sorted(TEST_CRDS.glob("*.yaml"))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    try:
        bin_dir = binaries()
    except ControlPlaneUnavailable as exc:
        pytest.skip(f"no kube-apiserver/etcd built: {exc}")
    plane = ControlPlane(bin_dir, tmp_path_factory.mktemp("envtest")).start()
    try:
        admin = RealCluster(plane.admin_kubeconfig)
        args = [a for path in crd_files() for a in ("-f", str(path))]
        admin.kubectl("apply", "--server-side", "--field-manager=kuberec-tests", *args)
        admin.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        admin.close()
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def cluster(control_plane: ControlPlane) -> Iterator[RealCluster]:
    """A fresh namespace of the shared control plane, as its admin sees it."""
    namespace = f"t{next(_namespaces)}"
    view = RealCluster(control_plane.admin_kubeconfig, namespace)
    view.kubectl("create", "namespace", namespace)
    try:
        yield view
    finally:
        view.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        view.close()


@dataclass(frozen=True)
class ChartInstall:
    release: str
    namespace: str
    manifests: list[dict[str, Any]]

    @property
    def service_account(self) -> str:
        return self.release


def render_chart(release: str, namespace: str,
                 values: dict[str, Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    rendered = helm.Chart.load(CHART).render(values, name=release, namespace=namespace,
                                             is_install=True)  # fmt: skip
    return [doc for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]  # fmt: skip


def install_chart(cluster: RealCluster, values: dict[str, Any] | None = None) -> ChartInstall:
    """``helm template`` (real engine) piped into ``kubectl apply --server-side``."""
    release = f"kuberec-{cluster.namespace}"  # cluster-scoped names stay apart per test
    manifests = render_chart(release, cluster.namespace, values)
    cluster.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-",
                    input_text=yaml.safe_dump_all(manifests))  # fmt: skip
    return ChartInstall(release, cluster.namespace, manifests)


@pytest.fixture
def chart(cluster: RealCluster) -> ChartInstall:
    return install_chart(cluster)


@pytest.fixture
def operator_kubeconfig(control_plane: ControlPlane, cluster: RealCluster, chart: ChartInstall,
                        tmp_path: Path) -> Path:  # fmt: skip
    """A kubeconfig holding only a TokenRequest token of the chart's ServiceAccount."""
    token = request_token(cluster.api_client, chart.service_account, chart.namespace)
    return control_plane.token_kubeconfig(tmp_path / "operator.kubeconfig", token,
                                          chart.namespace)  # fmt: skip
