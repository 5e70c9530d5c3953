"""Sequence models trained to predict the next k items, chosen on validation, tested once.

    OMP_NUM_THREADS=1 python benchmarks/sequence_horizon.py --models sasrec,gru4rec \
        --horizons 1,5,10 --seed 42

On ml-100k's ``temporal`` split a next-item model is asked what each user takes over the
following period (a median of 9 items per test user). ``horizon`` k trains every position
on the next k items of the training sequence. For each model and horizon the model is
trained as the quality benchmark trains it (30 epochs, patience 3, early stopping on each
user's latest item) on the training part minus a temporal holdout (the latest 10 % of the
training part, ``carve_validation``: the protocol's question asked once more inside the
training data), and scored on that holdout. The horizon with the best validation NDCG@10 is
retrained on the whole training part and tested once; ``--test-all`` also tests the others
(to record before and after). Popularity is the reference row on both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.evaluation import per_user_metrics, split
from kuberec.components.train.offline_eval import full_ranking
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train
from kuberec.components.train.validation import carve_validation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="temporal")
    parser.add_argument("--models", default="sasrec,gru4rec")
    parser.add_argument("--horizons", default="1,5,10")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--test-all", action="store_true", help="test every horizon, not the best")
    parser.add_argument("--data-dir", default="../shared/datasets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_movielens("ml-100k", args.data_dir)
    parts = split(args.protocol, dataset.interactions, seed=args.seed)
    known = parts.known()
    whole = dataset.with_interactions(known)
    fit_set, held_out = carve_validation(whole, args.protocol, 0.1, args.seed)
    settings = TrainSettings(
        backend="local", epochs=args.epochs, patience=args.patience, seed=args.seed
    )

    def ndcg(
        model: str, train_on: Dataset, seen: pd.DataFrame, truth: pd.DataFrame, k: int
    ) -> tuple[float, int, float]:
        cpu = time.process_time()
        outcome = train(model, train_on, {"horizon": k} if model != "popularity" else {},
                        settings, storage_path=Path("/tmp/sequence-horizon"))  # fmt: skip
        users = truth["user_id"].unique()
        ranked = full_ranking(outcome.model, outcome.data, seen, users, 10)
        table = per_user_metrics(ranked, truth[["user_id", "item_id"]], 10)
        return float(table["ndcg"].mean()), outcome.best_epoch, time.process_time() - cpu

    fit_seen = fit_set.interactions[["user_id", "item_id"]]
    print(f"validation: {held_out['user_id'].nunique()} users; test: "
          f"{parts.test['user_id'].nunique()} users", flush=True)  # fmt: skip
    for model in ["popularity", *args.models.split(",")]:
        horizons = [1] if model == "popularity" else [int(h) for h in args.horizons.split(",")]
        valid = {}
        for k in horizons:
            valid[k], epoch, cpu = ndcg(model, fit_set, fit_seen, held_out, k)
            print(json.dumps({"model": model, "horizon": k, "val_ndcg": round(valid[k], 4),
                              "best_epoch": epoch, "cpu_s": round(cpu)}), flush=True)  # fmt: skip
        best = max(valid, key=valid.__getitem__)
        for k in horizons if args.test_all else [best]:
            test, epoch, cpu = ndcg(model, whole, parts.seen("test"), parts.test, k)
            print(json.dumps({"model": model, "horizon": k, "chosen_on_validation": k == best,
                              "test_ndcg": round(test, 4), "best_epoch": epoch,
                              "cpu_s": round(cpu)}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
