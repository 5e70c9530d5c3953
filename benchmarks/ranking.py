"""The accuracy-diversity trade-off of the re-ranking stage, and what the stage costs.

    python benchmarks/ranking.py --data-dir ../shared/datasets            # ml-100k + Games
    python benchmarks/ranking.py --data-dir ../shared/datasets --datasets ml-100k
    python benchmarks/ranking.py --latency-only --datasets ml-100k,amazon-games   # the costs only

For each dataset the default model (what ``auto`` chooses there: ease_t on
ml-100k; sparse_ease on Amazon Games, whose 23,715 items are above EASE's
max_items) is trained once on a validation fold carved from the protocol's
*training* data and once on the whole training part. The
MMR ``diversity`` sweeps 0 -> 1; for each value the lists are scored on the
validation fold (where the default is chosen: the largest diversity costing at
most 1 % NDCG@10) and on the test split (reported). Printed per value: NDCG@10,
intra-list diversity (over genres where the data has them, and over the model's
item similarity, which MMR uses), catalogue coverage and novelty. A PNG of the
curve is written next to this file. Then the stage's CPU time per user at k=10
and k=100, beside plain top-K and the model's scoring measured in the same run.
"""

from __future__ import annotations

import os

# One BLAS thread: on a busy machine a threaded matrix-vector product was 40x slower
# (10 ms instead of 0.25 ms), and serving runs with one thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.api.spec import RankingSpec
from kuberec.components.datasets.amazon_games import read_games
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.evaluation import Split, split
from kuberec.components.models import score_users, top_k
from kuberec.components.models.ranking import Ranker, model_signals, resolve
from kuberec.components.train.ranking_curve import diversity_curve, plot_curves
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train

DIVERSITIES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)
MAX_COST = 0.01  # the default: the largest diversity costing at most this share of NDCG@10
HERE = Path(__file__).resolve().parent


