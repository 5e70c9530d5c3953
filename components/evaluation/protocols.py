"""Offline evaluation protocols, each reproducing the definition its figures are compared to.

Every protocol takes the canonical interactions frame (``user_id``, ``item_id``,
``rating``, ``timestamp``) and a seed, and returns a :class:`Split`. Before
splitting, a repeated (user, item) pair is collapsed to its earliest interaction, so
no pair can land in both train and test; row order is otherwise kept (the
stratified split depends on it to reproduce MS Recommenders draw for draw).

* ``stratified``  MS Recommenders ``python_stratified_split(ratio=0.75,
  filter_by="user", seed=42)``: each user's rows get a uniform random key
  (``np.random.seed(seed); np.random.rand(n)`` over the rows in input order), are
  ordered by it, and the rows whose rank / count <= ratio go to train. Every test
  rating is relevant; rank all items minus the user's train items.
  ``filter_by="item"`` stratifies per item instead (the option MS also offers).
* ``stratified-item``  ``stratified`` with ``filter_by="item"``: a random 75 % of each
  item's rows train. This is the split of the Microsoft Recommenders MovieLens
  benchmark table (``examples/06_benchmarks/movielens.ipynb`` calls
  ``python_stratified_split(ratio=0.75, min_rating=1, filter_by="item")``), so its
  published rows (BiVAE, BPR, ...) compare with figures on this split, not on
  ``stratified``'s per-user one.
* ``random-811``  RecBole ``eval_args: {split: {RS: [0.8, 0.1, 0.1]}, group_by: user,
  order: RO, mode: full}`` after ``val_interval: {rating: "[3,inf)"}``: keep ratings
  >= 3 (rows without a rating are kept), shuffle each user's rows and cut them with
  RecBole's ``_calcu_split_ids`` (valid and test rounded down, then topped up to one
  row while train keeps more than one). Full ranking; test excludes train + valid.
  RecBole shuffles with torch's generator, so the rows drawn differ from RecBole's
  for a given seed; the proportions and rounding are the same.
* ``leave-one-out``  each user's last interaction by timestamp is test and the
  second last valid (ties in timestamp keep input order); users with fewer than 3
  interactions (2 with ``valid=False``) stay in train only, as SASRec's
  ``data_partition``. Full ranking.
* ``leave-one-out-sampled``  the same split, plus ``n_negatives`` (100) items per
  test user that the user never interacted with, sampled uniformly without
  replacement (NCF, He et al. 2017; SASRec, Kang & McAuley 2018). The target is
  ranked against its user's negatives; the same negatives serve the valid target.
  With more than ``n_users`` (10,000) test users, ``n_users`` of them are sampled
  uniformly and only they are evaluated (valid and test), as SASRec's ``evaluate``;
  ``n_users=None`` evaluates everyone.
* ``temporal``  one global cut at the ``quantile`` (0.8) of all interaction
  timestamps (the lower data point, so the cut is a real timestamp): train is at or
  before it, test after it. Test keeps only users and items that occur before the
  cut: a model cannot rank an item it has never seen, nor a user with no history.
  ``valid_quantile`` cuts the pre-test part again the same way.
* ``cold-items``  a random ``share`` (0.2) of the items that have interactions is
  withheld from training with all its interactions, as new items arrive after
  training (the item cold-start setting of DropoutNet, Volkovs et al. 2017). Test is
  every interaction with a withheld item by a user who has training rows; the
  withheld items are ``Split.withheld_items``, and the training catalogue must not
  hold them (:func:`kuberec.components.train.cold_eval.evaluate_cold` drops them
  from the items table and adds them back from their text, as serving does).
* :func:`kfold`  per-user k-fold cross-validation: each user's rows are shuffled and
  dealt round-robin into k folds from a random starting fold.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from kuberec.api.names import PROTOCOL_NAMES, check_registry
from kuberec.components.evaluation._frames import require_columns
from kuberec.components.evaluation.negatives import sample_negatives
from kuberec.errors import ConfigError, DataError

Phase = Literal["valid", "test"]


@dataclass(frozen=True)
class Split:
    """The frames one protocol produces; ``negatives`` is set only by sampled protocols."""

    protocol: str
    train: pd.DataFrame
    test: pd.DataFrame
    valid: pd.DataFrame | None = None
    negatives: pd.DataFrame | None = None
    options: Mapping[str, object] = field(default_factory=dict)
    #: Items kept out of training entirely (``cold-items``): new items to score from content.
    withheld_items: tuple[object, ...] = ()

    @property
    def ranking(self) -> Literal["full", "sampled"]:
        """Full: rank every item the user has not seen. Sampled: rank target + negatives."""
        return "sampled" if self.negatives is not None else "full"

    def known(self) -> pd.DataFrame:
        """Train plus valid: every interaction a model tested on ``test`` may learn from."""
        return self.train if self.valid is None else pd.concat([self.train, self.valid])

    def seen(self, phase: Phase = "test") -> pd.DataFrame:
        """``user_id, item_id`` pairs to drop from a user's candidates when ranking for ``phase``.

        Validation ranks against train; test against train and valid, as RecBole masks
        the whole known history.
        """
        parts = [self.train]
        if phase == "test" and self.valid is not None:
            parts.append(self.valid)
        pairs = pd.concat([p[["user_id", "item_id"]] for p in parts], ignore_index=True)
        return pairs.drop_duplicates(ignore_index=True)

    def candidates(self, phase: Phase = "test") -> pd.DataFrame:
        """Sampled protocols: ``user_id, item_id, label`` rows, the targets then their negatives."""
        if self.negatives is None:
            raise ConfigError(
                f"protocol {self.protocol!r} ranks over all items and has no sampled candidates; "
                "use 'leave-one-out-sampled' for a sampled evaluation"
            )
        targets = self.test if phase == "test" else self.valid
        if targets is None:
            raise ConfigError(f"protocol {self.protocol!r} has no {phase} frame")
        positives = targets[["user_id", "item_id"]].assign(label=True)
        negatives = self.negatives[self.negatives["user_id"].isin(targets["user_id"])]
        frames = [positives, negatives[["user_id", "item_id"]].assign(label=False)]
        return pd.concat(frames, ignore_index=True)

    def summary(self) -> dict[str, object]:
        """Sizes a person checks first: rows and users per part."""
        parts = {"train": self.train, "valid": self.valid, "test": self.test}
        result: dict[str, object] = {"protocol": self.protocol, "ranking": self.ranking}
        for name, frame in parts.items():
            if frame is not None:
                result[f"{name}_rows"] = len(frame)
                result[f"{name}_users"] = int(frame["user_id"].nunique())
        if self.negatives is not None:
            result["negatives_rows"] = len(self.negatives)
        return result


def stratified(
    interactions: pd.DataFrame,
    seed: int = 42,
    *,
    ratio: float = 0.75,
    filter_by: Literal["user", "item"] = "user",
) -> Split:
    """MS Recommenders ``python_stratified_split``: a random ``ratio`` of each user's rows."""
    _check_fraction("ratio", ratio)
    if filter_by not in ("user", "item"):
        raise ConfigError(f"filter_by must be 'user' or 'item', got {filter_by!r}")
    data = _prepare(interactions)
    key = np.random.RandomState(seed).rand(len(data))
    rank, count = _rank_in_group(data[f"{filter_by}_id"], key)
    in_train = rank / count <= ratio
    return Split(
        "stratified",
        train=_rows(data, in_train),
        test=_rows(data, ~in_train),
        options={"seed": seed, "ratio": ratio, "filter_by": filter_by},
    )


