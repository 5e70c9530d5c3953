"""The serving logic, free of HTTP: ids in, ranked and explained items out.

One :class:`Engine` holds a loaded model with everything around it (id
mappings, histories, titles, the retrieval index) and answers batches of
queries, which is what the service's adaptive batching (:mod:`.batching`) hands
over. A user the model has never seen, with no recent items to go on (or a
model that cannot read them), gets the most popular items, flagged as a
fallback, so a cold user is never an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models import LoadedModel, genre_mask, load_model
from kuberec.components.models.factors import Factors, factorize
from kuberec.components.models.ranking import (
    Ranking,
    RankingError,
    item_signals,
    rerank,
    resolve,
)
from kuberec.components.models.similarity import Similarity
from kuberec.components.package import PackagedModel, model_dir, resolve_model
from kuberec.errors import ConfigError
from kuberec.serving.cold_items import NewItems, add_new_items
from kuberec.serving.explain import Explainer, load_titles
from kuberec.serving.retrieval import (
    AnnIndex,
    ExactIndex,
    build_index,
    history_item_scores,
    history_scores,
    item_item_weights,
    masked_top_k,
)

log = logging.getLogger(__name__)


class RequestError(ConfigError):
    """A request that is well formed but cannot be answered as asked; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message


@dataclass(frozen=True)
class Query:
    """One recommendation request in model terms (dense indices; user -1: unknown)."""

    user: int
    recent: tuple[int, ...] = ()
    k: int = 10
    exclude_seen: bool = True
    genres: tuple[str, ...] | None = None
    ranking: Ranking | None = field(default=None, compare=False)  # None: the engine's own

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "recent": list(self.recent),
            "k": self.k,
            "exclude_seen": self.exclude_seen,
            "genres": None if self.genres is None else list(self.genres),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Query:
        genres = values.get("genres")
        return cls(
            int(values["user"]),
            tuple(int(i) for i in values.get("recent", ())),
            int(values.get("k", 10)),
            bool(values.get("exclude_seen", True)),
            None if genres is None else tuple(str(g) for g in genres),
        )


@dataclass(frozen=True)
class Ranked:
    items: np.ndarray  # dense indices, best first
    scores: np.ndarray
    fallback: bool
    history: np.ndarray = field(repr=False)  # what the list was based on (for explanations)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items.tolist(),
            "scores": [float(s) for s in self.scores],
            "fallback": self.fallback,
        }


def model_version(packaged: PackagedModel) -> str:
    """The BentoML tag; a plain run directory is named by its folder."""
    if packaged.metadata.get("run_dir") is not None:
        return f"run-{Path(packaged.metadata['run_dir']).name}"
    return packaged.tag


