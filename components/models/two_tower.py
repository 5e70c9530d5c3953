"""Two-tower retrieval trained with in-batch sampled softmax and logQ correction.

Each positive (user, item) pair treats the other items of the batch as
negatives. Items appear in batches in proportion to their popularity, so
in-batch softmax over-penalises popular items; subtracting log q(item) (its
sampling probability) from the logits corrects this (Yi et al. 2019, "Sampling-
bias-corrected neural modeling"). Serving scores are plain (scaled) dot products,
so retrieval can use an approximate nearest-neighbour index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.hparams import TRAINING_RULES, UNIT, Flag, FloatRange, IntRange
from kuberec.components.models.item_tower import ItemTower
from kuberec.components.models.model_type import ModelType, training_defaults
from kuberec.components.models.search_space import WEIGHT_DECAY, Choice, LogUniform, Uniform
from kuberec.components.models.user_tower import UserTower


class TwoTower(Recommender):
    family = "inbatch"

    def __init__(
        self,
        schema: DataSchema,
        *,
        dim: int,
        temperature: float,
        history_length: int,
        logq: bool,
        dropout: float,
        id_dropout: float = 0.0,
    ) -> None:
        super().__init__(schema)
        self.history_length = history_length
        self.temperature = temperature
        self.logq = logq
        self.user_tower = UserTower(schema, dim, dropout)
        self.item_tower = ItemTower(schema, dim, dropout, id_dropout)
        self.register_buffer("log_q", torch.zeros(schema.n_items))

    def attach(self, data: EncodedData) -> None:
        self.user_tower.attach(data)
        self.item_tower.attach(data)
        counts = torch.from_numpy(data.item_counts).float()
        self.log_q.copy_(torch.log((counts + 1.0) / (counts.sum() + len(counts))))

    def user_vectors(self, users: Tensor, history: Tensor | None) -> Tensor:
        return F.normalize(self.user_tower(users, history), dim=-1)

    def item_vectors(self, items: Tensor | None = None) -> Tensor:
        """Normalised item vectors (all items when ``items`` is None): the retrieval index."""
        vectors = self.item_tower.all_items() if items is None else self.item_tower(items)
        return F.normalize(vectors, dim=-1)

    def loss(self, batch: Batch) -> Tensor:
        items = batch["items"]
        u = self.user_vectors(batch["users"], batch.get("history"))
        logits = u @ self.item_vectors(items).T / self.temperature
        if self.logq:
            logits = logits - self.log_q[items][None, :]
        same = items[:, None] == items[None, :]
        same.fill_diagonal_(False)  # another row's copy of my positive is no negative
        logits = logits.masked_fill(same, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(items), device=items.device))

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_vectors(users, history) @ self.item_vectors().T / self.temperature

    def score_pairs(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        u, v = self.user_vectors(users, history), self.item_vectors(items)
        return (u * v).sum(-1) / self.temperature


MODEL_TYPES = (
    ModelType(
        "two_tower",
        TwoTower,
        "user/item towers, in-batch softmax with logQ correction",
        defaults={
            "dim": 64,
            "temperature": 0.1,
            "history_length": 20,
            "logq": True,
            "dropout": 0.0,
            "id_dropout": 0.0,
            **training_defaults(0.003, 512),
        },
        rules={
            "dim": IntRange(1),
            "temperature": FloatRange(0.0, open_minimum=True),
            "history_length": IntRange(1),
            "logq": Flag(),
            "dropout": UNIT,
            "id_dropout": UNIT,
            **TRAINING_RULES,
        },
        model_keys=("dim", "temperature", "history_length", "logq", "dropout", "id_dropout"),
        search_space={
            "lr": LogUniform(3e-4, 1e-2),
            "dim": Choice((32, 64, 128)),
            "temperature": LogUniform(0.03, 0.3),
            "dropout": Uniform(0.0, 0.3),
            "weight_decay": WEIGHT_DECAY,
        },
    ),
)
