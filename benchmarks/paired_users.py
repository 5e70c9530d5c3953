"""Per-user paired NDCG@10 differences on ml-100k under one full-ranking protocol.

    OMP_NUM_THREADS=1 python benchmarks/paired_users.py --models popularity,ease,sasrec,gru4rec
    python benchmarks/paired_users.py --models popularity,sasrec --hparams '{"history_length": 200}'

Trains each model as the quality benchmark does (the protocol's train and valid parts,
early stopping on a holdout of them, 30 epochs, patience 3) and prints each model's
NDCG@10, HR@10, best epoch, validation NDCG by epoch and CPU seconds, then the mean
per-user difference of every pair with its standard error. The temporal split has
about a hundred test users, so a gap needs that error beside it to mean anything.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.evaluation import per_user_metrics, split
from kuberec.components.train.offline_eval import full_ranking
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="temporal")
    parser.add_argument("--models", default="popularity,sasrec,gru4rec")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--hparams", default="{}", help="JSON for the trained models")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--data-dir", default="../shared/datasets")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = load_movielens("ml-100k", args.data_dir)
    parts = split(args.protocol, dataset.interactions, seed=args.seed)
    known = parts.known()
    truth = parts.test[["user_id", "item_id"]]
    test_items = truth.groupby("user_id").size()
    history = known[known["user_id"].isin(test_items.index)].groupby("user_id").size()
    print(
        f"{len(test_items)} test users; test items per user median {test_items.median():.0f}, "
        f"mean {test_items.mean():.1f}; their training history median {history.median():.0f}, "
        f"mean {history.mean():.1f}, above 50 items {(history > 50).mean():.0%}"
    )
    settings = TrainSettings(
        backend="local", epochs=args.epochs, patience=args.patience, seed=args.seed
    )
    ndcg: dict[str, pd.Series] = {}
    for model in args.models.split(","):
        cpu, wall = time.process_time(), time.perf_counter()
        outcome = train(
            model, dataset.with_interactions(known), json.loads(args.hparams) if model in
            ("sasrec", "gru4rec") else {}, settings, storage_path=Path("/tmp/paired-users"),
        )  # fmt: skip
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        ranked = full_ranking(
            outcome.model, outcome.data, parts.seen("test"), test_items.index.to_numpy(), 10
        )
        table = per_user_metrics(ranked, truth, 10).set_index("user_id")
        ndcg[model] = table["ndcg"]
        curve = [round(row["val_ndcg"], 4) for row in outcome.history]
        print(
            f"{model}: NDCG@10 {table['ndcg'].mean():.4f}, HR@10 {table['hit_rate'].mean():.4f}, "
            f"best epoch {outcome.best_epoch}, validation NDCG {curve}, "
            f"{cpu:.0f} CPU-s ({wall:.0f} s wall)",
            flush=True,
        )
    names = list(ndcg)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            gap = (ndcg[first] - ndcg[second]).dropna()
            error = gap.std(ddof=1) / np.sqrt(len(gap))
            print(f"{first} - {second}: {gap.mean():+.4f} ± {error:.4f} (SE, {len(gap)} users)")


if __name__ == "__main__":
    main()
