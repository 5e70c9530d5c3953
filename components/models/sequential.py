"""What SASRec and GRU4Rec share: next-item training over padded item sequences.

Sequences are left-padded with the pad item (``n_items``), so the most recent
item is always last and scoring reads the last position. Training predicts the
next item at every position (every real, non-pad target):

* ``loss="ce"``: a softmax over the whole catalogue (stronger than sampled losses
  when the catalogue fits, Klenitskiy & Vasilev 2023); its cost grows with the
  catalogue (a (positions x items) logit matrix per batch).
* ``loss="bce"``: the papers' one-negative-per-position binary loss (SASRec).
* ``loss="gbce"``: gSASRec's generalised BCE (Petrov & Macdonald 2023) over
  ``n_negatives`` uniform negatives shared by each sequence's positions: the
  positive's log-sigmoid is raised to the power ``beta = alpha (t (1 - 1/alpha) + 1/alpha)``
  (``alpha`` the sampling rate ``n_negatives / (n_items - 1)``, ``t`` the calibration
  ``gbce_t``), which undoes the overconfidence that negative sampling teaches; at
  ``t = 1`` it approaches full-softmax quality at a sampled loss's cost.
* ``loss="sampled_ce"``: a softmax over the target and the same uniform negatives
  (uniform sampling needs no logQ correction: it is a constant).

``loss="auto"`` (the default) is ``ce`` up to :data:`FULL_SOFTMAX_MAX_ITEMS` items and
``sampled_ce`` above: on Amazon Games (23,715 items) an epoch of ``ce`` cost 76.9 CPU-s
against 7.8 for ``sampled_ce`` (one thread), the output layer's share growing with the
catalogue. It is resolved from the schema, so a saved model resolves it the same way.

``horizon`` k > 1 (with ``ce``): each position predicts the next k items of the
user's training sequence, not only the next one (the softmax's log-likelihood
averaged over them, Pinnerformer's "dense all-action" loss): a model asked what a
user takes over the coming period, as a temporal split asks, rather than next.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender, require_history
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import UNIT, FloatRange, HParam, IntRange, OneOf, Rule
from kuberec.errors import ConfigError

SequenceLoss = Literal["auto", "ce", "bce", "gbce", "sampled_ce"]
#: Above this many items ``loss="auto"`` samples: a full softmax then costs several times
#: the rest of a step (Games, 23,715 items: ``ce`` 9.9x ``sampled_ce`` per epoch).
FULL_SOFTMAX_MAX_ITEMS = 10_000
#: Losses that read ``negatives`` from the batch: one per position (bce) or k per sequence.
SAMPLED_LOSSES = ("bce", "gbce", "sampled_ce")


class SequenceRecommender(Recommender):
    family = "sequence"

    def __init__(
        self,
        schema: DataSchema,
        *,
        dim: int,
        history_length: int,
        loss: SequenceLoss,
        n_negatives: int = 256,
        gbce_t: float = 0.75,
        horizon: int = 1,
    ) -> None:
        super().__init__(schema)
        loss = effective_loss(loss, schema.n_items)
        if horizon > 1 and loss != "ce":
            raise ConfigError(f"horizon {horizon} > 1 needs loss 'ce' (got {loss!r}); set one")
        self.pad = schema.pad_item
        self.history_length = history_length
        self.loss_type = loss
        self.n_negatives, self.gbce_t, self.horizon = n_negatives, gbce_t, horizon
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
            if "ahead" not in batch:
                return F.cross_entropy(logits, targets[real])
            ahead = batch["ahead"][real]  # (N, horizon): the next items, pad past the end
            taken = ahead != self.pad
            log_probs = F.log_softmax(logits, dim=1).gather(1, ahead.clamp(max=self.pad - 1))
            return -(log_probs * taken).sum() / taken.sum()
        if self.loss_type in ("gbce", "sampled_ce"):
            return self._shared_negative_loss(hidden, targets, batch["negatives"], real)
        pos = (hidden * self.item_embeddings(targets)).sum(-1)[real]
        neg = (hidden * self.item_embeddings(batch["negatives"])).sum(-1)[real]
        ones, zeros = torch.ones_like(pos), torch.zeros_like(neg)
        return F.binary_cross_entropy_with_logits(torch.cat([pos, neg]), torch.cat([ones, zeros]))

    def _shared_negative_loss(
        self, hidden: Tensor, targets: Tensor, negatives: Tensor, real: Tensor
    ) -> Tensor:
        """gBCE or sampled softmax; ``negatives`` (B, k) serve every position of their row."""
        pos = (hidden * self.item_embeddings(targets)).sum(-1)[real]
        neg = torch.einsum("bld,bkd->blk", hidden, self.item_embeddings(negatives))
        # A negative that is the position's own target is no negative: leave it out.
        neg = neg.masked_fill(negatives[:, None, :] == targets[:, :, None], -torch.inf)[real]
        if self.loss_type == "sampled_ce":
            logits = torch.cat([pos[:, None], neg], dim=1)
            return F.cross_entropy(logits, torch.zeros_like(targets[real]))
        alpha = negatives.shape[1] / max(self.schema.n_items - 1, 1)
        beta = alpha * (self.gbce_t * (1.0 - 1.0 / alpha) + 1.0 / alpha)
        positive = -beta * F.logsigmoid(pos)
        negative = -F.logsigmoid(-neg).sum(-1)
        return (positive + negative).mean()

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        sequence = require_history(history, type(self).__name__)[:, -self.history_length :]
        return self.encode(sequence)[:, -1] @ self._catalogue().T


def effective_loss(loss: str, n_items: int) -> str:
    """The loss ``loss`` trains with on a catalogue of ``n_items`` ("auto" resolved)."""
    if loss != "auto":
        return loss
    return "ce" if n_items <= FULL_SOFTMAX_MAX_ITEMS else "sampled_ce"


#: The rules, defaults and constructor keys SASRec and GRU4Rec share.
SEQUENCE_RULES: dict[str, Rule] = {
    "dim": IntRange(1),
    "dropout": UNIT,
    "history_length": IntRange(1),
    "loss": OneOf(("auto", "ce", "bce", "gbce", "sampled_ce")),
    "n_negatives": IntRange(1),
    "gbce_t": FloatRange(0.0, 1.0),
    "horizon": IntRange(1),
}
#: What gbce / sampled_ce draw (gSASRec's 256 negatives, calibration t = 0.75).
SEQUENCE_DEFAULTS: dict[str, HParam] = {"n_negatives": 256, "gbce_t": 0.75, "horizon": 1}
SEQUENCE_KEYS = ("dim", "dropout", "history_length", "loss", "n_negatives", "gbce_t", "horizon")
