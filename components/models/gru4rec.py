"""GRU4Rec: a recurrent encoder of the item sequence (Hidasi et al. 2016).

The recurrent counterpart of SASRec, with the same next-item training: cheaper per
step and a strong baseline on short sessions.
"""

from __future__ import annotations

from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import TRAINING_RULES, IntRange
from kuberec.components.models.model_type import ModelType, training_defaults
from kuberec.components.models.search_space import WEIGHT_DECAY, Choice, LogUniform, Uniform
from kuberec.components.models.sequential import (
    SEQUENCE_DEFAULTS,
    SEQUENCE_KEYS,
    SEQUENCE_RULES,
    SequenceLoss,
    SequenceRecommender,
)


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
        horizon: int = 1,
    ) -> None:
        super().__init__(
            schema,
            dim=dim,
            history_length=history_length,
            loss=loss,
            n_negatives=n_negatives,
            gbce_t=gbce_t,
            horizon=horizon,
        )
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(
            dim,
            dim,
            num_layers=n_layers,
            batch_first=True,
            dropout=dropout if n_layers > 1 else 0.0,
        )

    def encode(self, sequence: Tensor) -> Tensor:
        out, _ = self.gru(self.dropout(self.item_embeddings(sequence)))
        return out


MODEL_TYPES = (
    ModelType(
        "gru4rec",
        GRU4Rec,
        "recurrent (GRU) sequential recommendation",
        defaults={
            "dim": 64,
            "n_layers": 1,
            "dropout": 0.1,
            "history_length": 50,
            "loss": "auto",
            **SEQUENCE_DEFAULTS,
            **training_defaults(0.005, 128),
        },
        rules={**SEQUENCE_RULES, "n_layers": IntRange(1), **TRAINING_RULES},
        model_keys=(*SEQUENCE_KEYS, "n_layers"),
        search_space={
            "lr": LogUniform(5e-4, 1e-2),
            "dim": Choice((32, 64, 128)),
            "n_layers": Choice((1, 2)),
            "dropout": Uniform(0.0, 0.4),
            "weight_decay": WEIGHT_DECAY,
        },
    ),
)