def stratified_item(interactions: pd.DataFrame, seed: int = 42, *, ratio: float = 0.75) -> Split:
    """Microsoft Recommenders' benchmark table split: a random ``ratio`` of each item's rows."""
    parts = stratified(interactions, seed, ratio=ratio, filter_by="item")
    return Split("stratified-item", train=parts.train, test=parts.test, options=parts.options)


def random_811(
    interactions: pd.DataFrame,
    seed: int = 42,
    *,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    min_rating: float | None = 3.0,
) -> Split:
    """RecBole's default: ratings >= 3, then a random 8:1:1 of each user's rows."""
    shares = _check_ratios(ratios)
    data = _prepare(interactions)
    if min_rating is not None and "rating" in data.columns:
        data = data[~(data["rating"] < min_rating)].reset_index(drop=True)
    _require_rows(data, f"no interactions have a rating >= {min_rating}; lower min_rating")
    rank, count = _rank_in_group(data["user_id"], np.random.default_rng(seed).random(len(data)))
    train_n, valid_n = _recbole_cut_points(count, shares)
    return Split(
        "random-811",
        train=_rows(data, rank <= train_n),
        valid=_rows(data, (rank > train_n) & (rank <= train_n + valid_n)),
        test=_rows(data, rank > train_n + valid_n),
        options={"seed": seed, "ratios": tuple(ratios), "min_rating": min_rating},
    )


def leave_one_out(interactions: pd.DataFrame, seed: int = 42, *, valid: bool = True) -> Split:
    """Last interaction per user to test, second last to valid; ``seed`` is unused."""
    data = _prepare(interactions, timestamps=True)
    ts = data["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")
    rank, count = _rank_in_group(data["user_id"], ts)
    from_end = count - rank
    eligible = count >= (3 if valid else 2)
    is_test = eligible & (from_end == 0)
    is_valid = eligible & (from_end == 1) if valid else np.zeros(len(data), dtype=bool)
    return Split(
        "leave-one-out",
        train=_rows(data, ~is_test & ~is_valid),
        valid=_rows(data, is_valid) if valid else None,
        test=_rows(data, is_test),
        options={"seed": seed, "valid": valid},
    )


