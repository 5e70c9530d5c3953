"""Most-popular baseline: every user gets the items with the most training interactions.

Every report shows it because a learned model that cannot beat it has learned nothing
personal.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kuberec.components.models.base import Recommender
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.model_type import ModelType


class Popularity(Recommender):
    def __init__(self, schema: DataSchema) -> None:
        super().__init__(schema)
        self.register_buffer("counts", torch.zeros(schema.n_items))

    def attach(self, data: EncodedData) -> None:
        self.set_buffer("counts", data.item_counts)

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.counts.expand(len(users), -1).clone()


MODEL_TYPES = (
    ModelType(
        "popularity",
        Popularity,
        "most interacted items, the same for every user",
        defaults={},
        rules={},
        model_keys=(),
    ),
)