def trained(
    model_type: str, dataset: Dataset, train_part: pd.DataFrame, hparams: dict[str, object]
) -> object:
    settings = TrainSettings(backend="local", epochs=1, patience=1, validation_fraction=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        return train(
            model_type,
            dataset.with_interactions(train_part),
            hparams,
            settings,
            storage_path=Path(tmp),
            run_name="ranking",
        )


def curve(
    outcome: object,
    parts: Split,
    dataset: Dataset,
    users: int | None,
    seed: int,
    grid: Sequence[float],
) -> pd.DataFrame:
    """The curve on ``parts.test``, on a sample of ``users`` test users where set."""
    chosen = None
    if users is not None and parts.test["user_id"].nunique() > users:
        chosen = pd.Series(parts.test["user_id"].unique()).sample(users, random_state=seed)
    started = time.perf_counter()
    frame = diversity_curve(
        outcome.model,
        outcome.data,
        parts,
        dataset,
        grid,  # type: ignore[attr-defined]
        users=None if chosen is None else chosen.to_numpy(),
    )
    print(
        f"  curve over {len(grid)} diversities: {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return frame.rename(columns={"ndcg": "ndcg@10"})


def choose(validation: pd.DataFrame) -> float:
    """The largest diversity whose validation NDCG@10 is within MAX_COST of diversity 0."""
    base = float(validation.loc[validation["diversity"] == 0.0, "ndcg@10"].iloc[0])
    ok = validation[validation["ndcg@10"] >= (1 - MAX_COST) * base]
    return float(ok["diversity"].max())


def latency(
    outcome: object, users: np.ndarray, ks: Sequence[int], repeats: int = 5
) -> list[dict[str, object]]:
    """CPU milliseconds per user of scoring, plain top-K and the stage, one user at a time.

    CPU time of this process (``time.process_time``), not wall time: on a shared
    machine the wall clock mostly measures the neighbours. Scoring is the model's
    share of the same request, so the table shows whether the stage dominates it.
    """
    model, data = outcome.model, outcome.data  # type: ignore[attr-defined]
    signals = model_signals(model, data.history, data.item_genres, data.item_first_seen())
    seen = data.history.seen_matrix()
    scores = [score_users(model, data.history, np.asarray([u])).numpy() for u in users]

    def cpu_ms(work: object) -> float:
        timings = []
        for _ in range(repeats):
            started = time.process_time()
            work()  # type: ignore[operator]
            timings.append((time.process_time() - started) / len(users) * 1000)
        return float(np.median(timings))

    rows: list[dict[str, object]] = [
        {
            "k": "",
            "stage": "scoring (the model)",
            "cpu_ms_per_user": cpu_ms(
                lambda: [score_users(model, data.history, np.asarray([u])) for u in users]
            ),
        }
    ]
    setups = {
        "MMR diversity 0.3": RankingSpec(diversity=0.3),
        "MMR 0.3 + novelty 0.1 + cap 3/page": RankingSpec(
            diversity=0.3, novelty=0.1, max_per_category=3
        ),
    }
    for k in ks:
        rows.append(
            {
                "k": k,
                "stage": "top-K only",
                "cpu_ms_per_user": cpu_ms(
                    lambda k=k: [
                        top_k(r, k, exclude=seen[[u]]) for u, r in zip(users, scores, strict=True)
                    ]
                ),
            }
        )
        for name, spec in setups.items():
            select = Ranker(resolve(spec, data.item_index, signals), signals)
            rows.append(
                {
                    "k": k,
                    "stage": name,
                    "cpu_ms_per_user": cpu_ms(
                        lambda k=k, select=select: [
                            select(r, k, exclude=seen[[u]])
                            for u, r in zip(users, scores, strict=True)
                        ]
                    ),
                }
            )
    return rows


def run(
    name: str,
    dataset: Dataset,
    protocol: str,
    model_type: str,
    hparams: dict[str, object],
    users: int | None,
    seed: int,
    grid: Sequence[float] = DIVERSITIES,
    *,
    validate: bool = True,
    timings: bool = True,
) -> dict[str, object]:
    parts = split(protocol, dataset.interactions, seed=seed)
    if parts.valid is not None:  # leave-one-out: its own validation fold, carved from train
        validation_parts = Split(protocol, parts.train, parts.valid)
    else:  # the same protocol again, inside the training part
        inner = split(protocol, parts.train, seed=seed)
        validation_parts = Split(protocol, inner.train, inner.test)
    started = time.perf_counter()
    validation, default = pd.DataFrame(), float("nan")
    if validate:
        print(f"{name}: training {model_type} on the validation fold", file=sys.stderr, flush=True)
        inner_model = trained(model_type, dataset, validation_parts.train, hparams)
        validation = curve(inner_model, validation_parts, dataset, users, seed, grid)
        print(validation.to_markdown(index=False, floatfmt=".4f"), file=sys.stderr, flush=True)
        default = choose(validation)
    print(f"{name}: training {model_type} on the training part", file=sys.stderr, flush=True)
    outer_model = trained(model_type, dataset, parts.train, hparams)
    test = curve(outer_model, parts, dataset, users, seed, grid)
    print(test.to_markdown(index=False, floatfmt=".4f"), file=sys.stderr, flush=True)
    rng = np.random.default_rng(seed)
    sample = rng.choice(
        outer_model.data.n_users, size=min(200, outer_model.data.n_users), replace=False
    )
    timings = latency(outer_model, sample, (10, 100)) if timings else []
    return {
        "dataset": name,
        "protocol": protocol,
        "model": model_type,
        "validation": validation,
        "test": test,
        "default": default,
        "latency": timings,
        "seconds": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--datasets", default="ml-100k,amazon-games")
    parser.add_argument(
        "--games-users",
        type=int,
        default=1000,
        help="test users sampled on Games (the whole run stays short)",
    )
    parser.add_argument(
        "--diversities",
        default=",".join(f"{d:g}" for d in DIVERSITIES),
        help="the diversity values swept",
    )
    parser.add_argument("--png", type=Path, default=HERE / "ranking.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--games-model",
        default="sparse_ease",
        help="the model on Games (default: what auto chooses there)",
    )
    parser.add_argument(
        "--games-test-only",
        action="store_true",
        help="Games: only the test curve (no validation fold, no latency)",
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the stage's latency (CPU ms per user) on --datasets",
    )
    args = parser.parse_args(argv)
    if args.latency_only:
        for name in args.datasets.split(","):
            outcome = trained_for_latency(name, args.data_dir, args.games_model, args.seed)
            sample = np.random.default_rng(args.seed).choice(
                outcome.data.n_users, 200, replace=False
            )
            print(f"\n## {name}: CPU ms per user\n")
            print(
                pd.DataFrame(latency(outcome, sample, (10, 100))).to_markdown(
                    index=False, floatfmt=".3f"
                ),
                flush=True,
            )
        return 0
    grid = tuple(float(d) for d in args.diversities.split(","))
    results = []
    for name in args.datasets.split(","):
        if name == "ml-100k":
            dataset = load_movielens("ml-100k", args.data_dir)
            results.append(run(name, dataset, "stratified", "ease_t", {}, None, args.seed, grid))
        elif name == "amazon-games":
            games = read_games(args.data_dir / "amazon-games" / "Video.txt")
            results.append(
                run(
                    name,
                    games,
                    "leave-one-out",
                    args.games_model,
                    {},
                    args.games_users,
                    args.seed,
                    grid,
                    validate=not args.games_test_only,
                    timings=not args.games_test_only,
                )
            )
        else:
            parser.error(f"unknown dataset {name!r}; use ml-100k, amazon-games")
        report(results[-1])
    plot_curves(
        {
            f"{r['dataset']} ({r['model']}, {r['protocol']}, test)": r["test"].rename(
                columns={"ndcg@10": "ndcg"}
            )
            for r in results
        },
        args.png,
    )
    print(f"\nwrote {args.png}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        **r,
                        "validation": r["validation"].to_dict("records"),
                        "test": r["test"].to_dict("records"),
                    }
                    for r in results
                ],
                indent=2,
            )
        )
    return 0


