"""``model.type: auto``: try the model types that fit the data, keep the best on validation.

Every candidate is fitted on the training part minus a validation holdout carved
from it the way the evaluation protocol splits
(:func:`~kuberec.components.train.validation.carve_validation`: a time cut for
``temporal``, each user's latest item for leave-one-out, else a random share; the
gate's holdout is never seen) and scored on it; the best by the validation metric
wins and is then refitted on the whole training part by the caller. Which candidates
run is decided *before* fitting, from the data:

* catalogue size against a type's ``max_items`` (EASE's dense inverse) and a
  memory estimate against ``memory_gib``;
* timestamps for EASE-T (whose time kernel is EASE without them), and usable order
  for the sequence models (:func:`order_reason`: most users' histories have a few
  items at more than one timestamp);
* an estimate of fit seconds from the data's size against what is left of the budget.

Skip decisions use estimates, so a run is deterministic for a seed on any machine
that keeps up with them; measured seconds and peak memory are reported beside them.
The clock is only a backstop that keeps the budget where the estimates were too
optimistic (a busy or slow machine): once the candidates fitted so far have used
``budget_seconds`` of wall clock, the rest are skipped, saying so, provided one
has been trained. A candidate that raises (or diverges) is recorded as failed
and the others carry on; only when none succeeds does selection fail, naming each.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psutil

from kuberec.api.names import AUTO_BUDGET_SECONDS, AUTO_CANDIDATES, AUTO_MEMORY_GIB, AUTO_MODEL
from kuberec.api.status import CandidateRecord, SelectionRecord
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.evaluation.metrics import RANKING_METRICS
from kuberec.components.models import EncodedData, build_model, resolve_hparams
from kuberec.components.models.item_knn import DENSE_ITEMS as KNN_DENSE_ITEMS
from kuberec.components.models.item_knn import neighbour_count
from kuberec.components.models.registry import MODEL_TYPES, model_type
from kuberec.components.models.sequential import effective_loss
from kuberec.components.train.local_runner import fit_local
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.validation import (
    Holdout,
    carve_validation,
    encode_holdout,
    validate_per_user,
    validation_rule,
)
from kuberec.errors import ConfigError, KuberecError

#: Holdout users scored per candidate: bounds validation time at any catalogue size.
VALIDATION_USERS = 3000
SEQUENCE_TYPES = ("sasrec", "gru4rec")
#: Seconds per (training example x epoch) of the trained types on one CPU core (measured here).
_SECONDS_PER_SAMPLE = {
    "mf": 5e-6,
    "ncf": 3e-5,
    "two_tower": 3e-5,
    # ml-100k (98,114 interactions, 1,682 items, the default hyperparameters auto always
    # runs), one thread, validation included: 8.4e-5 and 5.9e-5 CPU-s; the ce loss's
    # softmax over a larger catalogue is added in `estimate`.
    "sasrec": 9e-5,
    "gru4rec": 6e-5,
    "dcn": 5e-5,
}
#: A user's history has order when it holds at least this many items, not all at one time.
ORDER_MIN_ITEMS = 3
#: The data has usable order when at least this share of its users have such a history.
ORDER_MIN_SHARE = 0.5
#: The catalogue the per-sample rates were measured on (ml-100k).
_MEASURED_ITEMS = 1682
#: Dense float32 multiply-adds per second on 2 busy CPU cores (multvae's estimate).
_FLOPS = 1e10


_RULES = {
    "temporal": "its latest interactions by a time cut",
    "latest": "each user's latest interaction",
    "random": "a random share per user",
}


@dataclass(frozen=True)
class AutoSpec:
    """``model.auto``: the time budget, the candidate list and the memory they may use."""

    budget_seconds: float = AUTO_BUDGET_SECONDS
    candidates: tuple[str, ...] = AUTO_CANDIDATES
    memory_gib: float = AUTO_MEMORY_GIB

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ConfigError("model.auto.candidates: list at least one model type")
        for name in self.candidates:
            if name == AUTO_MODEL:
                raise ConfigError("model.auto.candidates: 'auto' cannot be its own candidate")
            model_type(name)  # unknown names fail here, listing the valid ones
        if self.budget_seconds <= 0 or self.memory_gib <= 0:
            raise ConfigError("model.auto: budgetSeconds and memoryGiB must be > 0")


@dataclass(frozen=True)
class Selection:
    chosen: str
    metric: str
    candidates: list[CandidateRecord]  # the selection table's rows, in candidate order
    #: How validation was held out (``validation_rule``): "temporal", "latest" or "random".
    #: Not in ``to_dict``: the job status's selection record has no field for it yet.
    validation: str = "random"

    def to_dict(self) -> dict[str, Any]:
        """The job status's selection record, snake_case (as ``metrics.json`` holds it)."""
        record = SelectionRecord(chosen=self.chosen, metric=self.metric, candidates=self.candidates)
        return record.model_dump()


