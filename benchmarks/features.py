"""Feature store benchmark: ingest/apply/materialize time, online lookup latency, peak memory.

Each scenario runs in its own process so its peak RSS is its own. Run from the
repository root:

    python benchmarks/features.py                  # ml-100k and 1M synthetic interactions
    python benchmarks/features.py --interactions 200000   # a smaller synthetic run

Online lookups are a batch of 100 users through Feast's ``get_online_features``,
SQLite (default profile) beside Redis (production profile, PostgreSQL registry),
measured in the same run; the ratio is Redis over SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "datasets"


def scenario(name: str, interactions: int, workdir: Path) -> dict[str, object]:
    """One dataset end to end in this process: load, ingest, apply, materialize, look up."""
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate
    from kuberec.components.features import operations
    from kuberec.components.features.embeddings import embed_items
    from kuberec.components.features.ingest import ingest
    from kuberec.components.features.store import StoreSettings, open_store

    start = time.perf_counter()
    if name == "ml-100k":
        dataset = load_movielens("ml-100k", DATA_DIR)
    else:
        n_users, n_items = max(1000, interactions // 50), max(500, interactions // 200)
        dataset = generate(SyntheticSpec(n_users, n_items, interactions, seed=0))
    load_s = time.perf_counter() - start
    users = [str(u) for u in dataset.users["user_id"].iloc[:100]]
    start = time.perf_counter()
    embed_items(dataset.items)  # cold cache: what a new machine pays once per catalogue
    embed_s = time.perf_counter() - start
    result: dict[str, object] = {
        "dataset": name,
        "interactions": len(dataset.interactions),
        "users": dataset.n_users,
        "items": len(dataset.items),
        "load_s": load_s,
        "embed_s": embed_s,
    }
    for profile in ("default", "production"):
        settings = StoreSettings(
            workdir / profile, profile=profile, project=f"bench_{uuid.uuid4().hex[:8]}"
        )
        timings = {}
        start = time.perf_counter()
        ingest(dataset, settings.sources_dir)
        timings["ingest_s"] = time.perf_counter() - start
        store = open_store(settings)
        start = time.perf_counter()
        operations.apply(store)
        timings["apply_s"] = time.perf_counter() - start
        start = time.perf_counter()
        operations.materialize(store)
        timings["materialize_s"] = time.perf_counter() - start
        latencies = _lookups(store, users, repeats=200)
        timings["lookup_p50_ms"] = float(np.percentile(latencies, 50))
        timings["lookup_p99_ms"] = float(np.percentile(latencies, 99))
        result[profile] = timings
        store.teardown()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _lookups(store: object, users: list[str], repeats: int) -> np.ndarray:
    from kuberec.components.features import operations

    operations.online_features(store, "user", users)  # warm up connections and caches
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        operations.online_features(store, "user", users)
        out.append((time.perf_counter() - start) * 1000)
    return np.asarray(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--child", nargs=2, metavar=("NAME", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, workdir = args.child
        print(json.dumps(scenario(name, args.interactions, Path(workdir))))
        return

    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    with tempfile.TemporaryDirectory() as tmp:
        # Cold embedding cache: the text-embedding time is part of ingest, as on a new machine.
        env["KUBEREC_CACHE_DIR"] = str(Path(tmp) / "cache" / "datasets")
        for name in ("ml-100k", "synthetic"):
            command = [sys.executable, __file__, "--interactions", str(args.interactions)]
            command += ["--child", name, str(Path(tmp) / name)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(_markdown(rows))


def _markdown(rows: list[dict]) -> str:
    lines = [
        "| dataset | interactions | profile | text embedding s (cold) | ingest s | apply s "
        "| materialize s | lookup p50 ms | lookup p99 ms | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for profile, label in (("default", "SQLite"), ("production", "Redis + PG registry")):
            t = row[profile]
            lines.append(
                f"| {row['dataset']} | {row['interactions']:,} | {label} | {row['embed_s']:.1f} "
                f"| {t['ingest_s']:.1f} "
                f"| {t['apply_s']:.2f} | {t['materialize_s']:.1f} | {t['lookup_p50_ms']:.2f} "
                f"| {t['lookup_p99_ms']:.2f} | {row['peak_rss_mb']:.0f} |"
            )
    lines.append("")
    for row in rows:
        ratio = row["production"]["lookup_p50_ms"] / row["default"]["lookup_p50_ms"]
        lines.append(
            f"- {row['dataset']}: Redis/SQLite p50 lookup ratio {ratio:.2f} "
            f"(batch of 100 users, 200 lookups each)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
