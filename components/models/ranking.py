"""The re-ranking stage: a candidate pool from the scores -> the final list of K.

Scoring says how much a user may like each item; this stage turns the best
``candidates`` of them into the list that is shown, with the business rules a
product team declares in ``spec.serving.ranking``:

* **diversity** (maximal marginal relevance, Carbonell & Goldstein 1998): each
  next item maximises ``(1 - diversity) * boosted(i) - diversity * max_sim(i, chosen)``,
  where relevance is the pool's scores scaled to [0, 1] and similarity is the
  model's item similarity (cosine of item embeddings, or of co-occurrence columns
  where the model has none: the measure ``/similar`` answers with);
* **novelty** / **freshness** boosts added to that relevance: ``novelty`` times the
  item's self-information ``-log2 p(i)`` (scaled to [0, 1] over the catalogue), and
  ``freshness`` times how recently the item first appeared in the training data;
* **maxPerCategory**: at most that many items sharing a category (genre) on each
  page of ``pageSize`` positions; items without a category are never capped;
* **pinned** items first, in their order (those the user may be shown at all:
  not seen, not filtered out, not excluded), and **excluded** items never.

Everything is deterministic: equal objectives go to the better-ranked pool item,
so with no rule active (diversity 0, no boosts, caps, pins or exclusions) the list
is exactly the plain top-K, and the stage is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from pydantic import ValidationError

from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models.encoded import UserHistory
from kuberec.components.models.recommend import TopK, _as_array, _candidates, top_k, top_k_among
from kuberec.errors import ConfigError


class RankingError(ConfigError):
    """A strategy this model cannot apply; ``field`` is the path of the offending field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def parse_ranking(values: Mapping[str, Any], what: str) -> RankingSpec:
    """A strategy from plain values; a mistake names ``what`` and the field."""
    try:
        return RankingSpec.model_validate(dict(values))
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        raise RankingError(f"{what}.{field}", message) from None


def parse_assignments(assignments: Sequence[str], what: str = "--ranking") -> RankingSpec:
    """``KEY=VALUE`` strings (``diversity=0.3``, ``pinned=50,181``) -> a strategy."""
    values: dict[str, Any] = {}
    for text in assignments:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what}: expected KEY=VALUE, got {text!r}")
        key = key.strip()
        if key in ("pinned", "excluded"):
            values[key] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            values[key] = value.strip()
    return parse_ranking(values, what)


