"""A seeded synthetic dataset for scale tests and for checking that models learn.

The generating model is deliberately learnable: users and items have latent
factors (items clustered by category), item popularity follows a power law, and
each user picks items by ``softmax(user·item / T + log popularity)`` without
replacement. Timestamps come in sessions whose items share categories, so
sequence models have signal too, and item text is made of category words, so
text embeddings carry category signal (32 word themes: beyond 32 categories,
themes repeat, so text separates categories only modulo 32).

Users are generated in fixed blocks (their boundaries depend only on the spec,
never on ``chunk_interactions``), each with its own random stream derived from
the seed. The output is therefore identical whether it is built in memory with
:func:`generate` or streamed to Parquet chunk by chunk with
:func:`write_parquet`, and whatever the chunk size.

Ids are 1-based (``user_id`` in ``1..n_users``, ``item_id`` in
``1..n_items``), as in MovieLens, so code that confuses ids with dense indices
fails loudly instead of silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from kuberec.components.datasets.atomic import atomic_path
from kuberec.components.datasets.canonical import Dataset
from kuberec.errors import ConfigError, DataError

__all__ = [
    "SyntheticSpec",
    "check_memory",
    "generate",
    "memory_needed",
    "read_parquet",
    "write_parquet",
]

#: Every synthetic dataset starts at this instant, so two specs are comparable in time.
START = pd.Timestamp("2024-01-01", tz="UTC")
FORMAT = "kuberec-synthetic/1"

_TEMPERATURE = 0.125  # affinity (cosine) / T: ~8 logits between liked and disliked
_CANDIDATES_PER_PICK = 4  # candidates drawn per interaction to choose
_PROPOSAL = (0.5, 0.3, 0.2)  # candidates from: all items, first interest, second interest
_SECOND_INTEREST = 0.5  # weight of a user's second category in their factor
_USER_NOISE = 0.6  # personal taste beyond the two categories
_BLOCK_TARGET = 250_000  # interactions per user block: bounds memory at any scale
_BLOCK_MAX_USERS = 65_536
_FULL_SCORE_CELLS = 2_000_000  # users x items scored at once on the exact path
_ACTIVITY_SIGMA = 1.0  # lognormal user activity: heavy-tailed counts
_SESSION_MEAN = 5.0  # interactions per session (geometric)
_GAP_MIN_S, _GAP_MEAN_S = 10.0, 150.0  # seconds between interactions in a session
_SESSION_SPAN_S = 7_200  # sessions start early enough to end inside the time range
_N_SEGMENTS = 8

# Peak bytes the generator holds per row, measured with generate() on this machine (about
# 110 per interaction, 400 per user and 950 per item: text, genres, factors), rounded up.
_BYTES_PER_INTERACTION, _BYTES_PER_USER, _BYTES_PER_ITEM = 128, 512, 1024

# Word groups that a sentence-embedding model separates well: one group per category.
_THEMES = (
    "space rocket galaxy orbit astronaut",
    "cooking recipe kitchen flavor spice",
    "football match stadium goal league",
    "ocean sailing island wave harbor",
    "jazz melody saxophone rhythm concert",
    "mountain hiking trail summit glacier",
    "detective murder clue suspect alibi",
    "romance wedding love heart kiss",
    "dragon castle knight sword quest",
    "robot computer algorithm software code",
    "garden flower seed soil bloom",
    "war soldier battle army trench",
    "horror ghost haunted fear night",
    "comedy joke laughter clown prank",
    "finance money stock market bank",
    "medicine doctor hospital patient surgery",
    "school teacher student exam classroom",
    "desert camel sand dune oasis",
    "car racing engine speed track",
    "painting artist canvas museum color",
    "dinosaur fossil jurassic bone extinct",
    "politics election vote senator campaign",
    "cat dog pet puppy kitten",
    "winter snow ice skiing cold",
    "farm tractor harvest barn cattle",
    "fashion dress model runway style",
    "pirate treasure ship captain parrot",
    "train railway station journey ticket",
    "chess puzzle strategy board game",
    "volcano earthquake disaster lava storm",
    "vampire blood coffin bat immortal",
    "wine vineyard grape cellar bottle",
)
_ADJECTIVES = ("quiet", "bold", "strange", "gentle", "epic", "classic", "modern", "short")


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and shape of a synthetic dataset; the seed makes it reproducible."""

    n_users: int
    n_items: int
    n_interactions: int
    n_categories: int = 20
    dim: int = 16
    popularity_exponent: float = 1.0
    n_days: int = 180
    seed: int = 0
    chunk_interactions: int = 1_000_000

    def __post_init__(self) -> None:
        for name in (
            "n_users",
            "n_items",
            "n_interactions",
            "n_categories",
            "dim",
            "n_days",
            "chunk_interactions",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("seed", self.seed, minimum=0)
        exponent = self.popularity_exponent
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)):
            raise ConfigError(
                f"SyntheticSpec.popularity_exponent must be a number >= 0, got {exponent!r}"
            )
        if not math.isfinite(exponent) or exponent < 0:
            raise ConfigError(
                f"SyntheticSpec.popularity_exponent must be a finite number >= 0 "
                f"(0 = uniform, 1 = Zipf), got {exponent!r}"
            )
        if self.n_interactions > self.n_users * self.n_items:
            raise ConfigError(
                f"SyntheticSpec.n_interactions must be <= n_users * n_items "
                f"({self.n_users * self.n_items}) because (user, item) pairs are unique, "
                f"got {self.n_interactions}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> SyntheticSpec:
        """Rebuild a spec from a manifest, naming unknown keys instead of failing obscurely."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"SyntheticSpec: unknown field(s) {unknown}; known: {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(f"SyntheticSpec.{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"SyntheticSpec.{name} must be >= {minimum}, got {value}")


# --------------------------------------------------------------------------- public API


def memory_needed(spec: SyntheticSpec, *, streaming: bool = False) -> int:
    """Bytes the generator needs at its peak; streaming holds one chunk plus one block."""
    interactions = spec.n_interactions
    if streaming:
        interactions = min(interactions, 2 * (spec.chunk_interactions + _BLOCK_TARGET))
    return (interactions * _BYTES_PER_INTERACTION + spec.n_users * _BYTES_PER_USER
            + spec.n_items * _BYTES_PER_ITEM)  # fmt: skip


def check_memory(
    spec: SyntheticSpec, *, streaming: bool = False, available: int | None = None
) -> None:
    """Refuse sizes this machine cannot hold before allocating anything (not a MemoryError later).

    ``available`` defaults to the memory available now (psutil).
    """
    import psutil

    free = psutil.virtual_memory().available if available is None else available
    needed = memory_needed(spec, streaming=streaming)
    if needed > free:
        hint = "" if streaming else ", or write it to Parquet in chunks (`kuberec data synthetic`)"
        raise ConfigError(
            f"synthetic data of {spec.n_users:,} users, {spec.n_items:,} items and "
            f"{spec.n_interactions:,} interactions needs about {_gib(needed)} of memory to "
            f"generate; {_gib(free)} is available: lower users, items or interactions{hint}"
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def generate(spec: SyntheticSpec) -> Dataset:
    """The whole dataset in memory: for small and medium sizes (use write_parquet beyond)."""
    check_memory(spec)
    catalogue = _Catalogue.build(spec)
    counts = _user_counts(spec)
    parts: list[_Block] = list(_iter_blocks(spec, catalogue, counts))
    interactions = _concat_columns([p.interactions for p in parts])
    users = _concat_columns([p.users for p in parts])
    return _dataset(
        spec,
        _interactions_frame(interactions),
        catalogue.items_frame(spec),
        _users_frame(users),
    )


def write_parquet(spec: SyntheticSpec, out_dir: Path, *, overwrite: bool = False) -> Path:
    """Stream the dataset to ``out_dir`` chunk by chunk; all or nothing.

    Layout: ``interactions/part-00000.parquet ...`` (``chunk_interactions`` rows
    each, the last one fewer), ``items.parquet``, ``users.parquet`` and
    ``manifest.json``. Everything is written to a temporary sibling directory
    renamed into place at the end, so a failure never leaves a half dataset.
    """
    out_dir = Path(out_dir)
    check_memory(spec, streaming=True)
    if _is_occupied(out_dir) and not overwrite:
        raise ConfigError(
            f"{out_dir} already exists and is not empty; choose another directory or pass "
            "overwrite=True to replace it"
        )
    with atomic_path(out_dir) as staged:
        staged.mkdir()
        _write_all(spec, staged)
    return out_dir


def read_parquet(out_dir: Path) -> Dataset:
    """Load a dataset written by :func:`write_parquet`, checking it is complete."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(
            f"{out_dir}: no manifest.json; this is not a synthetic dataset written by "
            "write_parquet (or the write did not finish): generate it again"
        )
    manifest = _read_manifest(manifest_path)
    spec = SyntheticSpec.from_dict(manifest["spec"])
    parts = [out_dir / "interactions" / name for name in manifest["parts"]]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise DataError(f"{out_dir}: missing interaction part(s) {missing}; generate it again")
    interactions = pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)
    items = pq.read_table(out_dir / "items.parquet").to_pandas()
    items["genres"] = [list(g) for g in items["genres"]]
    users = pq.read_table(out_dir / "users.parquet").to_pandas()
    for what, frame in (("interactions", interactions), ("items", items), ("users", users)):
        expected = manifest["rows"][what]
        if len(frame) != expected:
            raise DataError(
                f"{out_dir}: {what} has {len(frame)} rows, the manifest says {expected}; "
                "the files were changed after writing: generate it again"
            )
    return _dataset(spec, interactions, items, users)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); generate the dataset again") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: format {found!r}, expected {FORMAT!r}; generate it again")
    missing = [k for k in ("spec", "rows", "parts") if k not in manifest]
    if missing:
        raise DataError(f"{path}: missing key(s) {missing}; generate the dataset again")
    return manifest


