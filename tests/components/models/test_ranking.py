"""The re-ranking stage: MMR, boosts, category caps, pins and exclusions, validation."""

from __future__ import annotations

import numpy as np
import pytest

from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models import UserHistory, top_k
from kuberec.components.models import ranking as ranking_module
from kuberec.components.models import similarity as similarity_module
from kuberec.components.models.ranking import (
    ItemSignals,
    Ranker,
    RankingSpec,
    item_signals,
    parse_assignments,
    parse_ranking,
    resolve,
)
from kuberec.components.models.similarity import Similarity
from kuberec.errors import ConfigError

N_ITEMS = 12
RNG = np.random.default_rng(7)
# 30 users; items 0-5 are taken together (one "taste"), 6-11 together (another);
# item 11 is taken by one user only (rare), item 0 by everyone (popular).
_HISTORIES = [sorted(set(RNG.choice(6, 3, replace=False).tolist()) | {0}) for _ in range(15)]
_HISTORIES += [sorted(set((RNG.choice(5, 3, replace=False) + 6).tolist()) | {0}) for _ in range(14)]
_HISTORIES += [[11]]
HISTORY = UserHistory(
    np.concatenate([[0], np.cumsum([len(h) for h in _HISTORIES])]).astype(np.int64),
    np.concatenate([np.asarray(h, np.int64) for h in _HISTORIES]),
    N_ITEMS,
)
ITEMS = IdIndex(np.array([100 + i for i in range(N_ITEMS)], dtype=object))
#: genre 0 for items 0-7, genre 1 for items 6-11 (6 and 7 have both)
GENRES = np.zeros((N_ITEMS, 2), dtype=np.float32)
GENRES[:8, 0] = 1
GENRES[6:, 1] = 1
SIGNALS = item_signals(HISTORY, GENRES, Similarity(HISTORY))
#: relevance falls with the index, so the plain top-K is 0, 1, 2, ...
SCORES = np.tile(np.linspace(1.0, 0.0, N_ITEMS), (3, 1))
SCORES[1] = RNG.permutation(SCORES[1])
SCORES[2, 3:6] = SCORES[2, 2]  # ties


def ranker(**fields: object) -> Ranker:
    return Ranker(resolve(RankingSpec(**{"diversity": 0.0, **fields}), ITEMS, SIGNALS), SIGNALS)


def test_diversity_zero_is_exactly_the_plain_top_k() -> None:
    # a cap too large to bite keeps the stage active, so the greedy loop itself runs
    ranked = ranker(diversity=0.0, max_per_category=100)(SCORES, 5)
    assert ranker(max_per_category=100).ranking.active
    np.testing.assert_array_equal(ranked.items, top_k(SCORES, 5).items)
    np.testing.assert_allclose(ranked.scores, top_k(SCORES, 5).scores)


def test_diversity_replaces_similar_items_with_dissimilar_ones() -> None:
    plain = ranker()(SCORES[:1], 4).items[0]
    diverse = ranker(diversity=0.7)(SCORES[:1], 4).items[0]
    assert plain.tolist() == [0, 1, 2, 3]  # all of one taste
    assert diverse[0] == 0 and (diverse >= 6).any()


def test_novelty_boost_moves_rare_items_up() -> None:
    plain = ranker()(SCORES[:1], N_ITEMS).items[0].tolist()
    boosted = ranker(novelty=1.0)(SCORES[:1], N_ITEMS).items[0].tolist()
    assert boosted.index(11) < plain.index(11)
    assert boosted.index(0) > plain.index(0)


def test_category_caps_hold_on_every_page() -> None:
    ranked = ranker(max_per_category=2, page_size=3)(SCORES, 9)
    for row in ranked.items:
        for page in range(0, len(row), 3):
            counts = GENRES[row[page : page + 3][row[page : page + 3] >= 0]].sum(axis=0)
            assert (counts <= 2).all()


def test_pinned_items_come_first_in_their_order() -> None:
    ranked = ranker(pinned=[109, 104])(SCORES, 4)
    np.testing.assert_array_equal(ranked.items[:, :2], [[9, 4]] * 3)
    assert len(set(ranked.items[0].tolist())) == 4


def test_a_pinned_item_the_user_has_seen_is_not_shown() -> None:
    seen = np.zeros_like(SCORES, dtype=bool)
    seen[0, 9] = True
    ranked = ranker(pinned=[109, 104])(SCORES, 4, exclude=seen)
    assert ranked.items[0, 0] == 4 and 9 not in ranked.items[0]
    assert ranked.items[1, 0] == 9


def test_excluded_items_never_appear() -> None:
    ranked = ranker(excluded=[100, 101, 105], diversity=0.5)(SCORES, N_ITEMS)
    assert not np.isin(ranked.items, [0, 1, 5]).any()
    assert (ranked.items >= 0).sum(axis=1).tolist() == [N_ITEMS - 3] * 3


