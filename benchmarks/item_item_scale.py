"""Scale of the item-item models: sparse EASE beside dense EASE, per catalogue size.

    python benchmarks/item_item_scale.py --data /tmp/s20k --data /tmp/s1m
    python benchmarks/item_item_scale.py --movielens ../shared/datasets   # ml-100k too

Each dataset is a folder written by ``kuberec data synthetic`` (or ml-100k). It is
split once (stratified 75/25, seed 42); every model is fitted on the train part in
its own process, so the peak RSS printed is that fit's alone (ru_maxrss of the
child: data loading included). NDCG@10 is full ranking on the test part, and the
ratio is to dense EASE on the same split, measured in the same run; EASE runs only
where its n_items² matrices fit (``--ease-max-items``). Prints a Markdown table.
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


def fit_one(source: str, model: str, hparams: dict[str, object], evaluate: bool) -> dict:
    """Load, split, fit ``model`` and (optionally) evaluate; runs in a child process."""
    from kuberec.components.datasets.movielens import read_ml100k
    from kuberec.components.datasets.synthetic import read_parquet
    from kuberec.components.evaluation import split
    from kuberec.components.models import EncodedData, build_model
    from kuberec.components.train.offline_eval import evaluate_split

    dataset = read_ml100k(Path(source)) if "ml-100k" in source else read_parquet(Path(source))
    parts = split("stratified", dataset.interactions, seed=42)
    data = EncodedData.from_dataset(dataset.with_interactions(parts.train))
    started = time.perf_counter()
    fitted = build_model(model, data, hparams).eval()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"items": data.n_items, "interactions": len(parts.train), "model": model,
           "fit_s": round(seconds, 1), "peak_mb": round(peak)}
    if evaluate:
        row["ndcg"] = evaluate_split(fitted, data, parts, dataset, 10)["ndcg"]
    return row


def run_child(source: str, model: str, hparams: dict[str, object], evaluate: bool) -> dict:
    args = [sys.executable, __file__, "--child", json.dumps([source, model, hparams, evaluate])]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        return {"model": model, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", action="append", default=[], help="synthetic dataset folder")
    parser.add_argument("--movielens", help="folder holding ml-100k/")
    parser.add_argument("--neighbours", type=int, default=200)
    parser.add_argument("--ease-max-items", type=int, default=20_000)
    parser.add_argument("--eval-max-items", type=int, default=100_000,
                        help="evaluate NDCG only up to this catalogue size (full ranking)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(fit_one(*json.loads(args.child))))
        return 0
    sources = ([str(Path(args.movielens) / "ml-100k")] if args.movielens else []) + args.data
    print("| dataset | items | train interactions | model | fit s | peak RSS MB | NDCG@10 "
          "| ratio to EASE |")
    print("|---|---|---|---|---|---|---|---|")
    for source in sources:
        from kuberec.components.datasets.synthetic import SyntheticSpec

        manifest = Path(source) / "manifest.json"
        items = (SyntheticSpec.from_dict(json.loads(manifest.read_text())["spec"]).n_items
                 if manifest.is_file() else 1682)
        evaluate = items <= args.eval_max_items
        runs = [("sparse_ease", {"neighbours": args.neighbours})]
        if items <= args.ease_max_items:
            runs.insert(0, ("ease", {"max_items": args.ease_max_items}))
        ease_ndcg = None
        for model, hparams in runs:
            row = run_child(source, model, hparams, evaluate)
            if "error" in row:
                print(f"| {Path(source).name} | {items} | | {model} | failed: {row['error']} |||||")
                continue
            ndcg = row.get("ndcg")
            if model == "ease":
                ease_ndcg = ndcg
            ratio = f"{ndcg / ease_ndcg:.3f}" if ndcg and ease_ndcg else ""
            print(f"| {Path(source).name} | {row['items']} | {row['interactions']} | {model} "
                  f"| {row['fit_s']} | {row['peak_mb']} | {f'{ndcg:.4f}' if ndcg else ''} "
                  f"| {ratio} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