# --------------------------------------------------------------------------- writing


def _is_occupied(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _write_all(spec: SyntheticSpec, root: Path) -> None:
    catalogue = _Catalogue.build(spec)
    items = catalogue.items_frame(spec)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), root / "items.parquet")
    (root / "interactions").mkdir()
    size = spec.chunk_interactions
    parts: list[str] = []
    users: list[dict[str, np.ndarray]] = []
    pending: list[dict[str, np.ndarray]] = []  # never more than one chunk plus one block
    n_pending = n_written = 0
    for block in _iter_blocks(spec, catalogue, _user_counts(spec)):
        users.append(block.users)
        pending.append(block.interactions)
        n_pending += len(block.interactions["user_id"])
        if n_pending >= size:
            merged, full = _concat_columns(pending), n_pending - n_pending % size
            for lo in range(0, full, size):
                parts.append(_next_part(root, parts, _rows(merged, lo, lo + size)))
            pending = [_rows(merged, full, n_pending)]
            n_pending, n_written = n_pending - full, n_written + full
    if n_pending:
        parts.append(_next_part(root, parts, _concat_columns(pending)))
        n_written += n_pending
    users_frame = _users_frame(_concat_columns(users))
    pq.write_table(pa.Table.from_pandas(users_frame, preserve_index=False), root / "users.parquet")
    manifest = {
        "format": FORMAT,
        "spec": spec.to_dict(),
        "rows": {"interactions": n_written, "items": len(items), "users": len(users_frame)},
        "parts": parts,
        "start": START.isoformat(),
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _next_part(root: Path, parts: list[str], columns: dict[str, np.ndarray]) -> str:
    name = f"part-{len(parts):05d}.parquet"
    _write_part(root / "interactions" / name, columns)
    return name


def _write_part(path: Path, columns: dict[str, np.ndarray]) -> None:
    """One interactions chunk, built straight from numpy to avoid a pandas copy."""
    table = pa.table(
        {
            "user_id": pa.array(columns["user_id"], type=pa.int64()),
            "item_id": pa.array(columns["item_id"], type=pa.int64()),
            "rating": pa.array(columns["rating"], type=pa.float32()),
            "timestamp": pa.array(columns["timestamp"], type=pa.timestamp("ns", tz="UTC")),
        }
    )
    pq.write_table(table, path)


def _rows(columns: dict[str, np.ndarray], lo: int, hi: int) -> dict[str, np.ndarray]:
    return {k: v[lo:hi] for k, v in columns.items()}


def _concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# --------------------------------------------------------------------------- frames


def _dataset(
    spec: SyntheticSpec, interactions: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame
) -> Dataset:
    shape = {k: v for k, v in spec.to_dict().items() if k != "chunk_interactions"}
    meta = {"source": "synthetic", "spec": json.dumps(shape, sort_keys=True)}  # not how written
    return Dataset("synthetic", interactions, items, users, meta=meta)


def _interactions_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    timestamp = pd.Series(columns["timestamp"].astype("datetime64[ns]")).dt.tz_localize("UTC")
    return pd.DataFrame(
        {
            "user_id": columns["user_id"].astype(np.int64),
            "item_id": columns["item_id"].astype(np.int64),
            "rating": columns["rating"].astype(np.float32),
            "timestamp": timestamp,
        }
    )


def _users_frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    segments = np.array([f"segment-{k:02d}" for k in range(_N_SEGMENTS)], dtype=object)
    return pd.DataFrame(
        {
            "user_id": columns["user_id"].astype(np.int64),
            "segment": segments[columns["segment"]],
            "age": columns["age"].astype(np.int64),
        }
    )


# --------------------------------------------------------------------------- the model


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Independent streams per purpose and per user block, all derived from one seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_STREAM_COUNTS, _STREAM_ITEMS, _STREAM_BLOCKS = 0, 1, 2


def _category_weights(n_categories: int) -> np.ndarray:
    """Some categories are bigger than others, mildly."""
    w = 1.0 / np.arange(1, n_categories + 1) ** 0.6
    return w / w.sum()


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class _Catalogue:
    """Item factors, popularity and metadata: global, shared by every user block."""

    factors: np.ndarray  # (n_items, dim) float32, unit norm
    log_pop: np.ndarray  # (n_items,) log popularity
    categories: np.ndarray  # (n_items, 3) category indices, -1 where absent
    centroids: np.ndarray  # (n_categories, dim) unit norm
    year: np.ndarray  # (n_items,) int64, -1 for unknown
    words: np.ndarray  # (n_items, 4) word choices for the text
    by_category: np.ndarray  # item indices sorted by primary category
    mass: np.ndarray  # cumulative popularity in that order: one search draws from any category
    category_start: np.ndarray  # (n_categories,) mass before each category
    category_mass: np.ndarray  # (n_categories,) popularity of each category

    @classmethod
    def build(cls, spec: SyntheticSpec) -> _Catalogue:
        rng = _rng(spec.seed, _STREAM_ITEMS)
        n, c, d = spec.n_items, spec.n_categories, spec.dim
        centroids = _normalise(rng.standard_normal((c, d)))
        categories = _item_categories(rng, n, c)
        present = categories >= 0
        mix = centroids[categories[:, 0]] + 0.4 * (
            np.where(present[:, 1:2], centroids[categories[:, 1]], 0.0)
            + np.where(present[:, 2:3], centroids[categories[:, 2]], 0.0)
        )
        factors = _normalise(mix + 0.6 * rng.standard_normal((n, d)) / math.sqrt(d))
        ranks = rng.permutation(n)
        pop = (ranks + 1.0) ** -float(spec.popularity_exponent)
        pop /= pop.sum()
        year = np.clip(2024 - np.floor(rng.exponential(12.0, n)), 1920, 2024).astype(np.int64)
        year[rng.random(n) < 0.02] = -1
        words = rng.integers(0, 1 << 30, size=(n, 4))
        by_category = np.argsort(categories[:, 0], kind="stable")
        mass = np.cumsum(pop[by_category])
        category_mass = np.bincount(categories[:, 0], weights=pop, minlength=c)
        category_start = np.concatenate([[0.0], np.cumsum(category_mass)[:-1]])
        return cls(
            factors=factors.astype(np.float32),
            log_pop=np.log(pop),
            categories=categories,
            centroids=centroids.astype(np.float32),
            year=year,
            words=words,
            by_category=by_category,
            mass=mass,
            category_start=category_start,
            category_mass=category_mass,
        )

    def items_frame(self, spec: SyntheticSpec) -> pd.DataFrame:
        names = [f"category-{k:02d}" for k in range(spec.n_categories)]
        themes = [_THEMES[k % len(_THEMES)].split() for k in range(spec.n_categories)]
        ids = np.arange(1, spec.n_items + 1, dtype=np.int64)
        genres = [[names[k] for k in row if k >= 0] for row in self.categories.tolist()]
        text = [
            _sentence(row, w, themes)
            for row, w in zip(self.categories.tolist(), self.words.tolist(), strict=True)
        ]
        year = pd.array(np.where(self.year < 0, 0, self.year), dtype="Int64")
        year[self.year < 0] = pd.NA
        return pd.DataFrame(
            {
                "item_id": ids,
                "title": [f"Item {i}" for i in ids.tolist()],
                "year": year,
                "genres": genres,
                "text": text,
            }
        )


def _item_categories(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """1-3 distinct categories per item; the first (primary) one drives its factor."""
    categories = np.full((n, 3), -1, dtype=np.int64)
    categories[:, 0] = rng.choice(c, size=n, p=_category_weights(c))
    n_extra = np.minimum(rng.choice(3, size=n, p=[0.5, 0.35, 0.15]), c - 1)
    if c >= 2:
        off1 = rng.integers(0, c - 1, size=n)
        categories[:, 1] = np.where(n_extra >= 1, (categories[:, 0] + 1 + off1) % c, -1)
        if c >= 3:
            off2 = (off1 + 1 + rng.integers(0, c - 2, size=n)) % (c - 1)
            categories[:, 2] = np.where(n_extra >= 2, (categories[:, 0] + 1 + off2) % c, -1)
    return categories


def _sentence(categories: list[int], draws: list[int], themes: list[list[str]]) -> str:
    """A short sentence of category words, so a text embedding separates categories."""
    main = themes[categories[0]]
    other = themes[categories[1]] if categories[1] >= 0 else main
    adjective = _ADJECTIVES[draws[0] % len(_ADJECTIVES)]
    w1 = main[draws[1] % len(main)]
    w2 = main[(draws[1] + 1 + draws[2] % (len(main) - 1)) % len(main)]
    w3 = other[draws[3] % len(other)]
    return f"A {adjective} story of {w1}, {w2} and {w3}."


def _user_counts(spec: SyntheticSpec) -> np.ndarray:
    """Interactions per user: heavy-tailed, exactly n_interactions in all, <= n_items each."""
    rng = _rng(spec.seed, _STREAM_COUNTS)
    activity = rng.lognormal(0.0, _ACTIVITY_SIGMA, spec.n_users)
    counts = np.zeros(spec.n_users, dtype=np.int64)
    n_active = min(spec.n_interactions, spec.n_users)
    if n_active == spec.n_users:
        active = np.arange(spec.n_users)
    else:  # fewer interactions than users: the most active (with noise) get one each
        keys = np.log(activity) + rng.gumbel(size=spec.n_users)
        active = np.sort(np.argpartition(-keys, n_active - 1)[:n_active])
    counts[active] = 1
    rest = _distribute(spec.n_interactions - n_active, activity[active], spec.n_items - 1)
    counts[active] += rest
    return counts


def _distribute(total: int, weights: np.ndarray, capacity: int) -> np.ndarray:
    """Integers proportional to weights, each <= capacity, summing exactly to total."""
    alloc = np.zeros(len(weights), dtype=np.int64)
    remaining = int(total)
    while remaining > 0:
        room = capacity - alloc
        w = np.where(room > 0, weights, 0.0)
        share = remaining * w / w.sum()
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:  # what is left is smaller than the open slots: largest shares first
            order = np.argsort(-share, kind="stable")[: min(remaining, int((room > 0).sum()))]
            add[order] = 1
        alloc += add
        remaining -= int(add.sum())
    return alloc


def _block_bounds(counts: np.ndarray) -> list[tuple[int, int]]:
    """User ranges of about _BLOCK_TARGET interactions: they depend only on the counts."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    bounds: list[tuple[int, int]] = []
    start, n = 0, len(counts)
    while start < n:
        stop = int(np.searchsorted(cum, cum[start] + _BLOCK_TARGET, side="left"))
        stop = min(max(stop, start + 1), start + _BLOCK_MAX_USERS, n)
        bounds.append((start, stop))
        start = stop
    return bounds


@dataclass(frozen=True)
class _Block:
    users: dict[str, np.ndarray]
    interactions: dict[str, np.ndarray]


def _iter_blocks(
    spec: SyntheticSpec, catalogue: _Catalogue, counts: np.ndarray
) -> Iterator[_Block]:
    for index, (start, stop) in enumerate(_block_bounds(counts)):
        rng = _rng(spec.seed, _STREAM_BLOCKS, index)
        yield _generate_block(spec, catalogue, counts[start:stop], start, rng)


def _generate_block(
    spec: SyntheticSpec,
    catalogue: _Catalogue,
    counts: np.ndarray,
    first_user: int,
    rng: np.random.Generator,
) -> _Block:
    n_users = len(counts)
    interests, factors = _user_factors(rng, catalogue, n_users)
    home = interests[:, 0]
    age = np.clip(np.rint(rng.normal(30.0 + 2.0 * (home % 10), 11.0)), 18, 80).astype(np.int64)
    users = {
        "user_id": np.arange(first_user + 1, first_user + n_users + 1, dtype=np.int64),
        "segment": home % _N_SEGMENTS,
        "age": age,
    }
    owner, item = _choose_items(rng, catalogue, factors, interests, counts)
    owner, item, seconds = _sessions(rng, spec, catalogue, owner, item, first_user)
    affinity = np.einsum("ij,ij->i", factors[owner], catalogue.factors[item])
    noisy = 2.5 + 2.5 * affinity + rng.normal(0.0, 0.6, len(item))  # mean ~3.7, as in MovieLens
    interactions = {
        "user_id": owner + first_user + 1,
        "item_id": item + 1,
        "rating": np.clip(np.rint(noisy), 1, 5).astype(np.float32),
        "timestamp": START.value + seconds * 1_000_000_000,
    }
    return _Block(users, interactions)


def _user_factors(
    rng: np.random.Generator, catalogue: _Catalogue, n_users: int
) -> tuple[np.ndarray, np.ndarray]:
    """A home category, a secondary interest and personal noise per user."""
    c, d = catalogue.centroids.shape
    weights = _category_weights(c)
    interests = rng.choice(c, size=(n_users, 2), p=weights)
    mix = (
        catalogue.centroids[interests[:, 0]]
        + _SECOND_INTEREST * catalogue.centroids[interests[:, 1]]
        + _USER_NOISE * rng.standard_normal((n_users, d)) / math.sqrt(d)
    )
    return interests.astype(np.int64), _normalise(mix).astype(np.float32)


def _choose_items(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    factors: np.ndarray,
    interests: np.ndarray,
    counts: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user, sampled from softmax(affinity / T + log popularity).

    Light users draw a few candidates per pick (from popularity, overall and within
    their two interests) and keep the best by importance-corrected score plus Gumbel
    noise: cost O(interactions). Users heavy relative to the catalogue, and any
    whose candidates came out too few, are scored exactly against every item.
    """
    n_items = len(catalogue.log_pop)
    wants = _CANDIDATES_PER_PICK * counts + 16
    sampled = (counts > 0) & (2 * wants < n_items)
    owner, item, short = _candidate_picks(
        rng, catalogue, factors, interests, counts, wants, sampled
    )
    exact = np.flatnonzero(((counts > 0) & ~sampled) | short)
    owner_x, item_x = _exact_picks(rng, catalogue, factors, counts, exact)
    return np.concatenate([owner, owner_x]), np.concatenate([item, item_x])


def _candidate_picks(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    factors: np.ndarray,
    interests: np.ndarray,
    counts: np.ndarray,
    wants: np.ndarray,
    sampled: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_items = len(catalogue.log_pop)
    users = np.flatnonzero(sampled)
    owner = np.repeat(users, wants[users])
    item = _draw_candidates(rng, catalogue, interests[owner])
    keys = np.sort(owner * n_items + item)
    keys = keys[np.concatenate([keys[:1] >= 0, keys[1:] != keys[:-1]])]  # each pair once
    owner, item = np.divmod(keys, n_items)
    distinct = np.bincount(owner, minlength=len(counts))
    short = sampled & (distinct < counts)
    keep = ~short[owner]
    owner, item = owner[keep], item[keep]
    score = np.einsum("ij,ij->i", factors[owner], catalogue.factors[item]) / _TEMPERATURE
    score = score - np.log(_proposal_ratio(catalogue, interests[owner], item))
    score = score + rng.gumbel(size=len(owner))
    order = _group_order(owner, -score, stable=False)
    owner, item = owner[order], item[order]
    chosen = _rank_in_group(owner, len(counts)) < counts[owner]
    return owner[chosen], item[chosen], short


def _group_order(group: np.ndarray, key: np.ndarray, *, stable: bool = True) -> np.ndarray:
    """Order by group (small ints), then key: one float sort, much faster than lexsort."""
    if len(key) == 0:
        return np.zeros(0, dtype=np.int64)
    low, span = float(key.min()), float(key.max() - key.min())
    scaled = (key - low) / (span * (1.0 + 1e-9)) if span > 0 else np.zeros(len(key))
    return np.argsort(group + scaled, kind="stable" if stable else "quicksort")


def _rank_in_group(group: np.ndarray, n_groups: int) -> np.ndarray:
    """Position of each row within its group, for rows sorted by group."""
    sizes = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    return np.arange(len(group)) - starts[group]


def _draw_candidates(
    rng: np.random.Generator, catalogue: _Catalogue, interests: np.ndarray
) -> np.ndarray:
    """Items by popularity: overall, or within the owner's first or second interest."""
    n = len(interests)
    component = np.searchsorted(np.cumsum(_PROPOSAL), rng.random(n), side="right")
    component = np.minimum(component, 2)
    u = rng.random(n)
    which = interests[np.arange(n), np.maximum(component - 1, 0)]
    low = np.where(component == 0, 0.0, catalogue.category_start[which])
    width = np.where(component == 0, catalogue.mass[-1], catalogue.category_mass[which])
    position = np.searchsorted(catalogue.mass, low + u * width, side="right")
    return catalogue.by_category[np.minimum(position, len(catalogue.mass) - 1)]


def _proposal_ratio(catalogue: _Catalogue, interests: np.ndarray, item: np.ndarray) -> np.ndarray:
    """q(item) / popularity(item) for the candidate mixture: the importance correction."""
    category = catalogue.categories[item, 0]
    ratio = np.full(len(item), _PROPOSAL[0])
    for k in (0, 1):
        hit = category == interests[:, k]
        ratio += np.where(hit, _PROPOSAL[k + 1] / catalogue.category_mass[category], 0.0)
    return ratio


def _exact_picks(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    factors: np.ndarray,
    counts: np.ndarray,
    users: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel top-k over the whole catalogue, a few users at a time."""
    n_items = len(catalogue.log_pop)
    rows = max(1, _FULL_SCORE_CELLS // n_items)
    owners: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for lo in range(0, len(users), rows):
        batch = users[lo : lo + rows]
        score = (factors[batch] @ catalogue.factors.T) / _TEMPERATURE + catalogue.log_pop
        score = score + rng.gumbel(size=score.shape)
        ranked = np.argsort(-score, axis=1, kind="stable")
        take = np.arange(n_items)[None, :] < counts[batch][:, None]
        owners.append(np.repeat(batch, counts[batch]))
        items.append(ranked[take])
    if not owners:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(owners).astype(np.int64), np.concatenate(items).astype(np.int64)


def _sessions(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    catalogue: _Catalogue,
    owner: np.ndarray,
    item: np.ndarray,
    first_user: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Order each user's items into timed sessions that mostly stay in one category.

    Items are sorted by a per-(user, category) random key plus a little noise, then
    cut into sessions of geometric length; sessions start at sorted random times and
    their items follow a few minutes apart. Returns rows sorted by (user, time).
    """
    n = len(owner)
    category = catalogue.categories[item, 0]
    salt = np.uint64(rng.integers(0, 2**63))
    user_cat = (owner + first_user).astype(np.uint64) * np.uint64(spec.n_categories)
    key = _hash01((user_cat + category.astype(np.uint64)) ^ salt) + rng.normal(0.0, 0.08, n)
    order = _group_order(owner, key)
    owner, item = owner[order], item[order]
    first_of_user = np.ones(n, dtype=bool)
    first_of_user[1:] = owner[1:] != owner[:-1]
    new_session = first_of_user | (rng.random(n) < 1.0 / _SESSION_MEAN)
    session = np.cumsum(new_session) - 1
    session_owner = owner[new_session]
    horizon = max(spec.n_days * 86_400 - _SESSION_SPAN_S, 1)
    starts = rng.random(len(session_owner)) * horizon
    starts = starts[_group_order(session_owner, starts)]  # sessions in time order per user
    gaps = np.where(new_session, 0.0, _GAP_MIN_S + rng.exponential(_GAP_MEAN_S, n))
    elapsed = np.cumsum(gaps)
    offset = elapsed - elapsed[np.flatnonzero(new_session)][session]
    seconds = np.minimum(np.floor(starts[session] + offset), spec.n_days * 86_400 - 1)
    seconds = seconds.astype(np.int64)
    timed = _group_order(owner, seconds.astype(np.float64))
    return owner[timed], item[timed], seconds[timed]


def _hash01(x: np.ndarray) -> np.ndarray:
    """SplitMix64 to [0, 1): a random key per (user, category) without a table."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53
