"""faiss settings at a million items, on learned embeddings: recall against exact, CPU per query.

    nice python benchmarks/ann_recall.py                      # 1M items, 3M interactions
    python benchmarks/ann_recall.py --items 200000 --interactions 600000 --epochs 2

The serving benchmark's 1M-item model has drawn (clustered) item vectors, which
are easier to index than learned ones, so the index's defaults are chosen here:
an MF model (BPR) is trained on the synthetic generator's data, the users'
vectors are searched exactly (one product over all items, the truth) and by
each index setting, and each setting prints its build seconds, CPU ms per query
in batches of ``--batch`` (what the service's adaptive batcher hands faiss) and
recall@10 and recall@``--pool`` (the re-ranking pool) against the exact top-K.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models.encoded import EncodedData
from kuberec.components.models.factors import factorize
from kuberec.components.models.local_fit import fit
from kuberec.serving.retrieval import AnnIndex, ExactIndex

SETTINGS: tuple[dict[str, object], ...] = (
    {"kind": "ivf", "nlist": 1000, "nprobe": 100},  # the defaults before this benchmark
    {"kind": "ivf", "nlist": 1000, "nprobe": 20},
    {"kind": "ivf", "nlist": 4000, "nprobe": 100},
    {"kind": "ivf", "nlist": 4000, "nprobe": 40},
    {"kind": "ivf", "nlist": 4000, "nprobe": 20},
    {"kind": "hnsw", "ef_search": 128},
)


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=19)
    parser.add_argument("--pool", type=int, default=1_000)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row's exact top-K that the index also returned."""
    hits = [len(np.intersect1d(f, t)) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def timed_search(index, queries: np.ndarray, k: int, batch: int) -> tuple[np.ndarray, float]:
    """All queries in batches of ``batch``; CPU ms per query."""
    started = time.process_time()
    parts = [index.search(queries[i : i + batch], k)[0] for i in range(0, len(queries), batch)]
    return np.concatenate(parts), 1000 * (time.process_time() - started) / len(queries)


def main() -> int:
    args = _args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    started = time.perf_counter()
    spec = SyntheticSpec(args.users, args.items, args.interactions, seed=7)
    data = EncodedData.from_dataset(generate(spec))
    model, history = fit("mf", data, {"dim": 32}, seed=0, epochs=args.epochs)
    print(json.dumps({"trained_s": round(time.perf_counter() - started, 1),
                      "epochs": [round(r.loss, 4) for r in history]}), flush=True)  # fmt: skip
    factors = factorize(model)
    assert factors is not None
    rng = np.random.default_rng(0)
    users = torch.from_numpy(rng.choice(data.n_users, args.queries, replace=False))
    queries = factors.user_vectors(users, None).numpy()
    exact = ExactIndex(factors.items)
    truth_pool, exact_ms = timed_search(exact, queries, args.pool, args.batch)
    truth_10 = truth_pool[:, :10]
    print(json.dumps({"setting": "exact", "ms_per_query_pool": round(exact_ms, 3)}), flush=True)
    for setting in SETTINGS:
        built = time.process_time()
        index = AnnIndex(factors.items, **setting)  # type: ignore[arg-type]
        build_s = time.process_time() - built
        pool, pool_ms = timed_search(index, queries, args.pool, args.batch)
        top, top_ms = timed_search(index, queries, 10, args.batch)
        row = {
            "setting": setting,
            "build_cpu_s": round(build_s, 1),
            "ms_per_query_pool": round(pool_ms, 3),
            "ms_per_query_10": round(top_ms, 3),
            "recall@10": round(recall(top, truth_10), 4),
            f"recall@{args.pool}": round(recall(pool, truth_pool), 4),
            "recall@10_in_pool": round(recall(pool, truth_10), 4),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
