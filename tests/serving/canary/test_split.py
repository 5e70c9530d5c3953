"""The sticky split: one version per user and weight; more weight only moves users to canary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberec.errors import ConfigError
from kuberec.serving.canary.split import assign, bucket

user_ids = st.one_of(st.integers(), st.text(max_size=40))
weights = st.integers(min_value=0, max_value=100)


@given(user_ids, weights)
def test_a_user_always_sees_the_same_version_for_a_weight(user_id: object, weight: int) -> None:
    assert assign(user_id, weight) == assign(user_id, weight)


@given(user_ids, weights, weights)
def test_raising_the_weight_never_moves_a_user_back_to_stable(
    user_id: object, low: int, high: int
) -> None:
    low, high = sorted((low, high))
    if assign(user_id, low) == "canary":
        assert assign(user_id, high) == "canary"


@given(user_ids)
def test_weight_zero_is_all_stable_and_hundred_all_canary(user_id: object) -> None:
    assert assign(user_id, 0) == "stable"
    assert assign(user_id, 100) == "canary"


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_integer_and_text_ids_share_a_bucket(user_id: int) -> None:
    assert bucket(user_id) == bucket(str(user_id))


def test_the_bucket_is_a_stable_hash_not_pythons_per_process_hash() -> None:
    # sha256("\x00" + "42") fixes the bucket across processes, machines and releases
    assert [bucket(u) for u in ("42", "alice", 7)] == [bucket(42), bucket("alice"), bucket("7")]
    assert bucket("42") == int.from_bytes(__import__("hashlib").sha256(b"\x0042").digest()[:8],
                                          "big") % 100  # fmt: skip


@pytest.mark.parametrize("weight", [10, 25, 50])
def test_the_share_of_users_on_the_canary_is_close_to_the_weight(weight: int) -> None:
    share = sum(assign(u, weight) == "canary" for u in range(20_000)) / 20_000
    assert abs(share - weight / 100) < 0.015


def test_a_salt_reshuffles_who_is_on_the_canary() -> None:
    first = {u for u in range(2000) if assign(u, 10) == "canary"}
    other = {u for u in range(2000) if assign(u, 10, salt="rollout-2") == "canary"}
    assert first != other


@pytest.mark.parametrize("weight", [-1, 101, 12.5, True])
def test_a_weight_outside_0_to_100_percent_is_refused(weight: object) -> None:
    with pytest.raises(ConfigError, match="whole percentage"):
        assign(1, weight)  # type: ignore[arg-type]
