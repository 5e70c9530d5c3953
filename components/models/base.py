"""The interface every interaction model shares, so training, scoring and saving are generic.

A model is built from a :class:`DataSchema` (shapes only, so a saved model can be
rebuilt before its weights are loaded), then :meth:`Recommender.attach` copies the
data-derived tables (item and user features, popularity, neighbours) into
buffers. Buffers travel in the ``state_dict``, so a loaded model scores without
the training data. ``forward`` is the training loss, which is what
``DistributedDataParallel`` wraps; every parameter takes part in it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from kuberec.components.models.encoded import DataSchema

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData

#: How a model's training batches are drawn (see :mod:`.samplers`); "none": not trained.
Family = Literal["pairwise", "pointwise", "inbatch", "sequence", "user", "bilateral", "none"]
Batch = dict[str, Tensor]


class Recommender(nn.Module):
    """Scores users against every item; trained by minimising :meth:`loss` on batches."""

    family: ClassVar[Family] = "none"

    def __init__(self, schema: DataSchema) -> None:
        super().__init__()
        self.schema = schema
        #: Items of history :meth:`score` reads: 0 none, ``None`` the whole history.
        self.history_length: int | None = 0

    @property
    def trainable(self) -> bool:
        return self.family != "none"

    @property
    def device(self) -> torch.device:
        tensor: Tensor | None = next(iter(self.parameters()), None)
        if tensor is None:
            tensor = next(iter(self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def attach(self, data: EncodedData) -> None:
        """Copy data-derived tables into buffers; models without any keep the default."""

    def loss(self, batch: Batch) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def forward(self, batch: Batch) -> Tensor:
        return self.loss(batch)

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        """(B, n_items) scores, higher is better, for user indices and padded histories."""
        raise NotImplementedError

    def score_pairs(self, users: Tensor, items: Tensor, history: Tensor | None = None) -> Tensor:
        """(B,) scores of (user, item) pairs: what AUC-style evaluation and re-ranking need."""
        return self.score(users, history).gather(1, items[:, None]).squeeze(1)

    def set_buffer(self, name: str, values: np.ndarray | Tensor) -> None:
        """Overwrite a registered buffer, checking the shape fixed by the schema."""
        current: Tensor = getattr(self, name)
        new = torch.as_tensor(np.asarray(values) if isinstance(values, np.ndarray) else values)
        if tuple(new.shape) != tuple(current.shape):
            raise ValueError(f"buffer {name}: shape {tuple(new.shape)} != {tuple(current.shape)}")
        current.copy_(new.to(current.dtype))


def pad_rows(table: np.ndarray, extra: int = 1) -> np.ndarray:
    """``table`` plus ``extra`` zero rows: the "unknown user" / padding item row."""
    pad = np.zeros((extra, *table.shape[1:]), dtype=table.dtype)
    return np.concatenate([table, pad])


def multi_hot(indices: Tensor, width: int) -> Tensor:
    """(B, width) 0/1 float rows from padded index lists (the pad is ``width``)."""
    rows = torch.zeros(indices.shape[0], width + 1, device=indices.device)
    rows.scatter_(1, indices, 1.0)
    return rows[:, :width]


def require_history(history: Tensor | None, model: str) -> Tensor:
    if history is None:
        raise ValueError(f"{model} scores from the user's item history; pass history (B, L)")
    return history
