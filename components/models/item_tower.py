"""Item representation: id embedding + genre and year embeddings + projected text embedding.

Attribute fields let items with few interactions borrow strength from similar
items, and the text projection carries a sentence-embedding model's knowledge of
the catalogue. The fields are concatenated and mixed by a small MLP.
``id_dropout`` zeroes an item's id embedding for that share of training rows, so
the tower also learns to place an item from its content alone: an item added
after training has a zero id embedding (:mod:`.new_items`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.feature_tables import ItemFeatureTable, mlp

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData


class ItemTower(nn.Module):
    """Maps item indices to ``dim``-vectors."""

    def __init__(
        self, schema: DataSchema, dim: int, dropout: float = 0.0, id_dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.id_dropout = id_dropout
        self.features = ItemFeatureTable(schema)
        self.ids = nn.Embedding(schema.n_items, dim)
        self.genres = nn.Linear(schema.n_genres, dim, bias=False) if schema.n_genres else None
        self.year = nn.Embedding(schema.n_year_buckets, dim)
        self.text = nn.Linear(schema.text_dim, dim) if schema.text_dim else None
        n_fields = 2 + (self.genres is not None) + (self.text is not None)
        self.mix = mlp([n_fields * dim, 2 * dim, dim], dropout)
        nn.init.normal_(self.ids.weight, std=0.1)
        nn.init.normal_(self.year.weight, std=0.1)

    def attach(self, data: EncodedData) -> None:
        self.features.attach(data)

    def forward(self, items: Tensor) -> Tensor:
        f = self.features
        ids = self.ids(items)
        if self.training and self.id_dropout > 0:
            # An item seen by content alone: what a new item is at serving time.
            keep = torch.rand(items.shape, device=items.device) >= self.id_dropout
            ids = ids * keep.unsqueeze(-1).to(ids.dtype)
        fields = [ids, self.year(f.year[items])]
        if self.genres is not None:
            fields.append(self.genres(f.genres[items]))
        if self.text is not None:
            fields.append(self.text(f.text[items]))
        return self.mix(torch.cat(fields, dim=-1))

    def all_items(self) -> Tensor:
        """(n_items, dim): every item, for full-catalogue scoring."""
        return self(torch.arange(self.ids.num_embeddings, device=self.ids.weight.device))
