"""Shared fixtures: the MovieLens copy in ../shared/datasets and one ingested feature store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from kuberec.components.datasets.canonical import Dataset
from tests.support.paths import SHARED_DATASETS

if TYPE_CHECKING:
    from tests.support.kfp_standin import KfpStandIn
    from tests.support.operator_harness import PrometheusStandIn


@pytest.fixture(scope="session", autouse=True)
def _offline_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Datasets from the local copy (never downloaded), caches in a per-run folder."""
    saved = {
        k: os.environ.get(k) for k in ("KUBEREC_DATA_DIR", "KUBEREC_CACHE_DIR", "BENTOML_HOME")
    }
    os.environ["KUBEREC_DATA_DIR"] = str(SHARED_DATASETS)
    os.environ["KUBEREC_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache") / "datasets")
    os.environ["BENTOML_HOME"] = str(tmp_path_factory.mktemp("bentoml"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def ml100k() -> Dataset:
    from kuberec.components.datasets.movielens import load_movielens

    if not (SHARED_DATASETS / "ml-100k" / "u.data").exists():
        pytest.fail(f"MovieLens 100K is expected at {SHARED_DATASETS / 'ml-100k'}")
    return load_movielens("ml-100k")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With KUBEREC_STRICT_SKIPS=1 (CI), a skip is a failure unless the test is opt-in (cluster)."""
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("KUBEREC_STRICT_SKIPS") == "1"
    if strict and report.skipped and item.get_closest_marker("cluster") is None:
        report.outcome = "failed"
        reason = report.longrepr
        report.longrepr = f"skipped without being opt-in; CI treats that as an error: {reason}"


@pytest.fixture
def kfp() -> Iterator[KfpStandIn]:
    """A fresh stand-in of the KFP REST API on a loopback port."""
    from tests.support.kfp_standin import KfpStandIn

    standin = KfpStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def prometheus() -> Iterator[PrometheusStandIn]:
    """A Prometheus query API on a loopback port answering with the traffic a test sets."""
    from tests.support.operator_harness import PrometheusStandIn

    standin = PrometheusStandIn().start()
    yield standin
    standin.stop()


@pytest.fixture
def artifacts(tmp_path: Path) -> str:
    """An artifact store (file URI) for run results, per test."""
    return (tmp_path / "artifacts").as_uri()
