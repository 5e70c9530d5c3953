"""User representation: id embedding + attribute embeddings + pooled recent history.

The history pooling (mean of the embeddings of the user's recent items) lets the
tower represent a user from what they just did, including a user unknown at
training time, whose id and attributes fall back to a shared "unknown" row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.feature_tables import UserFeatureTable, mlp

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData


def mean_pool(embedded: Tensor, mask: Tensor) -> Tensor:
    """Mean over the unmasked positions of (B, L, d); zero for an empty history."""
    weights = mask.to(embedded.dtype).unsqueeze(-1)
    return (embedded * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class UserTower(nn.Module):
    """Maps (user indices, left-padded item histories) to ``dim``-vectors."""

    def __init__(self, schema: DataSchema, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.pad = schema.pad_item
        self.features = UserFeatureTable(schema)
        self.ids = nn.Embedding(schema.n_users + 1, dim)
        self.attributes = nn.ModuleList(nn.Embedding(c, dim) for c in schema.user_cardinalities)
        self.numeric = nn.Linear(schema.n_user_numeric, dim) if schema.n_user_numeric else None
        self.history = nn.Embedding(schema.n_items + 1, dim, padding_idx=self.pad)
        n_fields = 2 + len(self.attributes) + (self.numeric is not None)
        self.mix = mlp([n_fields * dim, 2 * dim, dim], dropout)
        nn.init.normal_(self.ids.weight, std=0.1)
        with torch.no_grad():
            self.ids.weight[-1].zero_()  # the unknown user starts neutral
            nn.init.normal_(self.history.weight, std=0.1)
            self.history.weight[self.pad].zero_()

    def attach(self, data: EncodedData) -> None:
        self.features.attach(data)

    def forward(self, users: Tensor, history: Tensor | None) -> Tensor:
        users = self.features.known(users)
        fields = [self.ids(users)]
        categorical = self.features.categorical[users]
        fields += [emb(categorical[:, j]) for j, emb in enumerate(self.attributes)]
        if self.numeric is not None:
            fields.append(self.numeric(self.features.numeric[users]))
        if history is None:
            history = torch.full((len(users), 1), self.pad, device=users.device)
        fields.append(mean_pool(self.history(history), history != self.pad))
        return self.mix(torch.cat(fields, dim=-1))