def leave_one_out_sampled(
    interactions: pd.DataFrame,
    seed: int = 42,
    *,
    n_negatives: int = 100,
    valid: bool = True,
    n_users: int | None = 10_000,
) -> Split:
    """Leave-one-out plus ``n_negatives`` never-interacted items per test user (NCF, SASRec).

    At most ``n_users`` sampled test users are evaluated (SASRec's 10,000).
    """
    if n_users is not None and (
        isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1
    ):
        raise ConfigError(f"n_users must be a positive integer or null, got {n_users!r}")
    base = leave_one_out(interactions, seed, valid=valid)
    data = _prepare(interactions, timestamps=True)
    rng = np.random.default_rng(seed)
    test, valid_rows = base.test, base.valid
    users = test["user_id"].unique()
    if n_users is not None and len(users) > n_users:
        keep = rng.choice(np.sort(users), size=int(n_users), replace=False)
        test = _rows(test, test["user_id"].isin(keep).to_numpy())
        if valid_rows is not None:
            valid_rows = _rows(valid_rows, valid_rows["user_id"].isin(keep).to_numpy())
    negatives = sample_negatives(data, test["user_id"], n_negatives, rng)
    return Split(
        "leave-one-out-sampled",
        train=base.train,
        valid=valid_rows,
        test=test,
        negatives=negatives,
        options={"seed": seed, "n_negatives": n_negatives, "valid": valid, "n_users": n_users},
    )


def temporal(
    interactions: pd.DataFrame,
    seed: int = 42,
    *,
    quantile: float = 0.8,
    valid_quantile: float | None = None,
) -> Split:
    """A global time cut; test keeps users and items seen before the cut. ``seed`` is unused."""
    _check_fraction("quantile", quantile)
    if valid_quantile is not None:
        _check_fraction("valid_quantile", valid_quantile)
        if valid_quantile >= quantile:
            raise ConfigError(
                f"valid_quantile ({valid_quantile}) must be below quantile ({quantile})"
            )
    data = _prepare(interactions, timestamps=True)
    ts = data["timestamp"].to_numpy(dtype="datetime64[ns]").astype("int64")
    cut = np.quantile(ts, quantile, method="lower")
    before, test = _cut(data, ts, cut)
    _require_rows(
        test,
        f"no interaction after the {quantile} timestamp quantile comes from a known user and "
        "item; lower the quantile",
    )
    options: dict[str, object] = {"seed": seed, "quantile": quantile, "cut": _as_time(cut)}
    valid = None
    train = before
    if valid_quantile is not None:
        valid_cut = np.quantile(ts, valid_quantile, method="lower")
        train, valid = _cut(before, ts[ts <= cut], valid_cut)
        options.update(valid_quantile=valid_quantile, valid_cut=_as_time(valid_cut))
    return Split("temporal", train=train, valid=valid, test=test, options=options)


def cold_items(interactions: pd.DataFrame, seed: int = 42, *, share: float = 0.2) -> Split:
    """Withhold a random ``share`` of the items, with all their interactions, from training."""
    _check_fraction("share", share)
    data = _prepare(interactions)
    items = pd.unique(data["item_id"])
    n_cold = round(share * len(items))
    if not 0 < n_cold < len(items):
        raise DataError(
            f"share={share} of {len(items)} items withholds {n_cold}; it must "
            "leave at least one item on each side (change share)"
        )
    order = np.random.default_rng(seed).permutation(len(items))
    withheld = items[np.sort(order[:n_cold])]
    cold = data["item_id"].isin(withheld).to_numpy()
    train = _rows(data, ~cold)
    test = data[cold & data["user_id"].isin(train["user_id"]).to_numpy()]
    _require_rows(
        test,
        f"no user with training rows interacted with the {n_cold} withheld "
        "items; raise share or use more data",
    )
    return Split(
        "cold-items",
        train,
        test.reset_index(drop=True),
        options={"share": share},
        withheld_items=tuple(withheld.tolist()),
    )


