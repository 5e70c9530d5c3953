"""Serving reads fresh user histories from the Feast online store when one is configured."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.features.store import StoreSettings
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings
from kuberec.pipelines.features_step import run_features
from kuberec.serving.online_features import FEAST_REPO_ENV, OnlineHistory
from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

NEWCOMER = 7  # in the feature store, absent from the model's training data


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(60, 80, 2500, seed=11))


@pytest.fixture(scope="module")
def repo(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = StoreSettings(tmp_path_factory.mktemp("feast") / "data", project="online")
    run_features(dataset, settings, text_embeddings=False)
    return settings.repo_dir


@pytest.fixture(scope="module")
def run_dir(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    older = dataset.interactions[dataset.interactions["user_id"] != NEWCOMER]
    out = tmp_path_factory.mktemp("run") / "run"
    train_run(dataset.with_interactions(older), out,
              model_type="ease_t", settings=TrainSettings(backend="local"))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def url(run_dir: Path, repo: Path) -> Iterator[str]:
    port = free_port()
    process = start_server(run_dir, port, env={FEAST_REPO_ENV: str(repo)})
    address = f"http://127.0.0.1:{port}"
    try:
        wait_ready(address, 180, process=process)
        yield address
    finally:
        stop_server(process)


def _recommend(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/recommend", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_recent_items_come_oldest_first_from_the_online_store(repo: Path, dataset: Dataset) -> None:
    found = OnlineHistory(repo).recent_items([NEWCOMER, "no-such-user"])
    mine = dataset.interactions[dataset.interactions["user_id"] == NEWCOMER]
    latest = mine.sort_values("timestamp", kind="stable")["item_id"].astype(str).tolist()[-10:]
    assert found == {str(NEWCOMER): latest}


def test_no_repo_configured_means_no_online_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FEAST_REPO_ENV, raising=False)
    assert OnlineHistory.from_env() is None


def test_a_user_new_to_the_model_gets_personal_items_from_fresh_history(
    url: str, repo: Path
) -> None:
    answer = _recommend(url, {"user_id": NEWCOMER, "k": 5})
    assert answer["fallback"] is False
    seen = set(OnlineHistory(repo).recent_items([NEWCOMER])[str(NEWCOMER)])
    assert not seen & {str(item["item_id"]) for item in answer["items"]}


def test_recent_items_in_the_request_win_over_the_store(url: str) -> None:
    answer = _recommend(url, {"user_id": "someone-new", "k": 5, "recent_items": [1, 2]})
    assert answer["fallback"] is False
    assert not {1, 2} & {item["item_id"] for item in answer["items"]}