def test_the_same_input_always_gives_the_same_list() -> None:
    fields = {"diversity": 0.4, "novelty": 0.2, "max_per_category": 3}
    first = ranker(**fields)(SCORES, 8).items
    again = ranker(**fields)(SCORES.copy(), 8).items
    np.testing.assert_array_equal(first, again)


def test_a_small_pool_limits_what_can_be_chosen() -> None:
    ranked = ranker(diversity=1.0, candidates=4)(SCORES[:1], 4)
    assert sorted(ranked.items[0].tolist()) == [0, 1, 2, 3]


def test_an_empty_pool_gives_an_empty_list_not_an_error() -> None:
    """A user who has seen every item has no candidates left: the answer is an empty list."""
    from kuberec.components.models.ranking import rerank

    ranking = resolve(RankingSpec(diversity=0.3), ITEMS, SIGNALS)
    empty = rerank(np.zeros(0, np.int64), np.zeros(0, np.float32), 5, ranking, SIGNALS)
    assert empty.tolist() == []


def test_a_weight_out_of_range_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^ranking\.diversity: Input should be less than or"):
        parse_ranking({"diversity": 1.5}, "ranking")


def test_an_unknown_field_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--ranking\.diversty: unknown field"):
        parse_assignments(["diversty=0.2"])


def test_assignments_parse_lists_of_ids() -> None:
    spec = parse_assignments(["diversity=0.25", "pinned=50,181", "maxPerCategory=3"])
    assert (spec.diversity, spec.pinned, spec.max_per_category) == (0.25, ["50", "181"], 3)
    assert resolve(spec, IdIndex(np.array([50, 181], dtype=object))).pinned.tolist() == [0, 1]


def test_an_unknown_pinned_item_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"ranking\.pinned: unknown item\(s\) \[7\]"):
        resolve(RankingSpec(pinned=[7]), ITEMS, SIGNALS)
    assert len(resolve(RankingSpec(pinned=[7]), ITEMS, strict=False).pinned) == 0


def test_freshness_needs_first_seen_times() -> None:
    with pytest.raises(ConfigError, match=r"ranking\.freshness: this model has no first-seen"):
        resolve(RankingSpec(freshness=0.5), ITEMS, SIGNALS)


def test_freshness_boost_moves_new_items_up() -> None:
    first_seen = np.zeros(N_ITEMS, dtype=np.int64)
    first_seen[11] = 10  # the newest item, and the least relevant
    signals = item_signals(HISTORY, GENRES, Similarity(HISTORY), first_seen)
    fresh = Ranker(resolve(RankingSpec(freshness=1.0), ITEMS, signals), signals)
    assert fresh(SCORES[:1], 3).items[0].tolist() == [0, 11, 1]


def test_a_request_override_replaces_fields_and_adds_exclusions() -> None:
    job = RankingSpec(diversity=0.2, excluded=[1], pinned=[5])
    request = RankingSpec.model_validate({"novelty": 0.3, "excluded": [2]})
    merged = job.override(request)
    assert (merged.diversity, merged.novelty, merged.pinned) == (0.2, 0.3, [5])
    assert merged.excluded == [1, 2]


def _large_catalogue(embeddings: bool) -> tuple[ItemSignals, np.ndarray]:
    """300 items, a pool of 8: far more items than pool, the case the cheap lookups serve."""
    rng = np.random.default_rng(3)
    n_items = 300
    rows = [np.sort(rng.choice(n_items, 6, replace=False)) for _ in range(400)]
    history = UserHistory(
        np.arange(0, 401 * 6, 6, dtype=np.int64), np.concatenate(rows).astype(np.int64), n_items
    )
    vectors = rng.standard_normal((n_items, 8)).astype(np.float32) if embeddings else None
    genres = np.ones((n_items, 1), dtype=np.float32)
    signals = item_signals(history, genres, Similarity(history, vectors))
    return signals, rng.standard_normal((5, n_items))


def _lists(signals: ItemSignals, scores: np.ndarray) -> np.ndarray:
    index = IdIndex(np.arange(signals.n_items, dtype=object))
    spec = RankingSpec(diversity=0.6, candidates=8)
    return Ranker(resolve(spec, index, signals), signals)(scores, 5).items


def test_the_pool_lookup_by_binary_search_picks_what_the_catalogue_wide_one_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signals, scores = _large_catalogue(embeddings=False)
    assert signals.similarity.neighbour_table() is not None
    searched = _lists(signals, scores)
    monkeypatch.setattr(ranking_module, "ROW_RATIO", 10**9)  # every catalogue counts as small
    np.testing.assert_array_equal(searched, _lists(signals, scores))


def test_similarities_to_a_gathered_pool_pick_what_whole_rows_pick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(similarity_module, "NEIGHBOUR_BUDGET", 0)  # no table: compute them
    signals, scores = _large_catalogue(embeddings=True)
    assert signals.similarity.neighbour_table() is None
    gathered = _lists(signals, scores)
    monkeypatch.setattr(ranking_module, "ROW_RATIO", 10**9)
    np.testing.assert_array_equal(gathered, _lists(signals, scores))