def kfold(interactions: pd.DataFrame, k: int = 5, seed: int = 42) -> Iterator[Split]:
    """``k`` per-user splits whose test parts partition the data; fold ``f`` tests on fold ``f``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ConfigError(f"k-fold needs an integer k >= 2, got {k!r}")
    data = _prepare(interactions)
    rng = np.random.default_rng(seed)
    rank, _ = _rank_in_group(data["user_id"], rng.random(len(data)))
    user_codes, uniques = pd.factorize(data["user_id"])
    start = rng.integers(0, k, size=len(uniques))[user_codes]
    fold = (rank - 1 + start) % k
    return _folds(data, fold, int(k), seed)


def _folds(data: pd.DataFrame, fold: np.ndarray, k: int, seed: int) -> Iterator[Split]:
    for f in range(k):
        yield Split(
            "kfold",
            train=_rows(data, fold != f),
            test=_rows(data, fold == f),
            options={"seed": seed, "k": k, "fold": f},
        )


Protocol = Callable[..., Split]

PROTOCOLS: dict[str, Protocol] = {
    "stratified": stratified,
    "stratified-item": stratified_item,
    "random-811": random_811,
    "leave-one-out": leave_one_out,
    "leave-one-out-sampled": leave_one_out_sampled,
    "temporal": temporal,
    "cold-items": cold_items,
}
check_registry(PROTOCOLS, PROTOCOL_NAMES, "evaluation protocols (protocols.PROTOCOLS)")


def protocol_options(name: str) -> dict[str, object]:
    """The options a protocol accepts, with their defaults."""
    params = inspect.signature(_protocol(name)).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def split(name: str, interactions: pd.DataFrame, seed: int = 42, **options: object) -> Split:
    """Run the protocol registered as ``name``; unknown names or options raise ``ConfigError``."""
    valid = protocol_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"protocol {name!r} has no option(s) {unknown}; valid options: {sorted(valid)}"
        )
    return _protocol(name)(interactions, seed, **options)


def _protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(
            f"unknown evaluation protocol {name!r}; valid: {sorted(PROTOCOLS)} "
            "(k-fold cross-validation is kfold(), it yields several splits)"
        ) from None


def _prepare(interactions: pd.DataFrame, *, timestamps: bool = False) -> pd.DataFrame:
    """Validated copy with each (user, item) pair once, at its earliest interaction."""
    required = ("user_id", "item_id", "timestamp") if timestamps else ("user_id", "item_id")
    require_columns(interactions, required, "interactions")
    _require_rows(interactions, "interactions are empty; nothing to split")
    data = interactions.reset_index(drop=True)
    pairs = ["user_id", "item_id"]
    if data.duplicated(pairs).any():
        by_time = data.sort_values("timestamp", kind="stable") if "timestamp" in data else data
        first = by_time.drop_duplicates(pairs).index
        data = data.loc[np.sort(first)].reset_index(drop=True)
    return data


def _rank_in_group(groups: pd.Series, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: its 1-based rank by ``key`` in its group (ties keep row order), and group size."""
    codes, uniques = pd.factorize(groups)
    order = np.lexsort((np.arange(len(codes)), key, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    rank = np.empty(len(codes), dtype="int64")
    rank[order] = np.arange(len(codes)) - np.repeat(starts, np.diff(np.r_[starts, len(codes)])) + 1
    count = np.bincount(codes, minlength=len(uniques))[codes]
    return rank, count


def _recbole_cut_points(
    count: np.ndarray, shares: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Train and valid sizes for each row's group size, by RecBole's ``_calcu_split_ids``."""
    sizes = np.unique(count)
    table = {int(s): _recbole_counts(int(s), shares) for s in sizes}
    train_n = np.array([table[int(c)][0] for c in sizes])[np.searchsorted(sizes, count)]
    valid_n = np.array([table[int(c)][1] for c in sizes])[np.searchsorted(sizes, count)]
    return train_n, valid_n


def _recbole_counts(total: int, shares: tuple[float, ...]) -> list[int]:
    """RecBole: parts after the first round down, then get one row each while train has > 1."""
    counts = [int(share * total) for share in shares]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(shares)):
        if counts[0] <= 1:
            break
        if 0 < shares[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def _cut(data: pd.DataFrame, ts: np.ndarray, cut: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows at or before ``cut``, and later rows whose user and item both occur before it."""
    early = ts <= cut
    before = _rows(data, early)
    after = data[~early]
    known = after["user_id"].isin(before["user_id"]) & after["item_id"].isin(before["item_id"])
    return before, after[known].reset_index(drop=True)


def _rows(data: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    return data[mask].reset_index(drop=True)


def _as_time(ns: int) -> pd.Timestamp:
    return pd.Timestamp(int(ns), tz="UTC")


def _require_rows(frame: pd.DataFrame, message: str) -> None:
    if frame.empty:
        raise DataError(message)


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise ConfigError(f"{name} must be strictly between 0 and 1, got {value!r}")


def _check_ratios(ratios: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or any(r <= 0 for r in values):
        raise ConfigError(
            f"ratios must be three positive numbers (train, valid, test), got {ratios!r}"
        )
    total = sum(values)
    return tuple(r / total for r in values)
