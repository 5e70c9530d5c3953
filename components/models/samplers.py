"""Seeded batch samplers, one per training family, each yielding only its rank's shard.

Every epoch, all ranks draw the same permutation of the sampling units
(interactions, or sequence windows) from ``(seed, epoch)`` and rank ``r`` takes
every ``world_size``-th unit starting at ``r``, after trimming the permutation to
a multiple of ``world_size``: shards are disjoint, equally long (so DDP ranks take
the same number of steps) and differ between epochs. Negatives come from a
generator seeded with ``(seed, epoch, rank)``. Batches are dicts of CPU tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import EncodedData
from kuberec.errors import ConfigError

#: Rounds of re-drawing a negative that the user has already seen.
_REJECTION_ROUNDS = 4
#: Batches whose windows are sorted by length together (SequenceSampler).
_BUCKET_BATCHES = 64


def shard_rows(n_rows: int, *, seed: int, epoch: int, rank: int, world_size: int) -> np.ndarray:
    """The unit indices rank ``rank`` of ``world_size`` trains on in ``epoch``."""
    check_shard(rank, world_size)
    order = np.random.default_rng([seed, epoch]).permutation(n_rows)
    usable = n_rows - n_rows % world_size
    return order[:usable][rank::world_size]


def check_shard(rank: int, world_size: int) -> None:
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, world_size={world_size}), got {rank}")


class NegativeSampler:
    """Uniform items a user has not interacted with.

    Rejection sampling for a few rounds (cheap: most users have seen a small share of
    the catalogue), then an exact draw from the unseen items of the few users left.
    A user who has seen every item gets a random (seen) item.
    """

    def __init__(self, data: EncodedData) -> None:
        self.seen = data.seen
        self.n_items = data.n_items
        seen = data.seen.tocoo()
        self._keys = np.sort(seen.row.astype(np.int64) * self.n_items + seen.col)

    def draw(self, rng: np.random.Generator, users: np.ndarray) -> np.ndarray:
        items = rng.integers(0, self.n_items, size=users.shape)
        for _ in range(_REJECTION_ROUNDS):
            clash = self._seen(users, items)
            if not clash.any():
                return items
            items[clash] = rng.integers(0, self.n_items, size=int(clash.sum()))
        flat_users, flat_items = users.reshape(-1), items.reshape(-1)
        left = np.flatnonzero(self._seen(flat_users, flat_items))
        for user in np.unique(flat_users[left]):
            at = left[flat_users[left] == user]
            row = self.seen.indices[self.seen.indptr[user] : self.seen.indptr[user + 1]]
            unseen = np.setdiff1d(np.arange(self.n_items), row, assume_unique=True)
            if len(unseen):
                flat_items[at] = unseen[rng.integers(len(unseen), size=len(at))]
        return flat_items.reshape(items.shape)

    def _seen(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._keys, keys).clip(max=max(len(self._keys) - 1, 0))
        return self._keys[pos] == keys if len(self._keys) else np.zeros(keys.shape, bool)


class BatchSampler:
    """Shuffled, sharded mini-batches over ``n_units`` sampling units."""

    def __init__(
        self, data: EncodedData, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        check_shard(rank, world_size)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.rank, self.world_size = rank, world_size

    @property
    def n_units(self) -> int:
        return self.data.n_interactions

    def shard(self, epoch: int) -> np.ndarray:
        return shard_rows(
            self.n_units, seed=self.seed, epoch=epoch, rank=self.rank, world_size=self.world_size
        )

    def __len__(self) -> int:
        return math.ceil((self.n_units // self.world_size) / self.batch_size)

    def batches(self, epoch: int) -> Iterator[Batch]:
        units = self.shard(epoch)
        rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        for lo in range(0, len(units), self.batch_size):
            arrays = self.make_batch(units[lo : lo + self.batch_size], rng)
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError


class PairwiseSampler(BatchSampler):
    """BPR triples: (user, an item they interacted with, a random item they did not)."""

    def __init__(self, data: EncodedData, **kwargs: int) -> None:
        super().__init__(data, **kwargs)
        self.negatives = NegativeSampler(data)

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        users = self.data.users[units]
        return {
            "users": users,
            "pos_items": self.data.items[units],
            "neg_items": self.negatives.draw(rng, users),
        }


class PointwiseSampler(BatchSampler):
    """Each positive followed by ``n_negatives`` sampled negatives, labels 1/0, with context."""

    def __init__(self, data: EncodedData, *, n_negatives: int, **kwargs: int) -> None:
        super().__init__(data, **kwargs)
        self.n_negatives = n_negatives
        self.negatives = NegativeSampler(data)
        self.context = data.context()

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        width = 1 + self.n_negatives
        users = np.repeat(self.data.users[units], width)
        items = np.repeat(self.data.items[units], width)
        negative = np.tile(np.arange(width) > 0, len(units))
        items[negative] = self.negatives.draw(rng, users[negative])
        return {
            "users": users,
            "items": items,
            "labels": (~negative).astype(np.float32),
            "context": np.repeat(self.context[units], width, axis=0),
        }


class InBatchSampler(BatchSampler):
    """(user, item, the user's ``history_length`` items before it): negatives come in-batch."""

    def __init__(self, data: EncodedData, *, history_length: int, **kwargs: int) -> None:
        super().__init__(data, **kwargs)
        self.history_length = history_length

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        users = self.data.users[units]
        start = self.data.history.indptr[users]
        history = _window(self.data.items, units - 1, start, self.history_length, self.data.n_items)
        return {"users": users, "items": self.data.items[units], "history": history}


class SequenceSampler(BatchSampler):
    """Windows of each user's sequence: inputs and next-item targets, at most ``history_length``.

    A user with n items yields windows ending at positions n-1, n-1-L, ... so every
    item after the first is a target exactly once per epoch. ``negatives``: one unseen
    item per position (the BCE loss); ``shared_negatives`` k > 0: k uniform items per
    window, shared by its positions (gBCE and sampled softmax; the loss drops a
    negative that equals a position's target).
    """

    def __init__(
        self,
        data: EncodedData,
        *,
        history_length: int,
        negatives: bool = False,
        shared_negatives: int = 0,
        horizon: int = 1,
        **kwargs: int,
    ) -> None:
        super().__init__(data, **kwargs)
        self.history_length, self.with_negatives = history_length, negatives
        self.shared_negatives, self.horizon = shared_negatives, horizon
        self.window_end, self.window_user = _windows(data, history_length)
        self.negatives = NegativeSampler(data)

    @property
    def n_units(self) -> int:
        return len(self.window_end)

    def batches(self, epoch: int) -> Iterator[Batch]:
        """Batches of similar-length windows, in random order, each cut to its longest window.

        Most sequences are far shorter than ``history_length`` (Games: median 4 of 50),
        so padding every batch to full width wastes most of the attention and
        recurrence. Within each run of ``_BUCKET_BATCHES`` shuffled batches, windows are
        sorted by length before they are cut into batches, and the batches are shuffled
        again: every window is still seen once per epoch, with the same batch count.
        """
        units = self.shard(epoch)
        rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        lengths = self._lengths(units)
        span = self.batch_size * _BUCKET_BATCHES
        cuts = []
        for lo in range(0, len(units), span):
            order = lo + np.argsort(lengths[lo : lo + span], kind="stable")
            cuts += [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for at in rng.permutation(len(cuts)):
            arrays = self.make_batch(units[cuts[at]], rng)
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def _lengths(self, units: np.ndarray) -> np.ndarray:
        ends, users = self.window_end[units], self.window_user[units]
        return np.minimum(ends - self.data.history.indptr[users], self.history_length)

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        ends, users = self.window_end[units], self.window_user[units]
        start = self.data.history.indptr[users]
        pad = self.data.n_items
        length = max(int(self._lengths(units).max(initial=1)), 1)
        inputs = _window(self.data.items, ends - 1, start, length, pad)
        targets = np.where(inputs != pad, _window(self.data.items, ends, start, length, pad), pad)
        batch = {"users": users, "inputs": inputs, "targets": targets}
        if self.horizon > 1:
            batch["ahead"] = self._ahead(users, ends, length, inputs != pad)
        if self.with_negatives:
            drawn = self.negatives.draw(rng, np.repeat(users, length).reshape(targets.shape))
            batch["negatives"] = np.where(targets != pad, drawn, pad)
        elif self.shared_negatives:
            batch["negatives"] = rng.integers(0, pad, size=(len(units), self.shared_negatives))
        return batch

    def _ahead(
        self, users: np.ndarray, ends: np.ndarray, length: int, real: np.ndarray
    ) -> np.ndarray:
        """(B, length, horizon) the next ``horizon`` items after each input position, read
        past the window up to the user's last training item; pad where there are none."""
        rows = (ends - length + 1)[:, None, None] + np.arange(length)[None, :, None]
        rows = rows + np.arange(self.horizon)[None, None, :]
        last = self.data.history.indptr[users + 1][:, None, None] - 1
        valid = (rows <= last) & real[:, :, None]
        items = self.data.items[np.minimum(rows, len(self.data.items) - 1)]
        return np.where(valid, items, self.data.n_items)


class UserSampler(BatchSampler):
    """Batches of users with their whole histories (autoencoders read a user's item set)."""

    def __init__(self, data: EncodedData, **kwargs: int) -> None:
        super().__init__(data, **kwargs)
        self.active = np.flatnonzero(data.history.lengths() > 0)

    @property
    def n_units(self) -> int:
        return len(self.active)

    def make_batch(self, units: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        users = self.active[units]
        return {"users": users, "history": self.data.history.recent(users, None)}


class BilateralSampler(UserSampler):
    """Each step a batch of users with their histories and a batch of items with their users.

    Bilateral models (BiVAE) encode both sides; pairing the two in one step lets one
    optimiser train both encoders. An epoch covers the longer side once and cycles the
    shorter, each side in its own shuffled order.
    """

    def __init__(self, data: EncodedData, **kwargs: int) -> None:
        super().__init__(data, **kwargs)  # the active users and their batches
        columns = data.seen.tocsc()
        self.item_indptr, self.item_users = columns.indptr, columns.indices.astype(np.int64)
        self.active_items = np.flatnonzero(np.diff(self.item_indptr) > 0)

    @property
    def n_units(self) -> int:
        return max(len(self.active), len(self.active_items))

    def batches(self, epoch: int) -> Iterator[Batch]:
        shard = {"seed": self.seed, "epoch": epoch, "rank": self.rank}
        users = shard_rows(len(self.active), **shard, world_size=self.world_size)
        items = self.active_items[
            shard_rows(len(self.active_items), **shard, world_size=self.world_size)
        ]
        rng = np.random.default_rng([self.seed, epoch, self.rank, 1])
        total = max(len(users), len(items)) if len(users) and len(items) else 0
        for lo in range(0, total, self.batch_size):
            at = np.arange(lo, min(lo + self.batch_size, total))
            batch_items = items[at % len(items)]
            arrays = {
                **self.make_batch(users[at % len(users)], rng),
                "items": batch_items,
                "item_users": self._users_of(batch_items),
            }
            yield {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def _users_of(self, items: np.ndarray) -> np.ndarray:
        """(B, longest) users of each item, right-padded with ``n_users``."""
        starts, stops = self.item_indptr[items], self.item_indptr[items + 1]
        out = np.full((len(items), max(int((stops - starts).max(initial=1)), 1)), self.data.n_users)
        for row, (lo, hi) in enumerate(zip(starts, stops, strict=True)):
            out[row, : hi - lo] = self.item_users[lo:hi]
        return out


def _window(
    items: np.ndarray, last: np.ndarray, start: np.ndarray, length: int, pad: int
) -> np.ndarray:
    """(B, length) items at rows last-length+1..last, padded where a row is before ``start``."""
    rows = last[:, None] - length + 1 + np.arange(length)[None, :]
    valid = rows >= start[:, None]
    return (
        np.where(valid, items[np.clip(rows, 0, None)], pad)
        if len(items)
        else np.full(rows.shape, pad)
    )


def _windows(data: EncodedData, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute end rows and users of every training window, users in index order."""
    indptr = data.history.indptr
    lens = np.diff(indptr)
    per_user = np.where(lens >= 2, (lens - 1 + length - 1) // length, 0)
    users = np.repeat(np.arange(len(lens), dtype=np.int64), per_user)
    k = np.arange(len(users)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    return indptr[users + 1] - 1 - k * length, users


def make_sampler(
    model: Recommender,
    data: EncodedData,
    hparams: Mapping[str, Any],
    *,
    seed: int,
    rank: int = 0,
    world_size: int = 1,
) -> BatchSampler:
    """The sampler of ``model``'s training family, configured from its hyperparameters."""
    common: dict[str, Any] = {
        "batch_size": hparams["batch_size"],
        "seed": seed,
        "rank": rank,
        "world_size": world_size,
    }
    family = model.family
    if family == "pairwise":
        return PairwiseSampler(data, **common)
    if family == "pointwise":
        return PointwiseSampler(data, n_negatives=int(hparams["n_negatives"]), **common)
    if family == "inbatch":
        return InBatchSampler(data, history_length=int(model.history_length or 1), **common)
    if family == "sequence":
        loss = getattr(model, "loss_type", "ce")
        shared = int(getattr(model, "n_negatives", 0)) if loss in ("gbce", "sampled_ce") else 0
        return SequenceSampler(
            data,
            history_length=int(model.history_length or 1),
            negatives=loss == "bce",
            shared_negatives=shared,
            horizon=int(getattr(model, "horizon", 1)),
            **common,
        )
    if family == "user":
        return UserSampler(data, **common)
    if family == "bilateral":
        return BilateralSampler(data, **common)
    raise ConfigError(f"{type(model).__name__} is not trained with batches (family {family!r})")
