"""save_model / load_model: a run directory reloads to a model with identical scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import (
    EncodedData,
    fit,
    load_model,
    recommend,
    save_model,
    score_users,
)
from kuberec.errors import ConfigError, DataError

HPARAMS: dict[str, dict[str, object]] = {
    "popularity": {},
    "item_knn": {"neighbours": 5},
    "mf": {"dim": 8},
    "ncf": {"dim": 8, "mlp_layers": [8]},
    "two_tower": {"dim": 8, "history_length": 4},
    "sasrec": {"dim": 8, "history_length": 6},
    "gru4rec": {"dim": 8, "history_length": 6},
    "dcn": {"embed_dim": 4, "mlp_layers": [8]},
    "multvae": {"dim": 8, "hidden": 16},
    "bivae": {"dim": 8, "hidden": 16},
}


@pytest.fixture(scope="module")
def data() -> EncodedData:
    dataset = generate(SyntheticSpec(30, 20, 300, seed=2))
    dataset.users["user_id"] = "user-" + dataset.users["user_id"].astype(str)  # string ids
    dataset.interactions["user_id"] = "user-" + dataset.interactions["user_id"].astype(str)
    text = np.random.default_rng(1).standard_normal((len(dataset.items), 5)).astype(np.float32)
    return EncodedData.from_dataset(dataset, text_embeddings=text)


@pytest.mark.parametrize("name", list(HPARAMS))
def test_round_trip_gives_identical_scores(data: EncodedData, tmp_path: Path, name: str) -> None:
    model, _ = fit(name, data, HPARAMS[name], seed=0, epochs=1, device="cpu")
    save_model(model, name, HPARAMS[name], data, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    users = np.arange(data.n_users)
    assert torch.equal(
        score_users(model, data.history, users), score_users(loaded.model, loaded.history, users)
    )
    assert loaded.model_type == name and loaded.schema == data.schema


def test_loaded_run_maps_ids_and_recommends_like_the_original(
    data: EncodedData, tmp_path: Path
) -> None:
    model, _ = fit("mf", data, {"dim": 8}, seed=0, epochs=1, device="cpu")
    save_model(model, "mf", {"dim": 8}, data, tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert loaded.user_index.ids.tolist() == data.user_index.ids.tolist()
    assert loaded.item_index.ids.tolist() == data.item_index.ids.tolist()
    users = np.arange(data.n_users)
    before = recommend(model, data.history, users, 5)
    after = recommend(loaded.model, loaded.history, users, 5)
    np.testing.assert_array_equal(before.items, after.items)
    np.testing.assert_array_equal(loaded.item_genres, data.item_genres)


def test_config_records_the_effective_hyperparameters(data: EncodedData, tmp_path: Path) -> None:
    model, _ = fit("mf", data, {"dim": 8}, seed=0, epochs=0, device="cpu")
    save_model(model, "mf", {"dim": 8}, data, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["hparams"]["dim"] == 8 and config["hparams"]["lr"] == 0.01
    assert config["schema"]["n_items"] == data.n_items


def test_saving_over_a_non_empty_directory_needs_overwrite(
    data: EncodedData, tmp_path: Path
) -> None:
    model, _ = fit("popularity", data, {}, epochs=0, device="cpu")
    save_model(model, "popularity", {}, data, tmp_path / "model")
    with pytest.raises(ConfigError, match="overwrite=True"):
        save_model(model, "popularity", {}, data, tmp_path / "model")
    save_model(model, "popularity", {}, data, tmp_path / "model", overwrite=True)


def test_loading_a_directory_without_a_model_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a model saved by save_model"):
        load_model(tmp_path)
