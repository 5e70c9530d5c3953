"""SASRec: causal self-attention over the user's item sequence (Kang & McAuley 2018).

Pre-norm Transformer blocks with learned positions counted from the most recent
item; each position attends to itself and earlier real (non-pad) items only.
As in the paper (and its code), item embeddings are scaled by sqrt(dim) before the
positions are added, and padded positions are zeroed after every block.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import TRAINING_RULES, IntRange
from kuberec.components.models.model_type import HParams, ModelType, training_defaults
from kuberec.components.models.search_space import WEIGHT_DECAY, Choice, LogUniform, Uniform
from kuberec.components.models.sequential import (
    SEQUENCE_DEFAULTS,
    SEQUENCE_KEYS,
    SEQUENCE_RULES,
    SequenceLoss,
    SequenceRecommender,
)
from kuberec.errors import ConfigError


class SASRec(SequenceRecommender):
    def __init__(
        self,
        schema: DataSchema,
        *,
        dim: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        history_length: int,
        loss: SequenceLoss,
        n_negatives: int = 256,
        gbce_t: float = 0.75,
    ) -> None:
        super().__init__(schema, dim=dim, history_length=history_length, loss=loss,
                         n_negatives=n_negatives, gbce_t=gbce_t)
        self.n_heads, self.scale = n_heads, float(dim) ** 0.5
        self.positions = nn.Embedding(history_length, dim)
        nn.init.normal_(self.positions.weight, std=0.1)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=dim, nhead=n_heads, dim_feedforward=dim, dropout=dropout,
                batch_first=True, norm_first=True,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(dim)

    def _attention_mask(self, pad: Tensor) -> Tensor:
        """(B * heads, L, L), True where attention is forbidden: the future and other pads."""
        length = pad.shape[1]
        future = torch.ones(length, length, dtype=torch.bool, device=pad.device).triu(1)
        other_pad = pad[:, None, :] & ~torch.eye(length, dtype=torch.bool, device=pad.device)
        return (future[None] | other_pad).repeat_interleave(self.n_heads, dim=0)

    def encode(self, sequence: Tensor) -> Tensor:
        length = sequence.shape[1]
        pad = sequence == self.pad
        keep = (~pad).unsqueeze(-1).to(self.positions.weight.dtype)
        start = self.history_length - length
        positions = torch.arange(start, self.history_length, device=sequence.device)
        items = self.item_embeddings(sequence) * self.scale
        x = self.dropout(items + self.positions(positions)[None]) * keep
        mask = self._attention_mask(pad)
        for block in self.blocks:
            x = block(x, src_mask=mask) * keep
        return self.norm(x)


def _heads_divide_dim(hp: HParams) -> None:
    if int(hp["dim"]) % int(hp["n_heads"]):
        raise ConfigError(
            f"sasrec hyperparameter 'n_heads': must divide dim ({hp['dim']}), got {hp['n_heads']}"
        )


MODEL_TYPES = (
    ModelType(
        "sasrec", SASRec, "self-attentive sequential recommendation",
        defaults={"dim": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.2,
                  "history_length": 50, "loss": "ce", **SEQUENCE_DEFAULTS,
                  **training_defaults(0.003, 128)},
        rules={**SEQUENCE_RULES, "n_layers": IntRange(1), "n_heads": IntRange(1),
               **TRAINING_RULES},
        model_keys=(*SEQUENCE_KEYS, "n_layers", "n_heads"),
        cross_check=_heads_divide_dim,
        # every dim is a multiple of the default n_heads (2)
        search_space={"lr": LogUniform(3e-4, 1e-2), "dim": Choice((32, 64, 128)),
                      "n_layers": Choice((1, 2)), "dropout": Uniform(0.1, 0.5),
                      "weight_decay": WEIGHT_DECAY},
    ),
)
