"""What SASRec and GRU4Rec share: next-item training over padded item sequences.

Sequences are left-padded with the pad item (``n_items``), so the most recent
item is always last and scoring reads the last position. Training predicts the
next item at every position: ``loss="ce"`` is a softmax over the whole catalogue
(stronger than sampled losses when the catalogue fits, Klenitskiy & Vasilev
2023), ``loss="bce"`` the original one-negative-per-position binary loss, for
catalogues too large for a full softmax.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender, require_history
from kuberec.components.models.encoded import DataSchema

SequenceLoss = Literal["ce", "bce"]


class SequenceRecommender(Recommender):
    family = "sequence"

    def __init__(
        self, schema: DataSchema, *, dim: int, history_length: int, loss: SequenceLoss
    ) -> None:
        super().__init__(schema)
        self.pad = schema.pad_item
        self.history_length = history_length
        self.loss_type = loss
        self.item_embeddings = nn.Embedding(schema.n_items + 1, dim, padding_idx=self.pad)
        nn.init.normal_(self.item_embeddings.weight, std=0.1)
        with torch.no_grad():
            self.item_embeddings.weight[self.pad].zero_()

    def encode(self, sequence: Tensor) -> Tensor:
        """(B, L, dim) hidden states; position t summarises items up to t."""
        raise NotImplementedError

    def _catalogue(self) -> Tensor:
        return self.item_embeddings.weight[: self.schema.n_items]

    def loss(self, batch: Batch) -> Tensor:
        hidden, targets = self.encode(batch["inputs"]), batch["targets"]
        real = targets != self.pad
        if self.loss_type == "ce":
            logits = hidden[real] @ self._catalogue().T
            return F.cross_entropy(logits, targets[real])
        pos = (hidden * self.item_embeddings(targets)).sum(-1)[real]
        neg = (hidden * self.item_embeddings(batch["negatives"])).sum(-1)[real]
        ones, zeros = torch.ones_like(pos), torch.zeros_like(neg)
        return F.binary_cross_entropy_with_logits(
            torch.cat([pos, neg]), torch.cat([ones, zeros])
        )

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        sequence = require_history(history, type(self).__name__)[:, -self.history_length :]
        return self.encode(sequence)[:, -1] @ self._catalogue().T
