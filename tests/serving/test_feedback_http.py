"""A real server: /feedback moves the features the next /recommend reads, and lands in the sink."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.feedback import read_sink
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.features.store import StoreSettings
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings
from kuberec.pipelines.features_step import run_features
from kuberec.serving.feedback_settings import FLUSH_ENV, SINK_ENV, SYNTHETIC, TRAFFIC_HEADER
from kuberec.serving.online_features import FEAST_REPO_ENV
from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(60, 80, 2500, seed=13))


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feedback") / "sink"


@pytest.fixture(scope="module")
def url(dataset: Dataset, sink: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = StoreSettings(tmp_path_factory.mktemp("feast") / "data", project="loop")
    run_features(dataset, settings, text_embeddings=False)
    run_dir = tmp_path_factory.mktemp("run") / "run"
    train_run(dataset, run_dir, model_type="ease_t", settings=TrainSettings(backend="local"))
    port = free_port()
    process = start_server(
        run_dir,
        port,
        env={FEAST_REPO_ENV: str(settings.repo_dir), SINK_ENV: str(sink), FLUSH_ENV: "0.2"},
    )
    address = f"http://127.0.0.1:{port}"
    try:
        wait_ready(address, 180, process=process)
        yield address
    finally:
        stop_server(process)


def _post(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _until(check: object, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _items(url: str, user: object) -> list[object]:
    return [i["item_id"] for i in _post(url, "/recommend", {"user_id": user, "k": 5})[1]["items"]]


def test_a_click_leaves_the_users_next_recommendations(url: str) -> None:
    status, answer = _post(url, "/recommend", {"user_id": 4, "k": 5})
    top = answer["items"][0]["item_id"]
    status, accepted = _post(
        url,
        "/feedback",
        {"request_id": answer["request_id"], "user_id": 4, "item_id": top, "event": "click"},
    )
    assert (status, accepted["accepted"]) == (200, True)
    assert _until(lambda: top not in _items(url, 4))


def test_a_new_users_first_click_turns_the_fallback_personal(url: str) -> None:
    assert _post(url, "/recommend", {"user_id": "newcomer"})[1]["fallback"] is True
    _post(
        url,
        "/feedback",
        {"request_id": "r-x", "user_id": "newcomer", "item_id": 3, "event": "purchase"},
    )
    assert _until(lambda: _post(url, "/recommend", {"user_id": "newcomer"})[1]["fallback"] is False)


def test_feedback_on_an_unknown_item_is_a_422_naming_item_id_and_counted(url: str) -> None:
    status, body = _post(
        url,
        "/feedback",
        {"request_id": "r-1", "user_id": 4, "item_id": "no-such-item", "event": "click"},
    )
    assert status == 422
    assert body["detail"][0]["loc"] == ["item_id"]
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    assert 'kuberec_feedback_flagged_total{outcome="rejected",reason="unknown_item"} 1.0' in text


def test_accepted_events_land_in_the_sink_with_the_serving_model_version(
    url: str, sink: Path
) -> None:
    answer = _post(url, "/recommend", {"user_id": 9, "k": 3})[1]
    _post(
        url,
        "/feedback",
        {
            "request_id": answer["request_id"],
            "user_id": 9,
            "item_id": answer["items"][1]["item_id"],
            "event": "click",
        },
    )

    def stored() -> bool:
        rows = read_sink(str(sink))
        return answer["request_id"] in set(rows["request_id"])

    assert _until(stored)
    rows = read_sink(str(sink)).set_index("request_id").loc[answer["request_id"]]
    assert rows["model_version"] == answer["model_version"]
    assert bool(rows["request_known"]) is True


def test_synthetic_feedback_is_answered_but_moves_no_feature_and_is_not_stored(
    url: str, sink: Path
) -> None:
    marked = {TRAFFIC_HEADER: SYNTHETIC}
    status, answer = _post(url, "/recommend", {"user_id": 11, "k": 5}, marked)
    top = answer["items"][0]["item_id"]
    status, accepted = _post(
        url,
        "/feedback",
        {"request_id": answer["request_id"], "user_id": 11, "item_id": top, "event": "click"},
        marked,
    )
    assert (status, accepted["accepted"]) == (200, True)
    later = _post(url, "/recommend", {"user_id": 12, "k": 3})[1]  # a real click, queued after
    _post(
        url,
        "/feedback",
        {
            "request_id": later["request_id"],
            "user_id": 12,
            "item_id": later["items"][0]["item_id"],
            "event": "click",
        },
    )
    assert _until(lambda: later["request_id"] in set(read_sink(str(sink))["request_id"]))
    assert answer["request_id"] not in set(read_sink(str(sink))["request_id"])
    assert top in _items(url, 11)  # the synthetic click was not pushed
