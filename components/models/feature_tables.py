"""Item and user feature tables held as buffers, so a saved model carries its inputs.

Towers and the DCN ranker look features up by dense index instead of receiving
them in every batch: batches stay small, and serving needs only indices.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData


class ItemFeatureTable(nn.Module):
    """Per item: genre weights (multi-hot / count), year bucket, text embedding."""

    genres: Tensor
    year: Tensor
    text: Tensor

    def __init__(self, schema: DataSchema) -> None:
        super().__init__()
        n = schema.n_items
        self.register_buffer("genres", torch.zeros(n, schema.n_genres))
        self.register_buffer("year", torch.zeros(n, dtype=torch.long))
        self.register_buffer("text", torch.zeros(n, schema.text_dim))

    def attach(self, data: EncodedData) -> None:
        counts = data.item_genres.sum(axis=1, keepdims=True)
        self.genres.copy_(torch.from_numpy(data.item_genres / np.maximum(counts, 1.0)))
        self.year.copy_(torch.from_numpy(data.item_year))
        if data.item_text is not None:
            self.text.copy_(torch.from_numpy(data.item_text))


class UserFeatureTable(nn.Module):
    """Per user (plus a last all-unknown row for cold users): categorical and numeric attributes."""

    categorical: Tensor
    numeric: Tensor

    def __init__(self, schema: DataSchema) -> None:
        super().__init__()
        n = schema.n_users + 1
        self.n_users = schema.n_users
        self.register_buffer(
            "categorical", torch.zeros(n, len(schema.user_cardinalities), dtype=torch.long)
        )
        self.register_buffer("numeric", torch.zeros(n, schema.n_user_numeric))

    def attach(self, data: EncodedData) -> None:
        self.categorical[: self.n_users] = torch.from_numpy(data.user_categorical)
        self.numeric[: self.n_users] = torch.from_numpy(data.user_numeric)

    def known(self, users: Tensor) -> Tensor:
        """User indices with unknown (negative or out-of-range) users mapped to the last row."""
        inside = (users >= 0) & (users < self.n_users)
        return torch.where(inside, users, torch.full_like(users, self.n_users))


def mlp(sizes: list[int], dropout: float = 0.0, *, last_activation: bool = False) -> nn.Sequential:
    """Linear layers with ReLU (and dropout) between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
