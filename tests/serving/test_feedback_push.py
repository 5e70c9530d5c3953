"""Clicks and purchases reach the Feast online store through its push sources, at once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.features.store import StoreSettings
from kuberec.pipelines.features_step import run_features
from kuberec.serving.feedback_push import OnlinePusher
from kuberec.serving.feedback_sink import Event
from kuberec.serving.online_features import OnlineHistory

USER, ITEM = "3", "5"


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticSpec(40, 60, 1200, seed=5))


@pytest.fixture(scope="module", params=["default", "production"])
def repo(
    request: pytest.FixtureRequest, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The default profile (SQLite) and the production one (Redis + PostgreSQL registry)."""
    project = f"push_{request.param}_{uuid.uuid4().hex[:6]}"
    settings = StoreSettings(
        tmp_path_factory.mktemp("feast") / "data", profile=request.param, project=project
    )
    run_features(dataset, settings, text_embeddings=False)
    return settings.repo_dir


def _event(user: str, item: str, event: str = "click") -> Event:
    return Event("r-1", user, item, event, "run-test", datetime.now(UTC))


def _profile(pusher: OnlinePusher, view: str, key: str) -> dict:
    return pusher._rows(view, [key])[key]


def test_a_click_puts_the_item_first_in_recent_items_and_counts_it(repo: Path) -> None:
    pusher = OnlinePusher(repo)
    before = _profile(pusher, "user_profile", USER)
    pusher.push([_event(USER, ITEM)])
    after = _profile(pusher, "user_profile", USER)
    assert after["recent_items"] == [ITEM, *before["recent_items"]][:10]
    assert after["interaction_count"] == before["interaction_count"] + 1
    assert OnlineHistory(repo).recent_items([USER])[USER][-1] == ITEM  # what serving reads


def test_a_purchase_raises_the_items_popularity(repo: Path) -> None:
    pusher = OnlinePusher(repo)
    before = _profile(pusher, "item_profile", ITEM)
    pusher.push([_event("7", ITEM, "purchase"), _event("8", ITEM, "click")])
    after = _profile(pusher, "item_profile", ITEM)
    assert after["popularity"] == before["popularity"] + 2
    assert after["popularity_recent"] == before["popularity_recent"] + 2
    assert after["genres"] == before["genres"]  # the rest of the row is kept


def test_a_user_new_to_the_store_gets_a_profile_from_the_first_click(repo: Path) -> None:
    pusher = OnlinePusher(repo)
    newcomer = f"new-{uuid.uuid4().hex[:6]}"
    pusher.push([_event(newcomer, ITEM), _event(newcomer, "9")])
    after = _profile(pusher, "user_profile", newcomer)
    assert after["recent_items"] == ["9", ITEM]
    assert after["interaction_count"] == 2


def test_impressions_move_no_feature(repo: Path) -> None:
    pusher = OnlinePusher(repo)
    before = _profile(pusher, "user_profile", USER)
    assert pusher.push([_event(USER, "11", "impression")]) == 0
    assert _profile(pusher, "user_profile", USER) == before
