"""GRU4Rec: a recurrent encoder of the item sequence (Hidasi et al. 2016).

The recurrent counterpart of SASRec, with the same next-item training: cheaper per
step and a strong baseline on short sessions.
"""

from __future__ import annotations

from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.sequential import SequenceLoss, SequenceRecommender


class GRU4Rec(SequenceRecommender):
    def __init__(
        self,
        schema: DataSchema,
        *,
        dim: int,
        n_layers: int,
        dropout: float,
        history_length: int,
        loss: SequenceLoss,
        n_negatives: int = 256,
        gbce_t: float = 0.75,
    ) -> None:
        super().__init__(schema, dim=dim, history_length=history_length, loss=loss,
                         n_negatives=n_negatives, gbce_t=gbce_t)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            dim, dim, num_layers=n_layers, batch_first=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )

    def encode(self, sequence: Tensor) -> Tensor:
        out, _ = self.gru(self.dropout(self.item_embeddings(sequence)))
        return out
