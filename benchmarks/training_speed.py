"""Training throughput: Ray Train with 2 DDP workers beside a plain single-process torch loop.

Same model, same data, same epoch function, measured in one run. Throughput is
training examples per second over an epoch (start-up excluded: the last epoch
of each run is reported). The overhead per core compares the Ray path's
throughput per worker with the single-process loop on one core:
``1 - (ray_sps / workers) / local_sps``; the target is <= 10%.

    python benchmarks/training_speed.py                 # ml-100k and 5M synthetic interactions
    python benchmarks/training_speed.py --synthetic 1000000
    python benchmarks/training_speed.py --batch-size 8192 --models two_tower

Also prints the default model's wall-clock time to train on ml-100k through
``kuberec train`` (Ray start-up included) and peak memory (RSS of the driver and
every Ray process, sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
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
    """Peak summed RSS of this process, its children and Ray's processes."""

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
        while not self._stop.wait(0.2):
            total = 0
            for proc in psutil.process_iter(["cmdline"]):
                try:
                    line = " ".join(proc.info["cmdline"] or [])
                    if proc.pid == me.pid or "ray::" in line or "raylet" in line:
                        total += proc.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak = max(self.peak, total)

    @property
    def mb(self) -> float:
        return self.peak / 2**20


def throughput(dataset: object, model: str, backend: str, workers: int, tmp: Path,
               batch_size: int | None = None) -> dict:  # fmt: skip
    from kuberec.components.train.ray_runner import train
    from kuberec.components.train.settings import TrainSettings

    settings = TrainSettings(
        backend=backend, workers=workers, epochs=2, patience=5, validation_fraction=0.0
    )
    with PeakMemory() as memory:
        hparams = {"batch_size": batch_size} if batch_size else {}
        outcome = train(model, dataset, hparams, settings, storage_path=tmp / f"{model}-{backend}")
    last = outcome.history[-1]
    return {"sps": last["samples_per_second"], "epoch_s": last["seconds"], "peak_mb": memory.mb}


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
    parser.add_argument("--synthetic", type=int, default=5_000_000, help="interactions")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help="per worker (default: each model's own)")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per worker, and for the baseline
    import ray

    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate

    datasets = {
        "ml-100k": load_movielens("ml-100k", DATA_DIR),
        f"synthetic {args.synthetic / 1e6:g}M": generate(
            SyntheticSpec(args.synthetic // 50, args.synthetic // 200, args.synthetic, seed=0)
        ),
    }
    print("| dataset | model | single-process samples/s | Ray x"
          f"{args.workers} samples/s | overhead per core | peak MB local | peak MB Ray |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        for name, dataset in datasets.items():
            for model in args.models.split(","):
                local = throughput(dataset, model, "local", 1, tmp, args.batch_size)
                distributed = throughput(dataset, model, "ray", args.workers, tmp, args.batch_size)
                overhead = 1 - (distributed["sps"] / args.workers) / local["sps"]
                print(f"| {name} | {model} | {local['sps']:,.0f} | {distributed['sps']:,.0f} "
                      f"| {overhead:+.1%} | {local['peak_mb']:.0f} "
                      f"| {distributed['peak_mb']:.0f} |", flush=True)  # fmt: skip
        ray.shutdown()
        seconds = default_model_wall_clock(tmp)
    print(f"\nDefault model on ml-100k via `kuberec train` (with Ray start-up): {seconds:.1f} s")


if __name__ == "__main__":
    main()