class Engine:
    new_items: NewItems = NewItems()  # set by load: the item source's items since training

    def __init__(
        self,
        loaded: LoadedModel,
        version: str,
        titles: Sequence[str] | None = None,
        *,
        ann_min_items: int | None = None,
        with_index: bool = True,
        ranking: RankingSpec | None = None,
    ) -> None:
        self.loaded = loaded
        self.version = version
        #: Each item's id as JSON gives it (int or str), by dense index: made once, not per item.
        self.plain_ids: list[int | str] = [
            int(v) if isinstance(v, int | np.integer) else str(v)
            for v in loaded.item_index.ids.tolist()
        ]
        self.model = loaded.model
        self.n_items = loaded.schema.n_items
        self.uses_history = self.model.history_length != 0
        self.factors: Factors | None = factorize(self.model)
        self.item_item = item_item_weights(self.model) if self.factors is None else None
        self.index: ExactIndex | AnnIndex | None = None
        self.exact: ExactIndex | None = None
        if self.factors is not None and with_index:
            self.index = build_index(self.factors.items, min_items=ann_min_items)
            self.exact = (
                self.index if isinstance(self.index, ExactIndex) else ExactIndex(self.factors.items)
            )
        counts = np.bincount(loaded.history.items, minlength=self.n_items).astype(np.float32)
        self.popularity = counts
        self.popular_order = np.lexsort((np.arange(self.n_items), -counts))
        embeddings = self.factors.embeddings if self.factors is not None else None
        self.similarity = Similarity(loaded.history, embeddings)
        self.titles = (
            list(titles)
            if titles is not None
            else [f"item {i}" for i in loaded.item_index.ids.tolist()]
        )
        self.explainer = Explainer(self.similarity, self.titles)
        self.signals = item_signals(
            loaded.history, loaded.item_genres, self.similarity, loaded.item_first_seen
        )
        self.ranking_spec = ranking or RankingSpec()
        # The job's pins may name items a retrained model no longer has: those are dropped.
        self.ranking = resolve(self.ranking_spec, loaded.item_index, self.signals, strict=False)

    @classmethod
    def load(
        cls,
        reference: str | Path,
        *,
        ann_min_items: int | None = None,
        with_index: bool = True,
        ranking: RankingSpec | None = None,
    ) -> Engine:
        """A run directory, BentoML tag or artifact URI -> a ready engine.

        ``with_index=False``: no retrieval index (a front end that only maps ids and explains).
        """
        packaged = resolve_model(reference)
        folder = model_dir(packaged)
        # Items added to the item source since training, from their text (.cold_items).
        loaded, new_items = add_new_items(load_model(folder), folder.parent)
        titles = new_items.titled(load_titles(folder.parent, loaded.item_index))
        engine = cls(
            loaded,
            model_version(packaged),
            titles,
            ann_min_items=ann_min_items,
            with_index=with_index,
            ranking=ranking,
        )
        engine.new_items = new_items
        log.info(
            "loaded %s (%s, %d items, index %s)",
            engine.version,
            loaded.model_type,
            engine.n_items,
            type(engine.index).__name__ if engine.index else "model",
        )
        return engine

    # ids <-> indices -------------------------------------------------------------------
    def user(self, user_id: object) -> int:
        return _encode(self.loaded.user_index, user_id)

    def items(self, item_ids: Sequence[object]) -> tuple[np.ndarray, list[object]]:
        """Dense indices of the known ids, and the unknown ids as given."""
        index = np.asarray([_encode(self.loaded.item_index, i) for i in item_ids], np.int64)
        unknown = [i for i, x in zip(item_ids, index, strict=True) if x < 0]
        return index[index >= 0], unknown

    def item_id(self, index: int) -> int | str:
        return self.plain_ids[int(index)]

    def check_genres(self, genres: Sequence[str]) -> None:
        try:
            genre_mask(self.loaded.item_genres, self.loaded.encodings.genres, genres)
        except ConfigError as exc:
            raise RequestError("filters.genres", str(exc)) from None

    def ranking_for(self, override: RankingSpec | None) -> Ranking:
        """The job's strategy with a request's fields over it; a bad one names the field."""
        if override is None:
            return self.ranking
        spec = self.ranking_spec.override(override)
        try:
            return resolve(spec, self.loaded.item_index, self.signals)
        except RankingError as exc:
            raise RequestError(exc.field, exc.reason) from None

    # ranking ---------------------------------------------------------------------------
    def history(self, query: Query) -> np.ndarray:
        known = self.loaded.history.of(query.user) if query.user >= 0 else np.zeros(0, np.int64)
        return np.concatenate([known, np.asarray(query.recent, dtype=np.int64)])

    def is_fallback(self, query: Query) -> bool:
        if query.user >= 0:
            return False
        return not (self.uses_history and query.recent)

    @torch.no_grad()
    def rank(self, queries: Sequence[Query]) -> list[Ranked]:
        """Top-K per query, re-ranked (:mod:`~kuberec.components.models.ranking`).

        Each query first gets its candidate pool (the best ``candidates`` items,
        past its exclusions) from the plain path, then the stage picks its K.
        """
        rankings = [q.ranking or self.ranking for q in queries]
        pooled = [
            replace(q, k=r.pool(q.k, self.n_items)) for q, r in zip(queries, rankings, strict=True)
        ]
        found = self._rank_plain(pooled)
        return [
            self._rerank(q, r, ranked) if r.active else ranked
            for q, r, ranked in zip(queries, rankings, found, strict=True)
        ]

    def _rerank(self, query: Query, ranking: Ranking, pool: Ranked) -> Ranked:
        pins = ranking.pinned
        if len(pins):
            allowed = self._allowed(query.genres)
            keep = ~np.isin(pins, ranking.excluded)
            if query.exclude_seen:
                keep &= ~np.isin(pins, pool.history)
            if allowed is not None:
                keep &= allowed[pins]
            pins = pins[keep]
        items = rerank(pool.items, pool.scores, query.k, ranking, self.signals, pins)
        values = self._scores_in(query, items, pool)
        return Ranked(items, values, pool.fallback, pool.history)

    def _scores_in(self, query: Query, items: np.ndarray, pool: Ranked) -> np.ndarray:
        """The scores of ``items`` as the pool has them; pins from outside it are scored."""
        values = np.zeros(len(items), dtype=np.float32)
        inside = np.zeros(len(items), dtype=bool)
        if len(pool.items):  # K x pool comparisons: cheaper than sorting the pool per query
            matches = items[:, None] == pool.items[None, :]
            inside = matches.any(axis=1)
            values[inside] = pool.scores[matches[inside].argmax(axis=1)]
        if not inside.all():
            [(found, _)] = self.score([(query, items[~inside])])
            values[~inside] = found
        return values

    def _rank_plain(self, queries: Sequence[Query]) -> list[Ranked]:
        """Top-K per query; one model call for all personalised queries of the batch."""
        results: list[Ranked | None] = [None] * len(queries)
        personal = [i for i, q in enumerate(queries) if not self.is_fallback(q)]
        for i, q in enumerate(queries):
            if i not in personal:
                results[i] = self._popular(q)
        if personal:
            for i, ranked in zip(
                personal, self._personal([queries[i] for i in personal]), strict=True
            ):
                results[i] = ranked
        return [r for r in results if r is not None]

    def _allowed(self, genres: tuple[str, ...] | None) -> np.ndarray | None:
        if genres is None:
            return None
        return genre_mask(self.loaded.item_genres, self.loaded.encodings.genres, genres)

    def _popular(self, query: Query) -> Ranked:
        order = self.popular_order
        keep = np.ones(len(order), dtype=bool)
        allowed = self._allowed(query.genres)
        if allowed is not None:
            keep &= allowed[order]
        recent = np.asarray(query.recent, dtype=np.int64)
        if query.exclude_seen and len(recent):
            keep &= ~np.isin(order, recent)
        excluded = (query.ranking or self.ranking).excluded
        if len(excluded):
            keep &= ~np.isin(order, excluded)
        items = order[keep][: query.k]
        return Ranked(items, self.popularity[items], True, recent)

    def _personal(self, queries: Sequence[Query]) -> list[Ranked]:
        histories = [self.history(q) for q in queries]
        users = torch.as_tensor([q.user for q in queries], dtype=torch.long)
        excluded = [
            np.concatenate(
                [
                    h if q.exclude_seen else np.zeros(0, np.int64),
                    (q.ranking or self.ranking).excluded,
                ]
            )
            for q, h in zip(queries, histories, strict=True)
        ]
        if self.factors is None:
            scores = (
                history_scores(self.item_item, histories)
                if self.item_item is not None
                else self.model.score(users, self._padded(histories)).float()
            )
            return self._tops(scores, queries, excluded, histories)
        vectors = self.factors.user_vectors(users, self._padded(histories)).float().numpy()
        out: list[Ranked | None] = [None] * len(queries)
        if isinstance(self.index, AnnIndex):
            plain = [i for i, q in enumerate(queries) if q.genres is None]
            found = (
                self._ann(
                    vectors[plain], [queries[i].k for i in plain], [excluded[i] for i in plain]
                )
                if plain
                else []
            )
            for i, hit in zip(plain, found, strict=True):
                if hit is not None:
                    out[i] = Ranked(hit[0], hit[1], False, histories[i])
        rest = [i for i, r in enumerate(out) if r is None]
        if rest:  # one product for every query the index did not answer
            assert self.exact is not None
            scores = self.exact.scores(vectors[rest])
            found = self._tops(
                scores,
                [queries[i] for i in rest],
                [excluded[i] for i in rest],
                [histories[i] for i in rest],
            )
            for i, ranked in zip(rest, found, strict=True):
                out[i] = ranked
        return [r for r in out if r is not None]

    def _tops(
        self,
        scores: torch.Tensor,
        queries: Sequence[Query],
        excluded: Sequence[np.ndarray],
        histories: Sequence[np.ndarray],
    ) -> list[Ranked]:
        """Row ``i`` of ``scores`` -> query ``i``'s top-K: one top-K per (k, genres) group."""
        groups: dict[tuple[int, tuple[str, ...] | None], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((q.k, q.genres), []).append(i)
        out: list[Ranked | None] = [None] * len(queries)
        for (k, genres), rows in groups.items():
            block = scores if len(rows) == len(queries) else scores[torch.as_tensor(rows)]
            items, values = masked_top_k(
                block, k, [excluded[i] for i in rows], self._allowed(genres)
            )
            for row, i in enumerate(rows):
                keep = items[row] >= 0
                out[i] = Ranked(items[row][keep], values[row][keep], False, histories[i])
        return [r for r in out if r is not None]

    def _ann(
        self, vectors: np.ndarray, ks: Sequence[int], excluded: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """ANN top-K past the excluded items, one search for the batch.

        ``None`` for a query where too few items survive the exclusion (it is then
        answered exactly).
        """
        assert isinstance(self.index, AnnIndex)
        drops = [np.unique(e) for e in excluded]
        depth = min(self.n_items, max(k + len(d) for k, d in zip(ks, drops, strict=True)))
        items, scores = self.index.search(vectors, depth)
        out: list[tuple[np.ndarray, np.ndarray] | None] = []
        for row, (k, drop) in enumerate(zip(ks, drops, strict=True)):
            keep = (items[row] >= 0) & ~np.isin(items[row], drop)
            if keep.sum() < min(k, self.n_items - len(drop)):
                out.append(None)
            else:
                out.append((items[row][keep][:k], scores[row][keep][:k]))
        return out

    def _padded(self, histories: Sequence[np.ndarray]) -> torch.Tensor | None:
        length = self.model.history_length
        if length == 0:
            return None
        width = max(1, max(len(h) for h in histories)) if length is None else int(length)
        out = np.full((len(histories), width), self.n_items, dtype=np.int64)
        for row, h in enumerate(histories):
            tail = h[-width:]
            if len(tail):
                out[row, width - len(tail) :] = tail
        return torch.from_numpy(out)

    # scoring given items ---------------------------------------------------------------
    @torch.no_grad()
    def score(self, queries: Sequence[tuple[Query, np.ndarray]]) -> list[tuple[np.ndarray, bool]]:
        """Scores of the given item indices per (query, items); cold users: popularity."""
        out: list[tuple[np.ndarray, bool] | None] = [None] * len(queries)
        personal = []
        for i, (q, items) in enumerate(queries):
            if self.is_fallback(q):
                out[i] = (self.popularity[items], True)
            else:
                personal.append(i)
        if personal:
            chosen = [queries[i][0] for i in personal]
            users = torch.as_tensor([q.user for q in chosen], dtype=torch.long)
            histories = [self.history(q) for q in chosen]
            if self.factors is not None:
                vectors = self.factors.user_vectors(users, self._padded(histories))
                vectors = vectors.float().numpy()
                rows = [
                    vectors[j] @ self.factors.items[queries[i][1]].T for j, i in enumerate(personal)
                ]
            elif self.item_item is not None:  # only the asked items' columns are summed
                rows = [
                    history_item_scores(self.item_item, histories[j], queries[i][1])
                    for j, i in enumerate(personal)
                ]
            else:
                full = self.model.score(users, self._padded(histories)).float().numpy()
                rows = [full[j, queries[i][1]] for j, i in enumerate(personal)]
            for i, row in zip(personal, rows, strict=True):
                out[i] = (np.asarray(row, dtype=np.float32), False)
        return [o for o in out if o is not None]

    # similar items ---------------------------------------------------------------------
    def similar(self, item: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.similarity.most_similar(item, k)

    def explain(self, ranked: Ranked) -> list[str]:
        return self.explainer.explain(ranked.history, ranked.items, fallback=ranked.fallback)

    def recommend(self, queries: Sequence[Query]) -> list[tuple[Ranked, list[str]]]:
        """Ranked and explained, per query: what one batch of ``/recommend`` needs."""
        return [(ranked, self.explain(ranked)) for ranked in self.rank(queries)]


def _encode(index: IdIndex, value: object) -> int:
    """Dense index of an id (-1: unknown); ``"1"`` matches 1 (:meth:`IdIndex.find`)."""
    return index.find(value)