class ItemSimilarity(Protocol):
    def between(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(len(left), len(right)) similarities of item indices."""
        ...

    def row(self, item: int) -> np.ndarray:
        """(n_items,) similarities of one item to every item."""
        ...

    def neighbour_table(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(n_items, m) nearest items and similarities, best first, if precomputed."""
        ...


#: Up to this many catalogue items per pool item, one item's similarities to the whole
#: catalogue (one product over contiguous vectors) beat gathering the pool's vectors.
ROW_RATIO = 16


@dataclass(frozen=True)
class ItemSignals:
    """What the stage knows about every item of one model's catalogue."""

    similarity: ItemSimilarity
    categories: np.ndarray  # (n_items, n_categories) bool
    novelty: np.ndarray  # (n_items,) in [0, 1]: scaled self-information
    freshness: np.ndarray | None  # (n_items,) in [0, 1], 1 = newest; None: no first-seen times

    @property
    def n_items(self) -> int:
        return len(self.novelty)


def item_signals(
    history: UserHistory,
    categories: np.ndarray,
    similarity: ItemSimilarity,
    first_seen: np.ndarray | None = None,
) -> ItemSignals:
    """Signals from the training histories, the item features and a similarity."""
    counts = np.bincount(history.items, minlength=history.n_items).astype(np.float64)
    information = -np.log2((counts + 1.0) / (counts.sum() + len(counts)))
    novelty = _unit(information)
    freshness = None
    if first_seen is not None:
        times = np.asarray(first_seen, dtype=np.float64)
        known = times >= 0
        if known.any():  # an item never taken in training is the newest there is
            freshness = np.where(known, _unit(np.where(known, times, times[known].min())), 1.0)
    return ItemSignals(similarity, np.asarray(categories) > 0, novelty, freshness)


def model_signals(
    model: Any, history: UserHistory, categories: np.ndarray, first_seen: np.ndarray | None = None
) -> ItemSignals:
    """Signals with the similarity serving uses for this model (embeddings or co-occurrence)."""
    from kuberec.components.models.factors import factorize
    from kuberec.components.models.similarity import Similarity

    factors = factorize(model)
    similarity = Similarity(history, factors.embeddings if factors is not None else None)
    return item_signals(history, categories, similarity, first_seen)


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if high <= low:
        return np.zeros(len(values))
    return (values - low) / (high - low)


@dataclass(frozen=True)
class Ranking:
    """A strategy in one model's terms: item indices instead of ids."""

    spec: RankingSpec
    pinned: np.ndarray
    excluded: np.ndarray

    @property
    def active(self) -> bool:
        """False when the stage would return the plain top-K anyway."""
        s = self.spec
        return bool(
            s.diversity
            or s.novelty
            or s.freshness
            or s.max_per_category
            or len(self.pinned)
            or len(self.excluded)
        )

    def pool(self, k: int, n_items: int) -> int:
        """How many best-scored items to re-rank for a list of ``k``."""
        if not self.active:
            return k
        return min(n_items, max(k, self.spec.candidates))


def resolve(
    spec: RankingSpec,
    items: IdIndex,
    signals: ItemSignals | None = None,
    *,
    what: str = "ranking",
    strict: bool = True,
) -> Ranking:
    """Ids -> indices, checked against the model.

    ``strict``: an unknown pinned id, or a boost the model has no data for, is an
    error naming the field; otherwise unknown pins are dropped (a job's promotion
    may outlive an item). Unknown excluded ids are always dropped: they cannot
    appear anyway.
    """
    pinned = np.asarray([items.find(i) for i in spec.pinned], dtype=np.int64)
    if strict and (pinned < 0).any():
        unknown = [i for i, p in zip(spec.pinned, pinned, strict=True) if p < 0]
        raise RankingError(
            f"{what}.pinned", f"unknown item(s) {unknown}: not in the model's catalogue"
        )
    if signals is not None and spec.freshness and signals.freshness is None:
        raise RankingError(
            f"{what}.freshness",
            "this model has no first-seen times (its data had no timestamps); use novelty instead",
        )
    pinned = pinned[pinned >= 0]
    _, first = np.unique(pinned, return_index=True)
    excluded = np.asarray([items.find(i) for i in spec.excluded], dtype=np.int64)
    return Ranking(spec, pinned[np.sort(first)], np.unique(excluded[excluded >= 0]))


def rerank(
    pool: np.ndarray,
    scores: np.ndarray,
    k: int,
    ranking: Ranking,
    signals: ItemSignals,
    pinned: np.ndarray | None = None,
) -> np.ndarray:
    """The final list of up to ``k`` item indices: pins first, then the greedy picks.

    ``pool``: item indices, best first; ``scores`` their scores. ``pinned``: the
    pins this user may be shown (default: all of the ranking's).
    """
    spec = ranking.spec
    pins = (ranking.pinned if pinned is None else np.asarray(pinned, np.int64))[:k]
    chosen = list(pins.tolist())
    if len(pool) == 0:  # e.g. a user who has seen the whole catalogue: nothing left to pick
        return np.asarray(chosen, dtype=np.int64)
    taken = np.isin(pool, pins)  # pool positions no longer available
    objective = _unit_scores(scores) + spec.novelty * signals.novelty[pool]
    if spec.freshness and signals.freshness is not None:
        objective = objective + spec.freshness * signals.freshness[pool]
    base = (1.0 - spec.diversity) * objective
    penalty = _Penalty(signals, pool) if spec.diversity else None
    if penalty is not None:
        for pin in chosen:
            penalty.add(pin)
    caps = (
        _Caps(signals, pool, spec.max_per_category, spec.page_size)
        if (spec.max_per_category)
        else None
    )
    if caps is not None:
        for pin in chosen:
            caps.add(pin)
    blocked = np.where(taken, -np.inf, 0.0)  # -inf: may not be chosen next
    while len(chosen) < k:
        if caps is not None:
            blocked = caps.blocked(taken)
        value = (
            base + blocked
            if penalty is None
            else (base - spec.diversity * penalty.nearest + blocked)
        )
        best = int(np.argmax(value))  # the first of equal values: the better-scored item
        if value[best] == -np.inf:
            break
        chosen.append(int(pool[best]))
        taken[best] = True
        blocked[best] = -np.inf
        if penalty is not None:
            penalty.add(int(pool[best]))
        if caps is not None:
            caps.add(int(pool[best]))
    return np.asarray(chosen, dtype=np.int64)


class _Caps:
    """Which pool items a category cap rules out at the next position.

    Kept up to date item by item: only the chosen item's own categories can fill
    up, so a position costs a pass over the pool only when one does.
    """

    def __init__(self, signals: ItemSignals, pool: np.ndarray, limit: int, page: int) -> None:
        self.categories = signals.categories
        self.pool_categories = signals.categories[pool]
        self.limit = limit
        self.page = page
        self._counts = np.zeros(self.categories.shape[1], dtype=np.int64)
        self._capped = np.zeros(len(pool), dtype=bool)
        self._on_page = 0

    def add(self, item: int) -> None:
        """``item`` takes the next position (a pin or a pick)."""
        mine = self.categories[item]
        self._counts += mine
        full = mine & (self._counts >= self.limit)
        if full.any():
            self._capped |= self.pool_categories[:, full].any(axis=1)
        self._on_page += 1
        if self._on_page == self.page:  # a new page: every cap starts again
            self._counts[:] = 0
            self._capped[:] = False
            self._on_page = 0

    def blocked(self, taken: np.ndarray) -> np.ndarray:
        return np.where(taken | self._capped, -np.inf, 0.0)


class _Penalty:
    """Each pool item's largest similarity to the items chosen so far (MMR's penalty).

    With a precomputed neighbour table (small and mid-sized catalogues) an update
    touches the chosen item's nearest neighbours only, and every other item counts
    as similarity 0 to it: they are less similar than its ``m``-th neighbour, and
    MMR's penalty is about the most similar ones. Otherwise the chosen item's
    similarities to the whole pool are computed, whichever way is cheaper.
    """

    def __init__(self, signals: ItemSignals, pool: np.ndarray) -> None:
        # One spare slot past the pool: neighbours outside the pool all land there,
        # so a table update is a gather, a maximum and a scatter, with no mask.
        self._slots = np.zeros(len(pool) + 1)
        self.nearest = self._slots[:-1]
        self.pool = pool
        small = signals.n_items <= ROW_RATIO * len(pool)
        table = signals.similarity.neighbour_table()
        self.add: Callable[[int], None]
        if table is not None:
            self.neighbours, self.weights = table
            if small:
                position = np.full(signals.n_items, len(pool), dtype=np.int64)
                position[pool] = np.arange(len(pool))
                self.position: Callable[[np.ndarray], np.ndarray] = position.__getitem__
            else:  # a lookup over the whole catalogue would cost more
                self.position = _PoolPositions(pool)
            self.add = self._add_neighbours
        elif small:
            self.row = signals.similarity.row
            self.add = self._add_row
        else:
            self.to_pool = signals.similarity.against(pool)
            self.add = self._add_to_pool

    def _add_neighbours(self, item: int) -> None:
        where = self.position(self.neighbours[item])
        self._slots[where] = np.maximum(self._slots[where], self.weights[item])

    def _add_row(self, item: int) -> None:
        np.maximum(self.nearest, self.row(item)[self.pool], out=self.nearest)

    def _add_to_pool(self, item: int) -> None:
        np.maximum(self.nearest, self.to_pool(item), out=self.nearest)


class _PoolPositions:
    """Item indices -> their place in the pool (``len(pool)`` outside it), by binary search."""

    def __init__(self, pool: np.ndarray) -> None:
        self.order = np.argsort(pool, kind="stable")
        self.sorted = pool[self.order]
        self.outside = len(pool)

    def __call__(self, items: np.ndarray) -> np.ndarray:
        if not self.outside:
            return np.zeros(len(items), dtype=np.int64)
        at = np.minimum(np.searchsorted(self.sorted, items), self.outside - 1)
        return np.where(self.sorted[at] == items, self.order[at], self.outside)


def _unit_scores(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(len(values))
    values = np.where(finite, values, values[finite].min())
    return _unit(values)


@dataclass(frozen=True)
class Ranker:
    """:func:`top_k` followed by the stage: a drop-in ``select`` for batches of score rows."""

    ranking: Ranking
    signals: ItemSignals

    def __call__(
        self, scores: Any, k: int, *, exclude: Any = None, allowed: np.ndarray | None = None
    ) -> TopK:
        if not self.ranking.active:
            return top_k(scores, k, exclude=exclude, allowed=allowed)
        values = _as_array(scores)
        n_rows, n_items = values.shape
        candidate = _candidates(values.shape, exclude, allowed)
        candidate[:, self.ranking.excluded] = False
        pool = top_k_among(values, candidate, self.ranking.pool(k, n_items))
        items = np.full((n_rows, k), -1, dtype=np.int64)
        for row in range(n_rows):
            found, row_scores = pool.row(row)
            pins = self.ranking.pinned[candidate[row, self.ranking.pinned]]
            chosen = rerank(found, row_scores, k, self.ranking, self.signals, pins)
            items[row, : len(chosen)] = chosen
        width = int((items >= 0).sum(axis=1).max(initial=0))
        items = items[:, :width]
        rows = np.arange(n_rows)[:, None]
        picked = np.where(items >= 0, values[rows, np.maximum(items, 0)], -np.inf)
        return TopK(items, picked.astype(np.float32))