@dataclass(frozen=True)
class DataSize:
    """What the estimates read: sizes, and the co-occurrence work per item."""

    n_users: int
    n_items: int
    n_interactions: int
    pairs: float  # Σ_u |u|²: nonzeros bound of the Gram matrix, pairs of the time kernel
    partners: np.ndarray  # per item, Σ over its users of |u| - 1: bound of its Gram row
    has_timestamps: bool
    unordered: str = ""  # why a sequence model has no order to learn (empty: it has)

    @classmethod
    def of(cls, data: EncodedData, dataset: Dataset) -> DataSize:
        """The sizes of ``data``, encoded from ``dataset`` (read for its order)."""
        lengths = data.history.lengths().astype(np.float64)
        per_item = np.bincount(data.items, weights=lengths[data.users] - 1, minlength=data.n_items)
        return cls(
            data.n_users,
            data.n_items,
            data.n_interactions,
            float((lengths**2).sum()),
            per_item,
            dataset.has_timestamps,
            order_reason(dataset),
        )


def order_reason(dataset: Dataset) -> str:
    """Why ``dataset`` has no usable order for a sequence model (empty when it has).

    Usable order: timestamps, and at least ``ORDER_MIN_SHARE`` of the users have
    ``ORDER_MIN_ITEMS`` or more interactions that are not all at one timestamp. A
    timestamp column that is constant per user (a bulk import's load time) or
    histories of one or two items give a next-item model nothing to learn from.
    Sequence files without times (Amazon Games' ``Video.txt``) carry their line
    position as the timestamp, so they have order.
    """
    if not dataset.has_timestamps:
        return "the data has no timestamps: no order for a sequence model"
    frame = dataset.interactions
    per_user = frame.groupby("user_id", observed=True)["timestamp"].agg(["size", "nunique"])
    ordered = (per_user["size"] >= ORDER_MIN_ITEMS) & (per_user["nunique"] > 1)
    share = float(ordered.mean()) if len(per_user) else 0.0
    if share < ORDER_MIN_SHARE:
        return (
            f"no usable order: {share:.0%} of users have >= {ORDER_MIN_ITEMS} interactions "
            f"at more than one timestamp (a sequence model needs {ORDER_MIN_SHARE:.0%})"
        )
    return ""


def estimate(
    name: str, hparams: dict[str, Any], size: DataSize, settings: TrainSettings
) -> tuple[float, float]:
    """(seconds, MB) a fit of ``name`` should take on data of ``size``: rough, deterministic."""
    n, nnz = float(size.n_items), float(size.n_interactions)
    base_mb = nnz * 40 / 2**20
    if name == "popularity":
        return 0.5 + nnz * 1e-7, base_mb
    if name in ("ease", "ease_t"):
        seconds = n**3 * 1.5e-10 + n**2 * 5e-8
        memory = 4 * 8 * n**2
        if name == "ease_t" and hparams["time_mix"] > 0:
            seconds += size.pairs * 1e-7
            memory += 8 * n**2
        return seconds, base_mb + memory / 2**20
    if name == "item_knn":
        memory = 4e6 * 8 + n * hparams["neighbours"] * 12  # a block of similarities, the table
        if size.n_items > KNN_DENSE_ITEMS:  # sparse blocks: the co-occurring pairs' work
            memory = 4e6 * 40 + n * hparams["neighbours"] * 24  # a block's pairs, two tables
            return size.pairs * 4e-7 + nnz * 1e-6, base_mb + memory / 2**20
        return n**2 * 2e-8 + nnz * 1e-6, base_mb + memory / 2**20
    if name == "sparse_ease":
        k = np.minimum(size.partners, neighbour_count(size.n_items, hparams["neighbours"]))
        seconds = float((k**2).sum()) * 1e-7 + float((k**3).sum()) * 1e-9 + size.pairs * 1e-7
        memory = size.pairs * 36 + n * k.max(initial=1) * 16
        return seconds, base_mb + memory / 2**20
    if name == "multvae":
        # Two dense n_items-wide layers (weights, gradients, Adam's two moments) and a
        # batch of dense n_items-wide rows; each epoch multiplies every user's row by them.
        width = hparams["hidden"]
        memory = 16 * 2 * n * width + 4 * 4 * hparams["batch_size"] * n
        flops = 12.0 * size.n_users * n * width  # forward and backward, both wide layers
        return settings.epochs * flops / _FLOPS, base_mb + memory / 2**20
    if name == "bivae":
        # Each step encodes and decodes a batch of dense rows on both sides (users over
        # items, items over users), and an epoch has max(n_users, n_items) / batch steps.
        # ml-100k, one thread: 0.11 CPU-s per epoch against 0.8 s estimated (an upper bound).
        width, dim, batch = hparams["hidden"], hparams["dim"], hparams["batch_size"]
        both = n + size.n_users
        memory = 16 * both * width + 4 * (size.n_users + 2 * n) * dim + 4 * 6 * batch * both
        flops = 6.0 * max(size.n_users, n) * both * (width + dim)
        return settings.epochs * flops / _FLOPS, base_mb + memory / 2**20
    per_sample = _SECONDS_PER_SAMPLE.get(name, 1e-4)
    if name in SEQUENCE_TYPES and effective_loss(hparams["loss"], size.n_items) == "ce":
        # The measured rate holds a softmax over ml-100k's items; past them the output
        # layer's multiply-adds (forward and backward) grow with the catalogue.
        extra = max(0.0, n - _MEASURED_ITEMS)
        per_sample += 6.0 * float(hparams["dim"]) * extra / _FLOPS
    return settings.epochs * nnz * per_sample, base_mb + n * 256 * 4 / 2**20


