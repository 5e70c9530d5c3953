"""Batch samplers: seeded, sharded disjointly across ranks, with correct batch contents."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import EncodedData, shard_rows
from kuberec.components.models.samplers import (
    BilateralSampler,
    InBatchSampler,
    PairwiseSampler,
    PointwiseSampler,
    SequenceSampler,
)
from kuberec.errors import ConfigError


@pytest.fixture(scope="module")
def data() -> EncodedData:
    return EncodedData.from_dataset(generate(SyntheticSpec(40, 30, 400, seed=3)))


def _rows(batches: list[dict[str, torch.Tensor]], *keys: str) -> set[tuple[int, ...]]:
    out: set[tuple[int, ...]] = set()
    for batch in batches:
        columns = [batch[k].reshape(len(batch[k]), -1) for k in keys]
        out |= {tuple(torch.cat(row).tolist()) for row in zip(*columns, strict=True)}
    return out


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_shards_are_disjoint_equal_and_cover_the_epoch(world_size: int) -> None:
    shards = [
        shard_rows(101, seed=1, epoch=2, rank=r, world_size=world_size) for r in range(world_size)
    ]
    together = np.concatenate(shards)
    assert len(set(together.tolist())) == len(together) == 101 - 101 % world_size
    assert len({len(s) for s in shards}) == 1


def test_each_epoch_draws_a_new_permutation() -> None:
    first, second = (shard_rows(50, seed=1, epoch=e, rank=0, world_size=1) for e in (0, 1))
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


def test_bad_rank_is_a_config_error(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match="rank must be in"):
        PairwiseSampler(data, batch_size=8, seed=0, rank=2, world_size=2)


def test_sampler_ranks_yield_disjoint_interactions(data: EncodedData) -> None:
    per_rank = [
        list(
            InBatchSampler(
                data, history_length=3, batch_size=16, seed=5, rank=r, world_size=2
            ).batches(0)
        )
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1])
    seen = [_rows(b, "users", "items", "history") for b in per_rank]
    assert seen[0].isdisjoint(seen[1])
    assert sum(len(torch.cat([b["users"] for b in bs])) for bs in per_rank) == 400


def test_same_seed_gives_identical_batches(data: EncodedData) -> None:
    def draw() -> list[dict[str, torch.Tensor]]:
        return list(PairwiseSampler(data, batch_size=64, seed=9).batches(3))

    for a, b in zip(draw(), draw(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_pairwise_negatives_are_unseen_items(data: EncodedData) -> None:
    seen = data.seen.toarray().astype(bool)
    saw_everything = seen.all(axis=1)  # such users can only get a seen item
    assert saw_everything.any() and not saw_everything.all()
    for batch in PairwiseSampler(data, batch_size=64, seed=0).batches(0):
        users, pos, neg = (batch[k].numpy() for k in ("users", "pos_items", "neg_items"))
        assert seen[users, pos].all()
        assert not seen[users, neg][~saw_everything[users]].any()


def test_pointwise_batches_hold_one_positive_per_group_of_negatives(data: EncodedData) -> None:
    batch = next(iter(PointwiseSampler(data, n_negatives=3, batch_size=10, seed=0).batches(0)))
    assert batch["users"].shape == batch["items"].shape == batch["labels"].shape == (40,)
    np.testing.assert_array_equal(
        batch["labels"].view(10, 4).numpy(), np.tile([1.0, 0.0, 0.0, 0.0], (10, 1))
    )
    assert batch["context"].shape == (40, 2) and batch["context"].min() >= 1


def test_in_batch_history_holds_only_earlier_items(data: EncodedData) -> None:
    pad = data.n_items
    for batch in InBatchSampler(data, history_length=4, batch_size=50, seed=0).batches(0):
        for user, item, history in zip(
            batch["users"], batch["items"], batch["history"], strict=True
        ):
            sequence = data.history.of(int(user)).tolist()
            position = sequence.index(int(item))
            real = [h for h in history.tolist() if h != pad]
            assert real == sequence[max(0, position - 4) : position]


def test_sequence_windows_predict_every_next_item_once(data: EncodedData) -> None:
    sampler = SequenceSampler(data, history_length=5, batch_size=1000, seed=0)
    pad = data.n_items
    targets: dict[int, list[int]] = {}
    for batch in sampler.batches(0):
        for user, inputs, target in zip(
            batch["users"], batch["inputs"], batch["targets"], strict=True
        ):
            real = target != pad
            assert torch.equal(inputs[real][1:], target[real][:-1])  # targets are inputs shifted
            targets.setdefault(int(user), []).extend(target[real].tolist())
    for user, items in targets.items():
        assert sorted(items) == sorted(data.history.of(user)[1:].tolist())


def test_sequence_batches_are_cut_to_their_longest_window(data: EncodedData) -> None:
    sampler = SequenceSampler(data, history_length=50, batch_size=4, seed=0)
    batches = list(sampler.batches(0))
    pad = data.n_items
    widths = {batch["inputs"].shape[1] for batch in batches}
    assert max(widths) <= 50 and len(widths) > 1
    for batch in batches:
        assert (batch["inputs"][:, 0] != pad).any()  # no all-pad leading column is kept
    assert sum(len(b["users"]) for b in batches) == sampler.n_units


def test_sequence_sampler_draws_k_shared_negatives_per_window(data: EncodedData) -> None:
    sampler = SequenceSampler(data, history_length=5, batch_size=8, seed=0, shared_negatives=7)
    batch = next(iter(sampler.batches(0)))
    assert batch["negatives"].shape == (len(batch["users"]), 7)
    assert (batch["negatives"] < data.n_items).all()  # real items, never the pad


def test_bilateral_epoch_covers_every_active_user_and_item(data: EncodedData) -> None:
    sampler = BilateralSampler(data, batch_size=8, seed=0)
    batches = list(sampler.batches(0))
    users = torch.cat([b["users"] for b in batches]).unique().tolist()
    items = torch.cat([b["items"] for b in batches]).unique().tolist()
    assert users == np.flatnonzero(data.history.lengths() > 0).tolist()
    assert items == np.flatnonzero(np.asarray(data.seen.sum(0)).ravel() > 0).tolist()


def test_bilateral_items_carry_exactly_the_users_who_took_them(data: EncodedData) -> None:
    batch = next(iter(BilateralSampler(data, batch_size=8, seed=0).batches(0)))
    columns = data.seen.tocsc()
    for item, row in zip(batch["items"].tolist(), batch["item_users"].tolist(), strict=True):
        taken = sorted(u for u in row if u != data.n_users)  # n_users pads
        assert taken == columns.indices[columns.indptr[item] : columns.indptr[item + 1]].tolist()


def test_sequence_horizon_reads_the_next_items_past_the_window_up_to_the_last(
    data: EncodedData,
) -> None:
    sampler = SequenceSampler(data, history_length=5, batch_size=8, seed=0, horizon=3)
    units = np.arange(sampler.n_units)
    batch = sampler.make_batch(units, np.random.default_rng(0))
    pad, width = data.n_items, batch["targets"].shape[1]
    assert (batch["ahead"][..., 0] == batch["targets"]).all()  # the first item ahead is next
    for row, (end, user) in enumerate(zip(sampler.window_end, sampler.window_user, strict=True)):
        last = data.history.indptr[user + 1] - 1
        for position in range(width):
            target_row = end - width + 1 + position
            if batch["targets"][row, position] == pad:
                assert (batch["ahead"][row, position] == pad).all()
                continue
            rows = [r for r in range(target_row, target_row + 3) if r <= last]
            expected = [*data.items[rows].tolist(), pad, pad][:3]
            assert batch["ahead"][row, position].tolist() == expected
