"""Matrix factorisation trained with BPR (Rendle et al. 2009).

score(u, i) = p_u · q_i + b_i. BPR maximises log σ(score(u, i+) - score(u, i-))
over (user, positive, negative) triples, i.e. it learns the ranking directly;
the L2 penalty is on the embeddings of the batch, as in the paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import TRAINING_RULES, FloatRange, IntRange
from kuberec.components.models.model_type import ModelType, training_defaults
from kuberec.components.models.search_space import Choice, LogUniform


class MatrixFactorization(Recommender):
    family = "pairwise"

    def __init__(self, schema: DataSchema, *, dim: int, reg: float) -> None:
        super().__init__(schema)
        self.reg = reg
        self.user_factors = nn.Embedding(schema.n_users + 1, dim)  # last row: unknown user
        self.item_factors = nn.Embedding(schema.n_items, dim)
        self.item_bias = nn.Embedding(schema.n_items, 1)
        nn.init.normal_(self.user_factors.weight, std=0.1)
        nn.init.normal_(self.item_factors.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)
        with torch.no_grad():
            self.user_factors.weight[-1].zero_()

    def _users(self, users: Tensor) -> Tensor:
        n = self.schema.n_users
        return self.user_factors(torch.where((users >= 0) & (users < n), users, n))

    def loss(self, batch: Batch) -> Tensor:
        u = self._users(batch["users"])
        pos_items, neg_items = batch["pos_items"], batch["neg_items"]
        pos, neg = self.item_factors(pos_items), self.item_factors(neg_items)
        bias = (self.item_bias(pos_items) - self.item_bias(neg_items))[:, 0]
        diff = (u * (pos - neg)).sum(-1) + bias
        penalty = u.pow(2).sum(-1) + pos.pow(2).sum(-1) + neg.pow(2).sum(-1)
        return -F.logsigmoid(diff).mean() + self.reg * penalty.mean()

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self._users(users) @ self.item_factors.weight.T + self.item_bias.weight[:, 0]

    def score_pairs(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        dot = (self._users(users) * self.item_factors(items)).sum(-1)
        return dot + self.item_bias(items)[:, 0]


MODEL_TYPES = (
    ModelType(
        "mf",
        MatrixFactorization,
        "matrix factorisation with BPR loss",
        defaults={"dim": 64, "reg": 0.01, **training_defaults(0.01, 1024)},
        rules={"dim": IntRange(1), "reg": FloatRange(0.0), **TRAINING_RULES},
        model_keys=("dim", "reg"),
        search_space={
            "lr": LogUniform(1e-3, 5e-2),
            "dim": Choice((16, 32, 64, 128)),
            "reg": LogUniform(1e-4, 1e-1),
        },
    ),
)
