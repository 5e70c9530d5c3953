"""The serving logic in-process: id matching, cold-start fallback, explanations, ANN path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings
from kuberec.serving.engine import Engine, Query, RequestError


@pytest.fixture(scope="module")
def engine(ease_t_run: Path) -> Engine:
    """Plain top-K (diversity 0): these tests are about retrieval; the ranking ones say theirs."""
    return Engine.load(ease_t_run, ranking=RankingSpec(diversity=0.0))


def test_string_and_number_ids_name_the_same_user_and_item(engine: Engine) -> None:
    assert engine.user("1") == engine.user(1) >= 0
    assert engine.items(["50"])[0].tolist() == engine.items([50])[0].tolist()


def test_an_id_with_a_leading_zero_is_not_the_integer(engine: Engine) -> None:
    assert engine.user("001") == -1


def test_unknown_items_are_reported_not_fatal(engine: Engine) -> None:
    known, unknown = engine.items([1, "nope", 99_999])
    assert len(known) == 1
    assert unknown == ["nope", 99_999]


def test_a_cold_user_gets_the_popular_items_flagged_as_fallback(engine: Engine) -> None:
    [ranked] = engine.rank([Query(user=-1, k=5)])
    assert ranked.fallback
    assert ranked.items.tolist() == engine.popular_order[:5].tolist()


def test_a_cold_user_with_recent_items_gets_a_personal_list(engine: Engine) -> None:
    star_wars = int(engine.items([50])[0][0])
    [ranked] = engine.rank([Query(user=-1, recent=(star_wars,), k=5)])
    assert not ranked.fallback
    assert star_wars not in ranked.items.tolist()
    assert engine.explain(ranked)[0] == "because you liked Star Wars (1977)"


def test_seen_items_are_excluded_unless_asked_otherwise(engine: Engine) -> None:
    user = engine.user(1)
    seen = set(engine.loaded.history.of(user).tolist())
    [kept, everything] = engine.rank([Query(user, k=50), Query(user, k=50, exclude_seen=False)])
    assert not seen & set(kept.items.tolist())
    assert seen & set(everything.items.tolist())


def test_a_genre_filter_keeps_only_items_of_that_genre(engine: Engine) -> None:
    [ranked] = engine.rank([Query(engine.user(1), k=10, genres=("Documentary",))])
    column = engine.loaded.encodings.genres.index("Documentary")
    assert len(ranked.items) == 10
    assert engine.loaded.item_genres[ranked.items, column].all()


def test_explanations_name_an_item_from_the_users_history(engine: Engine) -> None:
    user = engine.user(1)
    [ranked] = engine.rank([Query(user, k=3)])
    titles = {engine.titles[i] for i in engine.loaded.history.of(user)}
    for sentence in engine.explain(ranked):
        assert sentence.removeprefix("because you liked ") in titles


def test_ann_retrieval_agrees_with_exact_for_a_dot_product_model(
    ml100k: Dataset, tmp_path: Path
) -> None:
    run = tmp_path / "mf"
    train_run(
        ml100k,
        run,
        model_type="mf",
        hparams={"dim": 16},
        settings=TrainSettings(backend="local", epochs=1),
    )
    exact, ann = Engine.load(run), Engine.load(run, ann_min_items=1)
    users = [Query(u, k=10) for u in range(0, 900, 9)]
    overlap = [
        len(set(a.items.tolist()) & set(e.items.tolist())) / 10
        for a, e in zip(ann.rank(users), exact.rank(users), strict=True)
    ]
    assert np.mean(overlap) >= 0.9


def test_precomputed_neighbours_explain_as_the_exact_product_does(engine: Engine) -> None:
    similarity = engine.similarity
    assert similarity.has_neighbours  # ml-100k is well inside the precomputation budget
    for user in range(0, 943, 7):
        [ranked] = engine.rank([Query(user, k=10)])
        recent = np.unique(engine.history(Query(user))[-200:])
        exact = recent[np.argmax(similarity.between(recent, ranked.items), axis=0)]
        assert similarity.best_match(recent, ranked.items).tolist() == exact.tolist()


def test_a_batch_ranks_each_query_as_it_would_alone(engine: Engine) -> None:
    queries = [Query(engine.user(u), k=5) for u in (1, 2, 3)] + [Query(-1, k=5)]
    together = engine.recommend(queries)
    for query, (ranked, reasons) in zip(queries, together, strict=True):
        [(alone, alone_reasons)] = engine.recommend([query])
        assert ranked.items.tolist() == alone.items.tolist()
        assert reasons == alone_reasons


def test_item_item_scoring_equals_the_models_own_score(engine: Engine) -> None:
    import torch

    from kuberec.serving.retrieval import history_scores

    assert engine.item_item is not None  # EASE: scores are a sum of weight rows
    users = [0, 5, 42]
    histories = [engine.history(Query(u)) for u in users]
    expected = engine.model.score(torch.tensor(users), engine._padded(histories))
    assert torch.allclose(history_scores(engine.item_item, histories), expected, atol=1e-4)


def test_scores_of_given_items_match_the_ranked_scores(engine: Engine) -> None:
    user = engine.user(1)
    [ranked] = engine.rank([Query(user, k=5)])
    [(scores, fallback), (cold, cold_fallback)] = engine.score(
        [(Query(user), ranked.items), (Query(-1), ranked.items)]
    )
    assert not fallback and cold_fallback
    assert np.allclose(scores, ranked.scores, atol=1e-4)
    assert cold.tolist() == engine.popularity[ranked.items].tolist()


def test_a_request_ranking_pins_first_and_never_shows_excluded(engine: Engine) -> None:
    user = engine.user(1)
    [plain] = engine.rank([Query(user, k=10)])
    pin, drop = engine.item_id(plain.items[9]), engine.item_id(plain.items[0])
    ranking = engine.ranking_for(RankingSpec(pinned=[pin], excluded=[drop]))
    [ranked] = engine.rank([Query(user, k=5, ranking=ranking)])
    assert ranked.items[0] == plain.items[9] and ranked.scores[0] == plain.scores[9]
    assert plain.items[0] not in ranked.items.tolist() and len(ranked.items) == 5


def test_the_jobs_exclusions_hold_for_cold_users_too(ease_t_run: Path) -> None:
    engine = Engine.load(ease_t_run, ranking=RankingSpec(excluded=[50]), with_index=False)
    star_wars = int(engine.items([50])[0][0])
    assert star_wars in engine.popular_order[:5].tolist()
    [ranked] = engine.rank([Query(user=-1, k=5)])
    assert ranked.fallback and star_wars not in ranked.items.tolist()


def test_an_unknown_pinned_item_is_a_request_error_naming_the_field(engine: Engine) -> None:
    with pytest.raises(RequestError) as error:
        engine.ranking_for(RankingSpec(pinned=["no-such-item"]))
    assert error.value.field == "ranking.pinned"


def test_diversity_changes_the_list_but_keeps_its_length(engine: Engine) -> None:
    user = engine.user(1)
    diverse = engine.ranking_for(RankingSpec(diversity=0.9))
    [plain, ranked] = engine.rank([Query(user, k=10), Query(user, k=10, ranking=diverse)])
    assert len(ranked.items) == 10 and ranked.items.tolist() != plain.items.tolist()
    assert ranked.items[0] == plain.items[0]


def test_a_sparse_ease_t_run_ranks_by_its_sparse_scores(tmp_path: Path) -> None:
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate

    out = tmp_path / "sparse"
    train_run(
        generate(SyntheticSpec(120, 70, 3000, seed=2)),
        out,
        model_type="sparse_ease",
        hparams={"neighbours": 20},
        settings=TrainSettings(backend="local"),
    )
    engine = Engine.load(out, ranking=RankingSpec(diversity=0))  # plain top-K, no re-ranking
    user = 5
    [ranked] = engine.rank([Query(user=user, k=10)])
    seen = engine.loaded.history.of(user)
    dense = engine.model.score(torch.tensor([user]), torch.as_tensor(seen[None, :]))[0]
    dense[torch.as_tensor(seen)] = -float("inf")
    assert not ranked.fallback and engine.factors is None and engine.item_item is None
    assert ranked.items.tolist() == torch.topk(dense, 10).indices.tolist()