def fits(name: str, hparams: dict[str, Any], size: DataSize) -> str:
    """Why ``name`` cannot be fitted on this data at all (empty when it can)."""
    if name in ("ease", "ease_t") and size.n_items > hparams["max_items"]:
        return f"{size.n_items} items > max_items {hparams['max_items']} (dense n_items² inverse)"
    if name in SEQUENCE_TYPES and size.unordered:
        return size.unordered
    if name == "ease_t" and not size.has_timestamps:
        return "the data has no timestamps: ease_t is ease without them"
    return ""


def select(
    dataset: Dataset,
    spec: AutoSpec,
    settings: TrainSettings,
    *,
    protocol: str | None = None,
    text_embeddings: np.ndarray | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Selection:
    """Fit the candidates that fit on the training part minus a holdout; the best wins.

    ``protocol``: the evaluation protocol ``dataset`` is the training part of; the
    holdout mirrors it (None, as for ``kuberec train`` on all the data: random).
    """
    fraction = settings.validation_fraction or 0.1
    rule = validation_rule(protocol, dataset.has_timestamps)
    fit_set, held_out = carve_validation(dataset, protocol, fraction, settings.seed)
    progress(f"auto: validation holds out {_RULES[rule]} of the training part")
    data = EncodedData.from_dataset(fit_set, text_embeddings=text_embeddings)
    holdout = _subsample(encode_holdout(data, held_out), VALIDATION_USERS, settings.seed)
    size = DataSize.of(data, fit_set)
    metric = settings.validation_metric
    left = spec.budget_seconds
    rows: list[CandidateRecord] = []
    per_user: dict[str, np.ndarray] = {}  # each trained candidate's metric per holdout user
    clock = 0.0  # wall seconds the fitted candidates took: the backstop's measure
    for name in spec.candidates:
        hparams = resolve_hparams(name)
        seconds, memory = estimate(name, hparams, size, settings)
        row: dict[str, Any] = {
            "model_type": name,
            "estimated_seconds": round(seconds, 1),
            "estimated_memory_mb": round(memory),
        }
        reason = fits(name, hparams, size)
        if not reason and memory > spec.memory_gib * 1024:
            reason = f"needs ~{memory / 1024:.1f} GiB, above memoryGiB {spec.memory_gib:g}"
        if not reason and seconds > left:
            reason = (
                f"estimated {seconds:.0f} s, above the {left:.0f} s left of "
                f"budgetSeconds {spec.budget_seconds:g}"
            )
        if not reason and clock >= spec.budget_seconds and _any_trained(rows):
            reason = (
                f"budget spent on the clock: the candidates before it took {clock:.0f} s "
                f"of budgetSeconds {spec.budget_seconds:g} (this machine ran slower "
                "than the estimates)"
            )
        if reason:
            rows.append(CandidateRecord(**row, status="skipped", reason=reason))
            progress(f"auto: {name} skipped: {reason}")
            continue
        left -= seconds
        progress(f"auto: fitting {name}")
        started = time.perf_counter()
        try:
            with PeakMemory() as peak:
                scores = _fit_and_validate(name, hparams, data, holdout, settings)
                row["fit_seconds"] = round(time.perf_counter() - started, 2)
            row["validation"] = {m: float(scores[m].mean()) for m in RANKING_METRICS if len(scores)}
            row["peak_memory_mb"] = peak.mb
        except (KuberecError, ArithmeticError, RuntimeError, ValueError, MemoryError) as exc:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            rows.append(CandidateRecord(**row, status="failed", reason=reason))
            progress(f"auto: {name} failed: {reason}")
            continue
        finally:
            clock += time.perf_counter() - started
        if not np.isfinite(row["validation"].get(metric, np.nan)):
            reason = f"validation {metric} is not finite (diverged)"
            rows.append(CandidateRecord(**row, status="failed", reason=reason))
            continue
        rows.append(CandidateRecord(**row, status="trained"))
        per_user[name] = scores[metric].to_numpy()
    return _decide(rows, metric, per_user, rule)


def _fit_and_validate(
    name: str, hparams: dict[str, Any], data: EncodedData, holdout: Holdout, settings: TrainSettings
) -> pd.DataFrame:
    if MODEL_TYPES[name].trainable:
        model, _, _ = fit_local(name, data, hparams, holdout, settings)
    else:
        model = build_model(name, data, hparams).eval()
    return validate_per_user(model, data, holdout, settings.validation_k)


def _any_trained(rows: list[CandidateRecord]) -> bool:
    return any(r.status == "trained" for r in rows)


def _decide(
    rows: list[CandidateRecord], metric: str, per_user: dict[str, np.ndarray], rule: str
) -> Selection:
    trained = [r for r in rows if r.status == "trained"]
    if not trained:
        failures = "; ".join(f"{r.model_type}: {r.reason}" for r in rows)
        raise ConfigError(
            f"model auto: no candidate could be fitted ({failures}); raise "
            "model.auto.budgetSeconds or memoryGiB, add a type to model.auto.candidates "
            "(sparse_ease fits any catalogue), or set model.type"
        )
    chosen, reason = one_standard_error_choice([r.model_type for r in trained], per_user)
    rows = [
        r.model_copy(update={"status": "chosen", "reason": reason}) if r.model_type == chosen else r
        for r in rows
    ]
    return Selection(chosen, metric, rows, rule)


def one_standard_error_choice(names: list[str], per_user: dict[str, np.ndarray]) -> tuple[str, str]:
    """(the chosen name, why, when not simply the best): the one-standard-error rule.

    The best mean wins unless a candidate listed before it is within one standard
    error of the paired per-user difference (Hastie, Tibshirani & Friedman, ESL
    §7.10; Breiman et al. 1984): on a small holdout (ml-100k's temporal one has 75
    users) gaps below that are noise, and the list order is the preference. Every
    array holds the same holdout users in the same order.
    """
    best = max(names, key=lambda n: per_user[n].mean())  # first in list order on ties
    for name in names[: names.index(best)]:
        gap = per_user[best] - per_user[name]
        error = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else 0.0
        if gap.mean() <= error:
            return name, (
                f"within one standard error ({error:.4f}) of {best}'s "
                f"{per_user[best].mean():.4f}, and listed before it"
            )
    return best, ""


def _subsample(holdout: Holdout, max_users: int, seed: int) -> Holdout:
    """The holdout pairs of at most ``max_users`` users, drawn with ``seed``."""
    users = np.unique(holdout.users)
    if len(users) <= max_users:
        return holdout
    kept = np.random.default_rng(seed).choice(users, max_users, replace=False)
    mask = np.isin(holdout.users, kept)
    return Holdout(holdout.users[mask], holdout.items[mask])


class PeakMemory:
    """Peak RSS of this process (MB) while the block runs, sampled every 50 ms."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.mb = interval, 0.0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.mb = max(self.mb, self._process.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.mb = round(max(self.mb, self._process.memory_info().rss / 2**20))


TABLE_COLUMNS = ("model", "status", "validation", "fit s", "peak MB", "reason")


def table(selection: dict[str, Any]) -> list[list[str]]:
    """A selection (``Selection.to_dict()``) as rows of text, in ``TABLE_COLUMNS`` order."""
    out = []
    for row in selection["candidates"]:
        value = row["validation"].get(selection["metric"])
        seconds, memory = row["fit_seconds"], row["peak_memory_mb"]
        out.append(
            [
                row["model_type"],
                row["status"],
                f"{value:.4f}" if value is not None else "",
                f"{seconds:.1f}" if seconds is not None else "",
                f"{memory:.0f}" if memory is not None else "",
                row["reason"],
            ]
        )
    return out


def markdown(selection: dict[str, Any]) -> list[str]:
    """The selection table as Markdown lines (the pipeline report's section)."""
    lines = [
        f"Chosen: `{selection['chosen']}` (validation {selection['metric']}, carved from "
        "the training part).",
        "",
        "| " + " | ".join(TABLE_COLUMNS) + " |",
        "|" + "---|" * len(TABLE_COLUMNS),
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in table(selection)]


def require_no_hparams(hparams: dict[str, Any] | None) -> None:
    """With ``auto`` every candidate runs its defaults; hyperparameters need a named type."""
    if hparams:
        raise ConfigError(
            f"hyperparameters {sorted(hparams)} need a model type: with model type auto "
            "every candidate runs its defaults; set model.type to the type they belong to"
        )
