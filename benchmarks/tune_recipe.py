"""Tune a model type on a validation holdout and commit the winner as its recipe.

    python benchmarks/tune_recipe.py multvae --grid '{"beta_cap": [0.2, 0.5], "dropout": [0.5]}'

The protocol's train split (stratified, seed 42 by default) is the only data
used: ``train`` carves its early-stopping holdout from it, and each setting of
the grid is scored by the validation NDCG@10 at its best epoch. The test split
is never read. The best setting is written to
``components/models/recipes/<dataset>/<model_type>.json`` with every tried
setting and its score, and is what ``benchmarks/quality.py`` trains.

``--refit``: the recipe trains the winner for its best validation epoch count on the
whole training part, with no holdout (``validation_fraction`` 0), instead of stopping
early on a holdout that costs it a tenth of the data (the way BiVAE's published row was
trained: a fixed epoch budget on everything).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.evaluation import split
from kuberec.components.models.recipes import TunedRecipe, write_recipe
from kuberec.components.train.settings import TrainSettings
from kuberec.components.train.trainer import train


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_type")
    parser.add_argument("--grid", default="{}", help="JSON: key -> list of values")
    parser.add_argument("--base", default="{}", help="JSON: fixed hyperparameters")
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--protocol", default="stratified")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument(
        "--refit", action="store_true", help="recipe: best epoch count, whole training part"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    dataset = load_movielens(args.dataset, args.data_dir)
    train_set = dataset.with_interactions(
        split(args.protocol, dataset.interactions, seed=args.seed).train
    )
    grid, base = json.loads(args.grid), json.loads(args.base)
    settings = TrainSettings(
        backend="local", epochs=args.epochs, patience=args.patience, seed=args.seed
    )
    tried = []
    for values in itertools.product(*grid.values()):
        hparams = {**base, **dict(zip(grid, values, strict=True))}
        started = time.perf_counter()
        outcome = train(args.model_type, train_set, hparams, settings, storage_path=Path("."))
        row = {
            "hparams": hparams,
            "val_ndcg": outcome.validation.get("ndcg"),
            "val_precision": outcome.validation.get("precision"),
            "best_epoch": outcome.best_epoch,
            "seconds": round(time.perf_counter() - started),
        }
        tried.append(row)
        print(json.dumps(row), flush=True)
    best = max(tried, key=lambda r: r["val_ndcg"] or -1.0)
    recipe = TunedRecipe(args.model_type, args.dataset, best["hparams"], args.epochs, args.patience)
    if args.refit:  # epochs counted from 1; patience past them: every epoch runs
        epochs = best["best_epoch"] + 1
        recipe = TunedRecipe(args.model_type, args.dataset, best["hparams"], epochs, epochs, 0.0)
    path = write_recipe(
        recipe,
        {
            "tuned_on": f"validation holdout of the {args.protocol} train split, seed {args.seed}"
            + ("; refit on the whole train split for the best epoch count" if args.refit else ""),
            "metric": "val_ndcg@10",
            "tried": tried,
        },
    )
    print(f"best {json.dumps(best)} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
