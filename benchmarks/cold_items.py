"""Cold-item quality on MovieLens 100K: items never seen in training, ranked from their text.

    nice -n 10 python benchmarks/cold_items.py                  # share 0.2, seed 42
    nice -n 10 python benchmarks/cold_items.py --seeds 1,2,3 --epochs 10

The ``cold-items`` protocol withholds a share of the items with all their
interactions; the text-aware models (two_tower with and without ``id_dropout``,
dcn; all trained with the all-MiniLM-L6-v2 text embeddings) then get the withheld
items from their title, genres and year, as serving adds an item that arrived
after training. Prints HR@10 and NDCG@10 over the withheld items, ranked among the
withheld items only (``cold``) and among the whole catalogue minus the user's
training items (``all``), beside popularity and random.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.evaluation.protocols import split
from kuberec.components.features.embeddings import embed_items
from kuberec.components.models.encoded import EncodedData
from kuberec.components.models.local_fit import fit
from kuberec.components.train.cold_eval import (
    BASELINES,
    evaluate_cold,
    new_item_content,
    training_dataset,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--id-dropout", default="0,0.5", help="two_tower values to compare")
    parser.add_argument(
        "--dcn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also dcn (slow on CPU: it scores every user-item pair)",
    )
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared machine)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    dataset = load_movielens("ml-100k", args.data_dir)
    contenders: list[tuple[str, str, dict[str, object]]] = [
        (f"two_tower id_dropout={p}", "two_tower", {"id_dropout": float(p)})
        for p in args.id_dropout.split(",")
        if p
    ]
    if args.dcn:
        contenders.append(("dcn", "dcn", {}))
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        parts = split("cold-items", dataset.interactions, seed=seed, share=args.share)
        train = training_dataset(dataset, parts)
        data = EncodedData.from_dataset(train, text_embeddings=embed_items(train.items))
        content = new_item_content(dataset, parts, data)
        print(
            f"seed {seed}: {data.n_items} trained items, {len(content)} withheld, "
            f"{len(parts.test)} test interactions of {parts.test['user_id'].nunique()} users",
            flush=True,
        )
        scored: list[tuple[str, object, str, dict[str, object], tuple[float, float]]] = [
            (name, name, "", {}, (0.0, 0.0)) for name in BASELINES
        ]
        for label, model_type, hparams in contenders:
            started, cpu = time.perf_counter(), time.process_time()
            model, _ = fit(model_type, data, hparams, seed=seed, epochs=args.epochs)
            seconds = (time.perf_counter() - started, time.process_time() - cpu)
            scored.append((label, model, model_type, hparams, seconds))
        for label, model, model_type, hparams, (wall, cpu_s) in scored:
            row = {"train_s": wall, "train_cpu_s": cpu_s, "load1": os.getloadavg()[0]}
            for candidates in ("cold", "all"):
                result = evaluate_cold(
                    model,
                    data,
                    parts,
                    content,
                    model_type=model_type,
                    hparams=hparams,
                    candidates=candidates,
                    seed=seed,
                )
                row[f"hr_{candidates}"] = result["hit_rate"]
                row[f"ndcg_{candidates}"] = result["ndcg"]
            rows.setdefault(label, []).append(row)
            print(f"  {label}: {row}", flush=True)
    print(
        f"\nml-100k, cold-items share={args.share}, seeds {args.seeds}, "
        f"{args.epochs} epochs (mean ± std over seeds)\n"
    )
    print(
        "| model | HR@10 (cold) | NDCG@10 (cold) | HR@10 (all) | NDCG@10 (all) "
        "| train s | train CPU s |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, results in rows.items():
        cells = [
            _cell([r[key] for r in results])
            for key in ("hr_cold", "ndcg_cold", "hr_all", "ndcg_all")
        ]
        train_s = np.mean([r["train_s"] for r in results])
        cpu_s = np.mean([r["train_cpu_s"] for r in results])
        print(f"| {label} | {' | '.join(cells)} | {train_s:.0f} | {cpu_s:.0f} |")


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


if __name__ == "__main__":
    main()
