"""EASE and EASE-T: closed-form linear item-item autoencoders (Steck 2019).

EASE solves ``min ||X - XB||² + λ||B||²`` with ``diag(B) = 0`` in closed form:
``P = (G + λI)⁻¹``, ``B = -P / diag(P)``, where ``G = XᵀX`` is the item
co-occurrence Gram matrix. Scores are ``X_u · B``.

EASE-T replaces G by ``(1-a)·G + a·K``, where ``K[i,j]`` sums
``exp(-|t_ui - t_uj| / τ)`` over users who interacted with both i and j: items
a user took together (MovieLens users rated a page of films in one sitting)
weigh more than items taken months apart. K is a sum of per-user Gram matrices
of a positive-definite kernel, so it stays positive semi-definite and the closed
form still holds. ``a = 0`` is plain EASE. On ml-100k's stratified protocol this
is the best model measured here (see benchmarks/RESULTS.md); on a temporal split
it is no better than EASE.

Not trained by gradient descent: fitting is one matrix inverse, O(n_items³)
time and O(n_items²) memory, so the registry refuses catalogues above
``max_items``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import Tensor

from kuberec.components.models.base import Recommender, require_history
from kuberec.components.models.encoded import DataSchema, EncodedData
from kuberec.components.models.hparams import FloatRange, IntRange, Rule
from kuberec.components.models.model_type import ModelType
from kuberec.errors import ConfigError

_PAIRS_PER_CHUNK = 4_000_000


class EASE(Recommender):
    def __init__(
        self, schema: DataSchema, *, lam: float, time_mix: float, time_tau: float, max_items: int
    ) -> None:
        super().__init__(schema)
        if schema.n_items > max_items:
            raise ConfigError(
                f"ease: the catalogue has {schema.n_items} items, above max_items ({max_items}); "
                "EASE needs an n_items x n_items inverse. Raise max_items if memory allows "
                "(8 bytes x n_items² twice), or choose two_tower for large catalogues"
            )
        self.history_length = None  # scores read the whole history
        self.lam, self.time_mix, self.time_tau = lam, time_mix, time_tau
        self.register_buffer("weights", torch.zeros(schema.n_items, schema.n_items))

    def attach(self, data: EncodedData) -> None:
        gram = _cooccurrence(data)
        if self.time_mix > 0 and data.has_timestamps:
            kernel = _time_kernel(data, self.time_tau)
            gram = (1 - self.time_mix) * gram + self.time_mix * kernel
        self.set_buffer("weights", closed_form(gram, self.lam).astype(np.float32))

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        history = require_history(history, "EASE")
        n_items = self.schema.n_items
        rows = torch.zeros(len(history), n_items + 1, device=history.device)
        rows = rows.scatter_(1, history, 1.0)[:, :n_items]  # binary X_u; the pad column dropped
        return rows @ self.weights


def closed_form(gram: np.ndarray, lam: float) -> np.ndarray:
    """``B = -P / diag(P)`` with ``P = (gram + λI)⁻¹`` and a zero diagonal."""
    regularised = gram.astype(np.float64, copy=True)
    regularised[np.diag_indices_from(regularised)] += lam
    inverse = np.linalg.inv(regularised)
    weights = inverse / (-np.diag(inverse))
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def _cooccurrence(data: EncodedData) -> np.ndarray:
    seen = data.seen.astype(np.float64)
    return np.asarray((seen.T @ seen).todense())


def _time_kernel(data: EncodedData, tau_seconds: float) -> np.ndarray:
    """K[i,j] = Σ_u Σ exp(-|t_ui - t_uj| / τ) over u's interactions, accumulated in chunks."""
    n_items = data.n_items
    users, items = data.users, data.items
    seconds = data.timestamps.astype(np.float64) / 1e9
    _, first = np.unique(users, return_index=True)  # interactions are in (user, time) order
    bounds = np.append(first, len(users))
    kernel = np.zeros(n_items * n_items)
    rows: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    pending = 0
    for lo, hi in itertools.pairwise(bounds):
        mine, times = items[lo:hi], seconds[lo:hi]
        pair = np.exp(-np.abs(times[:, None] - times[None, :]) / tau_seconds)
        rows.append((mine[:, None] * n_items + mine[None, :]).ravel())
        weights.append(pair.ravel())
        pending += len(mine) ** 2
        if pending >= _PAIRS_PER_CHUNK:
            kernel += np.bincount(np.concatenate(rows), np.concatenate(weights), n_items**2)
            rows, weights, pending = [], [], 0
    if rows:
        kernel += np.bincount(np.concatenate(rows), np.concatenate(weights), n_items**2)
    return kernel.reshape(n_items, n_items)


_EASE_RULES: dict[str, Rule] = {
    "lam": FloatRange(0.0, open_minimum=True),
    "time_mix": FloatRange(0.0, 1.0),
    "time_tau": FloatRange(0.0, open_minimum=True),
    "max_items": IntRange(1),
}
_EASE_KEYS = ("lam", "time_mix", "time_tau", "max_items")

MODEL_TYPES = (
    ModelType(
        "ease",
        EASE,
        "closed-form linear item-item autoencoder (EASE)",
        defaults={"lam": 800.0, "time_mix": 0.0, "time_tau": 60.0, "max_items": 20_000},
        rules=_EASE_RULES,
        model_keys=_EASE_KEYS,
    ),
    ModelType(
        "ease_t",
        EASE,
        "EASE over co-occurrence mixed with a time-proximity kernel",
        defaults={"lam": 150.0, "time_mix": 0.7, "time_tau": 60.0, "max_items": 20_000},
        rules=_EASE_RULES,
        model_keys=_EASE_KEYS,
    ),
)
