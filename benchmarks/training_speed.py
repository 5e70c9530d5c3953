"""Training throughput: Ray Train with 2 workers beside a plain single-process torch loop.

Same model, same data, same epoch function, measured in one run. Throughput is
training examples per second over every epoch but the first (Ray start-up and
the first epoch's warm-up excluded). The overhead per core compares the Ray path's
throughput per worker with the single-process loop on one core:
``1 - (ray_sps / workers) / local_sps``; the target is <= 10%. The Ray path runs
twice: DDP (gradients all-reduced every step) and local SGD (weights averaged
every ``--averaging-period`` steps, ``components/train/averaging.py``).

    python benchmarks/training_speed.py                 # ml-100k and 5M synthetic interactions
    python benchmarks/training_speed.py --synthetic 1000000
    python benchmarks/training_speed.py --batch-size 8192 --models two_tower
    python benchmarks/training_speed.py --quality-only  # what local SGD costs in NDCG@10
    python benchmarks/training_speed.py --speed-only --synthetic 0  # ml-100k throughput only

Also prints the default model's wall-clock time to train on ml-100k through
``kuberec train`` (Ray start-up included) and peak memory (RSS of the driver and
its descendants, i.e. every Ray process, sampled every 0.5 s).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "datasets"
MODELS = ("mf", "two_tower")


class PeakMemory:
    """Peak summed RSS of this process and its descendants (Ray's GCS, raylet, workers).

    Walks the process tree every 0.5 s rather than every process's command line:
    the sampler shares the cores with the workers it measures.
    """

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(0.5):
            total = me.memory_info().rss
            for proc in me.children(recursive=True):
                try:
                    total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak = max(self.peak, total)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def throughput(dataset: object, model: str, backend: str, workers: int, tmp: Path,
               batch_size: int | None = None, period: int = 1,
               epochs: int = 5) -> dict:  # fmt: skip
    from kuberec.components.train.settings import TrainSettings
    from kuberec.components.train.trainer import train

    settings = TrainSettings(
        backend=backend, workers=workers, epochs=epochs, patience=epochs,
        validation_fraction=0.0, averaging_period=period,
    )  # fmt: skip
    with PeakMemory() as memory:
        hparams = {"batch_size": batch_size} if batch_size else {}
        path = tmp / f"{model}-{backend}-{period}"
        outcome = train(model, dataset, hparams, settings, storage_path=path)
    timed = outcome.history[1:] or outcome.history  # the first epoch warms up
    examples = sum(r["samples_per_second"] * r["seconds"] for r in timed)
    seconds = sum(r["seconds"] for r in timed)
    return {"sps": examples / seconds, "epoch_s": seconds / len(timed), "peak_mb": memory.mb}


def quality(dataset: object, model: str, workers: int, period: int, tmp: Path) -> float:
    """Best validation NDCG@10 of ``model`` (its default hyperparameters, early stopping)."""
    from kuberec.components.train.settings import TrainSettings
    from kuberec.components.train.trainer import train

    backend = "local" if workers == 1 else "ray"
    settings = TrainSettings(
        backend=backend, workers=workers, epochs=30, patience=3, averaging_period=period
    )
    outcome = train(model, dataset, {}, settings, storage_path=tmp / f"q-{model}-{period}")
    return float(outcome.validation["ndcg"])


def default_model_wall_clock(tmp: Path) -> float:
    """`kuberec train` on ml-100k with the default model, as a user runs it."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kuberec.cli", "train", "--dataset", "ml-100k",
         "--data-dir", str(DATA_DIR), "--out", str(tmp / "default-run")],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--synthetic", type=int, default=5_000_000, help="interactions (0: ml-100k only)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="per worker (default: each model's own)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=5, help="all but the first are timed")
    parser.add_argument("--averaging-period", type=int, default=8, help="local SGD's period")
    only = parser.add_mutually_exclusive_group()
    only.add_argument(
        "--quality-only",
        action="store_true",
        help="only the NDCG@10 table (single process, DDP, local SGD)",
    )
    only.add_argument("--speed-only", action="store_true", help="no NDCG@10 table")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker, and for the baseline
    import ray

    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate

    movielens = load_movielens("ml-100k", DATA_DIR)
    period = args.averaging_period
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if not args.quality_only:
            datasets = {"ml-100k": movielens}
            if args.synthetic:  # --synthetic 0: ml-100k only
                datasets[f"synthetic {args.synthetic / 1e6:g}M"] = generate(
                    SyntheticSpec(
                        args.synthetic // 50, args.synthetic // 200, args.synthetic, seed=0
                    )
                )
            speed_table(datasets, args, tmp)
        if not args.speed_only:
            print("\nBest validation NDCG@10 on ml-100k (default hyperparameters, early "
                  f"stopping), local SGD every {period} steps:\n")  # fmt: skip
            print(f"| model | single process | Ray x{args.workers} DDP "
                  f"| Ray x{args.workers} local SGD |\n|---|---:|---:|---:|")  # fmt: skip
            for model in args.models.split(","):
                cells = [quality(movielens, model, 1, 1, tmp),
                         quality(movielens, model, args.workers, 1, tmp),
                         quality(movielens, model, args.workers, period, tmp)]  # fmt: skip
                print(f"| {model} | " + " | ".join(f"{c:.4f}" for c in cells) + " |", flush=True)
        ray.shutdown()
        if not args.quality_only:
            seconds = default_model_wall_clock(tmp)
            print(f"\nDefault model on ml-100k via `kuberec train` (with Ray start-up): "
                  f"{seconds:.1f} s")  # fmt: skip


