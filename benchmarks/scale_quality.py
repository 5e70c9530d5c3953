"""Scale quality rows (issue 12): item-item models from 20k to 1M items, one split each.

    python benchmarks/scale_quality.py --data /tmp/s20k --data /tmp/s100k --data /tmp/s1m
    python benchmarks/scale_quality.py --movielens ../shared/datasets   # ml-100k too
    python benchmarks/scale_quality.py --data /tmp/s1m --models sparse_ease   # one model

Each dataset is a folder written by ``kuberec data synthetic`` (or ml-100k). It is
split once (stratified 75/25, seed 42); every model is fitted on the train part in
its own process, so the peak RSS printed is that fit's alone (ru_maxrss of the
child: data loading, split and encoding included). NDCG@10 is full ranking over
every unseen item for the same ``--eval-users`` test users (drawn once per dataset,
seed 0) for every model; the ratio is to dense EASE on the same split and users,
measured in the same run. A model runs only where it fits: EASE's n_items² matrices
up to ``--ease-max-items``, item_knn's dense similarity blocks (O(n_items²) time) up
to ``--knn-max-items``; the rest are printed as skipped with the reason. Fit
seconds are wall clock and CPU seconds of the fit alone (CPU is the figure to
compare on a shared machine). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("ease", "sparse_ease", "item_knn", "popularity")


def fit_one(source: str, model: str, hparams: dict[str, object], eval_users: int) -> dict:
    """Load, split, fit ``model`` and evaluate on ``eval_users`` test users; a child process."""
    from dataclasses import replace

    import numpy as np

    from kuberec.components.datasets.movielens import read_ml100k
    from kuberec.components.datasets.synthetic import read_parquet
    from kuberec.components.evaluation import split
    from kuberec.components.models import EncodedData, build_model
    from kuberec.components.train.offline_eval import evaluate_split

    dataset = read_ml100k(Path(source)) if "ml-100k" in source else read_parquet(Path(source))
    parts = split("stratified", dataset.interactions, seed=42)
    users = np.sort(parts.test["user_id"].unique())
    if eval_users and len(users) > eval_users:
        kept = np.random.default_rng(0).choice(users, eval_users, replace=False)
        parts = replace(parts, test=parts.test[parts.test["user_id"].isin(kept)])
    data = EncodedData.from_dataset(dataset.with_interactions(parts.train))
    started, cpu = time.perf_counter(), time.process_time()
    fitted = build_model(model, data, hparams).eval()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = evaluate_split(fitted, data, parts, dataset, 10)
    return {
        "items": data.n_items,
        "interactions": len(parts.train),
        "model": model,
        "fit_s": round(seconds, 1),
        "cpu_s": round(cpu_seconds, 1),
        "peak_mb": round(peak),
        "ndcg": result["ndcg"],
        "test_users": result["test_users"],
    }


def run_child(source: str, model: str, hparams: dict[str, object], eval_users: int) -> dict:
    args = [sys.executable, __file__, "--child", json.dumps([source, model, hparams, eval_users])]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        return {"model": model, "error": (done.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def catalogue_size(source: str) -> int:
    from kuberec.components.datasets.synthetic import SyntheticSpec

    manifest = Path(source) / "manifest.json"
    if not manifest.is_file():
        return 1682  # ml-100k
    return SyntheticSpec.from_dict(json.loads(manifest.read_text())["spec"]).n_items


def skip_reason(model: str, items: int, args: argparse.Namespace) -> str:
    if model == "ease" and items > args.ease_max_items:
        return f"{items} items > --ease-max-items {args.ease_max_items} (dense n_items² inverse)"
    if model == "item_knn" and items > args.knn_max_items:
        return f"{items} items > --knn-max-items {args.knn_max_items} (O(n_items²) similarities)"
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", action="append", default=[], help="synthetic dataset folder")
    parser.add_argument("--movielens", help="folder holding ml-100k/")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--neighbours", type=int, default=200, help="sparse_ease's k")
    parser.add_argument("--ease-max-items", type=int, default=20_000)
    parser.add_argument("--knn-max-items", type=int, default=200_000)
    parser.add_argument(
        "--eval-users", type=int, default=3000, help="test users ranked per dataset (0: all)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_one(*json.loads(args.child))))
        return 0
    models = [m for m in MODELS if m in args.models.split(",")]
    hparams = {
        "ease": {"max_items": args.ease_max_items},
        "sparse_ease": {"neighbours": args.neighbours},
    }
    sources = ([str(Path(args.movielens) / "ml-100k")] if args.movielens else []) + args.data
    print(
        "| dataset | items | train interactions | model | fit s (wall) | fit CPU s "
        "| peak RSS MB | NDCG@10 | test users | ratio to EASE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for source in sources:
        items, name = catalogue_size(source), Path(source).name
        ease_ndcg = None
        for model in models:
            reason = skip_reason(model, items, args)
            if reason:
                print(f"| {name} | {items} | | {model} | skipped: {reason} ||||||", flush=True)
                continue
            row = run_child(source, model, hparams.get(model, {}), args.eval_users)
            if "error" in row:
                print(f"| {name} | {items} | | {model} | failed: {row['error']} ||||||", flush=True)
                continue
            if model == "ease":
                ease_ndcg = row["ndcg"]
            ratio = f"{row['ndcg'] / ease_ndcg:.3f}" if ease_ndcg else ""
            print(
                f"| {name} | {row['items']} | {row['interactions']} | {model} "
                f"| {row['fit_s']} | {row['cpu_s']} | {row['peak_mb']} | {row['ndcg']:.4f} "
                f"| {row['test_users']} | {ratio} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