def trained_for_latency(name: str, data_dir: Path, games_model: str, seed: int) -> object:
    """The model each dataset's curve uses, on its training part."""
    if name == "ml-100k":
        dataset = load_movielens("ml-100k", data_dir)
        parts = split("stratified", dataset.interactions, seed=seed)
        return trained("ease_t", dataset, parts.train, {})
    if name == "amazon-games":
        games = read_games(data_dir / "amazon-games" / "Video.txt")
        parts = split("leave-one-out", games.interactions, seed=seed)
        return trained(games_model, games, parts.train, {})
    raise SystemExit(f"unknown dataset {name!r}; use ml-100k, amazon-games")


def report(result: dict[str, object]) -> None:
    print(
        f"\n## {result['dataset']}: {result['model']}, {result['protocol']} "
        f"({result['seconds']:.0f} s)"
    )
    for part in ("validation", "test"):
        frame = result[part]
        assert isinstance(frame, pd.DataFrame)
        if frame.empty:
            continue
        base = float(frame["ndcg@10"].iloc[0])
        frame = frame.assign(ndcg_change=frame["ndcg@10"] / base - 1)
        print(f"\n{part}:\n")
        print(frame.to_markdown(index=False, floatfmt=".4f"))
    print(
        f"\ndefault diversity (largest costing <= {MAX_COST:.0%} NDCG@10 on validation): "
        f"{result['default']}"
    )
    if result["latency"]:
        print("\nlatency (CPU ms per user, one user at a time):\n")
        print(pd.DataFrame(result["latency"]).to_markdown(index=False, floatfmt=".3f"))
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