def speed_table(datasets: dict[str, object], args: argparse.Namespace, tmp: Path) -> None:
    """Overhead per core against two baselines: one process on an otherwise idle machine
    (the target's definition) and ``workers`` independent processes at once (what the
    cores give when all are busy: shared memory bandwidth and caches, no Ray, no sync)."""
    workers, period = args.workers, args.averaging_period
    print(
        f"| dataset | model | single, idle machine | single, x{workers} at once "
        f"| Ray x{workers} DDP | overhead (idle / busy) "
        f"| Ray x{workers} local SGD ({period}) | overhead (idle / busy) "
        "| peak MB single | peak MB DDP | peak MB local SGD |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, dataset in datasets.items():
        for model in args.models.split(","):
            runs = [
                throughput(dataset, model, backend, n, tmp, args.batch_size, p, args.epochs)
                for backend, n, p in (("local", 1, 1), ("ray", workers, 1),
                                      ("ray", workers, period))
            ]  # fmt: skip
            local, ddp, local_sgd = runs
            busy = concurrent_singles(dataset, model, workers, tmp, args)
            cells = [f"{local['sps']:,.0f}", f"{busy:,.0f}"]
            for run in (ddp, local_sgd):
                per_core = run["sps"] / workers
                cells += [
                    f"{run['sps']:,.0f}",
                    f"{1 - per_core / local['sps']:+.1%} / {1 - per_core / busy:+.1%}",
                ]
            cells += [f"{run['peak_mb']:.0f}" for run in runs]
            print(f"| {name} | {model} | " + " | ".join(cells) + " |", flush=True)


def concurrent_singles(
    dataset: object, model: str, n: int, tmp: Path, args: argparse.Namespace
) -> float:
    """Mean samples/s of ``n`` single-process loops running at the same time."""
    context = multiprocessing.get_context("spawn")
    jobs = [(dataset, model, tmp / f"busy-{i}", args.batch_size, args.epochs) for i in range(n)]
    with context.Pool(n) as pool:
        results = pool.starmap(_single_sps, jobs)
    return sum(results) / n


def _single_sps(
    dataset: object, model: str, tmp: Path, batch_size: int | None, epochs: int
) -> float:
    return throughput(dataset, model, "local", 1, tmp, batch_size, 1, epochs)["sps"]


if __name__ == "__main__":
    main()
