"""pytest fixtures: an emulator per test on a free loopback port, and a kubeconfig for it.

Import the ones a module needs (`from tests.k8s_emulator.fixtures import k8s_emulator,
k8s_kubeconfig, k8s_client`) or list this module in `pytest_plugins`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .server import KubeEmulator

CHART_CRDS = Path(__file__).resolve().parents[2] / "helm" / "kuberec" / "crds"


def load_chart_crds(emulator: KubeEmulator, crds_dir: Path = CHART_CRDS) -> list[str]:
    """Load every CRD the Helm chart ships (RecommenderJob, kopf peering); names loaded."""
    loaded = []
    for path in sorted(crds_dir.glob("*.yaml")):
        loaded.append(emulator.load_crd(path)["metadata"]["name"])
    return loaded


@pytest.fixture
def k8s_emulator() -> Iterator[KubeEmulator]:
    """A fresh, running emulator (namespaces default, kube-system, kube-public exist)."""
    emulator = KubeEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def k8s_kubeconfig(
    k8s_emulator: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A kubeconfig file for the emulator, also exported as KUBECONFIG (kopf, subprocesses)."""
    path = k8s_emulator.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


@pytest.fixture
def k8s_client(k8s_kubeconfig: Path) -> Iterator[Any]:
    """A kubernetes.client.ApiClient from that kubeconfig (not the global default client)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(k8s_kubeconfig))
    try:
        yield client
    finally:
        client.close()
