"""DCN-v2 CTR ranker: a cross network and a deep network over user, item and context features.

Wang et al. 2021. Every feature becomes an ``embed_dim`` field (user id and
attributes, item id, genres, year, text; context: hour of day and weekday of the
interaction), plus standardised numeric user attributes; the cross layers
x_{l+1} = x_0 ⊙ (W x_l + b) + x_l model explicit feature crosses and the MLP
implicit ones, in parallel. Trained pointwise with BCE on positives vs sampled
negatives. The request context is unknown when ranking a whole catalogue, so
training hides it with probability ``context_dropout`` to learn the "unknown" case.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.feature_tables import ItemFeatureTable, UserFeatureTable, mlp
from kuberec.components.models.features import CONTEXT_CARDINALITIES
from kuberec.components.models.hparams import TRAINING_RULES, UNIT, FloatRange, IntList, IntRange
from kuberec.components.models.model_type import ModelType, training_defaults
from kuberec.components.models.ncf import score_all_pairs
from kuberec.components.models.search_space import WEIGHT_DECAY, Choice, LogUniform, Uniform


class CrossLayer(nn.Module):
    """x_{l+1} = x_0 ⊙ (W x_l + b) + x_l (the full-rank DCN-v2 cross)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.linear.weight, gain=0.1)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x0: Tensor, x: Tensor) -> Tensor:
        return x0 * self.linear(x) + x


class DCNv2(Recommender):
    family = "pointwise"

    def __init__(
        self,
        schema: DataSchema,
        *,
        embed_dim: int,
        cross_layers: int,
        mlp_layers: list[int],
        dropout: float,
        context_dropout: float,
    ) -> None:
        super().__init__(schema)
        e = embed_dim
        self.context_dropout = context_dropout
        self.user_features = UserFeatureTable(schema)
        self.item_features = ItemFeatureTable(schema)
        self.user_ids = nn.Embedding(schema.n_users + 1, e)
        self.item_ids = nn.Embedding(schema.n_items, e)
        self.year = nn.Embedding(schema.n_year_buckets, e)
        self.attributes = nn.ModuleList(nn.Embedding(c, e) for c in schema.user_cardinalities)
        self.context = nn.ModuleList(nn.Embedding(c, e) for c in CONTEXT_CARDINALITIES)
        self.genres = nn.Linear(schema.n_genres, e, bias=False) if schema.n_genres else None
        self.text = nn.Linear(schema.text_dim, e) if schema.text_dim else None
        n_fields = 3 + len(self.attributes) + len(self.context)
        n_fields += (self.genres is not None) + (self.text is not None)
        width = n_fields * e + schema.n_user_numeric
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(cross_layers))
        self.deep = mlp([width, *mlp_layers], dropout, last_activation=True)
        self.out = nn.Linear(width + mlp_layers[-1], 1)
        for emb in (self.user_ids, self.item_ids, self.year, *self.attributes, *self.context):
            nn.init.normal_(emb.weight, std=0.05)

    def attach(self, data: EncodedData) -> None:
        self.user_features.attach(data)
        self.item_features.attach(data)

    def _inputs(self, users: Tensor, items: Tensor, context: Tensor) -> Tensor:
        users = self.user_features.known(users)
        categorical = self.user_features.categorical[users]
        fields = [
            self.user_ids(users),
            self.item_ids(items),
            self.year(self.item_features.year[items]),
        ]
        fields += [emb(categorical[:, j]) for j, emb in enumerate(self.attributes)]
        fields += [emb(context[:, j]) for j, emb in enumerate(self.context)]
        if self.genres is not None:
            fields.append(self.genres(self.item_features.genres[items]))
        if self.text is not None:
            fields.append(self.text(self.item_features.text[items]))
        fields.append(self.user_features.numeric[users])
        return torch.cat(fields, dim=-1)

    def score_pairs(
        self,
        users: Tensor,
        items: Tensor,
        history: Tensor | None = None,
        context: Tensor | None = None,
    ) -> Tensor:
        """Logits of (user, item[, context]) rows; ``context`` (B, 2) defaults to unknown."""
        if context is None:
            context = torch.zeros(
                len(users), len(CONTEXT_CARDINALITIES), dtype=torch.long, device=users.device
            )
        x0 = self._inputs(users, items, context)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.out(torch.cat([x, self.deep(x0)], dim=-1))[:, 0]

    def loss(self, batch: Batch) -> Tensor:
        context = batch["context"]
        if self.training and self.context_dropout > 0:
            hide = torch.rand(len(context), 1, device=context.device) < self.context_dropout
            context = context.masked_fill(hide, 0)
        logits = self.score_pairs(batch["users"], batch["items"], context=context)
        return F.binary_cross_entropy_with_logits(logits, batch["labels"])

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return score_all_pairs(self.score_pairs, users, self.schema.n_items)


MODEL_TYPES = (
    ModelType(
        "dcn",
        DCNv2,
        "DCN-v2 CTR ranker over user, item and context features",
        defaults={
            "embed_dim": 16,
            "cross_layers": 3,
            "mlp_layers": [128, 64],
            "dropout": 0.1,
            "context_dropout": 0.1,
            "n_negatives": 4,
            **training_defaults(0.005, 256),
        },
        rules={
            "embed_dim": IntRange(1),
            "cross_layers": IntRange(0),
            "mlp_layers": IntList(1),
            "dropout": UNIT,
            "context_dropout": FloatRange(0.0, 1.0),
            "n_negatives": IntRange(1),
            **TRAINING_RULES,
        },
        model_keys=("embed_dim", "cross_layers", "mlp_layers", "dropout", "context_dropout"),
        search_space={
            "lr": LogUniform(5e-4, 1e-2),
            "embed_dim": Choice((8, 16, 32)),
            "cross_layers": Choice((1, 2, 3)),
            "dropout": Uniform(0.0, 0.3),
            "weight_decay": WEIGHT_DECAY,
        },
    ),
)
