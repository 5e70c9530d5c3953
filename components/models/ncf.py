"""Neural collaborative filtering: NeuMF = GMF + MLP (He et al. 2017).

GMF is an element-wise product of user and item embeddings (generalised MF);
the MLP learns interactions on concatenated embeddings. Their outputs are
concatenated into one logit, trained pointwise with BCE on positives vs sampled
negatives, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.feature_tables import mlp
from kuberec.components.models.hparams import TRAINING_RULES, UNIT, IntList, IntRange
from kuberec.components.models.model_type import ModelType, training_defaults
from kuberec.components.models.search_space import WEIGHT_DECAY, Choice, LogUniform, Uniform

#: (user, item) pairs evaluated at once when scoring a whole catalogue.
PAIRS_PER_CHUNK = 1 << 16

PairScorer = Callable[[Tensor, Tensor], Tensor]


class NeuMF(Recommender):
    family = "pointwise"

    def __init__(
        self, schema: DataSchema, *, dim: int, mlp_layers: list[int], dropout: float
    ) -> None:
        super().__init__(schema)
        n_u, n_i = schema.n_users + 1, schema.n_items
        self.gmf_users, self.gmf_items = nn.Embedding(n_u, dim), nn.Embedding(n_i, dim)
        self.mlp_users, self.mlp_items = nn.Embedding(n_u, dim), nn.Embedding(n_i, dim)
        self.mlp = mlp([2 * dim, *mlp_layers], dropout, last_activation=True)
        self.out = nn.Linear(dim + mlp_layers[-1], 1)
        for emb in (self.gmf_users, self.gmf_items, self.mlp_users, self.mlp_items):
            nn.init.normal_(emb.weight, std=0.01)

    def _known(self, users: Tensor) -> Tensor:
        n = self.schema.n_users
        return torch.where((users >= 0) & (users < n), users, n)

    def score_pairs(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        users = self._known(users)
        gmf = self.gmf_users(users) * self.gmf_items(items)
        deep = self.mlp(torch.cat([self.mlp_users(users), self.mlp_items(items)], dim=-1))
        return self.out(torch.cat([gmf, deep], dim=-1))[:, 0]

    def loss(self, batch: Batch) -> Tensor:
        logits = self.score_pairs(batch["users"], batch["items"])
        return F.binary_cross_entropy_with_logits(logits, batch["labels"])

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return score_all_pairs(self.score_pairs, users, self.schema.n_items)


def score_all_pairs(pair_scorer: PairScorer, users: Tensor, n_items: int) -> Tensor:
    """(B, n_items) from a pair scorer, in chunks of users so memory stays bounded."""
    rows_per_chunk = max(1, PAIRS_PER_CHUNK // n_items)
    items = torch.arange(n_items, device=users.device)
    out = []
    for chunk in users.split(rows_per_chunk):
        u = chunk.repeat_interleave(n_items)
        out.append(pair_scorer(u, items.repeat(len(chunk))).view(len(chunk), n_items))
    return torch.cat(out) if out else torch.zeros(0, n_items, device=users.device)


MODEL_TYPES = (
    ModelType(
        "ncf",
        NeuMF,
        "neural CF (GMF + MLP), BCE on sampled negatives",
        defaults={
            "dim": 32,
            "mlp_layers": [64, 32, 16],
            "dropout": 0.0,
            "n_negatives": 4,
            **training_defaults(0.005, 256),
        },
        rules={
            "dim": IntRange(1),
            "mlp_layers": IntList(1),
            "dropout": UNIT,
            "n_negatives": IntRange(1),
            **TRAINING_RULES,
        },
        model_keys=("dim", "mlp_layers", "dropout"),
        search_space={
            "lr": LogUniform(5e-4, 1e-2),
            "dim": Choice((16, 32, 64)),
            "dropout": Uniform(0.0, 0.5),
            "weight_decay": WEIGHT_DECAY,
        },
    ),
)
