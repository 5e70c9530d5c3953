"""The operator at scale: N RecommenderJobs against the API emulator, time to Training, memory.

Runs the API emulator and the KFP stand-in in this process and the real
operator (``kuberec operator run``) as a subprocess, creates N jobs at once,
and reports how long until every job shows its first phase (Training: the
run was submitted to KFP and recorded in status) and the operator's peak
resident memory (psutil, sampled every 0.2 s). Targets: N=1000 under 2 min
and under 300 MB.

    .venv/bin/python benchmarks/operator.py [--jobs 1000] [--workers 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.k8s_emulator import KubeEmulator  # noqa: E402
from tests.k8s_emulator.fixtures import load_chart_crds  # noqa: E402
from tests.support.kfp_standin import KfpStandIn  # noqa: E402
from tests.support.operator_harness import (  # noqa: E402
    JOBS,
    OperatorProcess,
    install_kuberay,
    job_manifest,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    emulator = KubeEmulator().start()
    load_chart_crds(emulator)
    install_kuberay(emulator)
    kfp = KfpStandIn().start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig")
        env = {"KUBEREC_KFP_ENDPOINT": kfp.url, "KUBEREC_POLL_INTERVAL": "30",
               "KUBEREC_ARTIFACT_STORE": (workdir / "artifacts").as_uri()}  # fmt: skip
        operator = OperatorProcess(kubeconfig, workdir, env,
                                   args=(f"--workers={args.workers}",)).start()  # fmt: skip
        peak = {"rss": 0}
        done = threading.Event()
        sampler = threading.Thread(target=_sample, args=(operator, peak, done), daemon=True)
        sampler.start()
        try:
            time.sleep(3)  # the operator connects and lists (nothing there yet)
            started = time.monotonic()
            for i in range(args.jobs):
                emulator.apply(job_manifest(f"job-{i:05d}"))
            created_s = time.monotonic() - started
            training, elapsed = _wait(emulator, args.jobs, started, args.timeout, operator)
            # Training is recorded before the submission (write-ahead): let the last ones land.
            deadline = time.monotonic() + 30
            while len(kfp.runs) < args.jobs and time.monotonic() < deadline:
                time.sleep(0.2)
            submitted = len(kfp.runs)
        finally:
            done.set()
            sampler.join(timeout=2)
            operator.stop()
            log_tail = operator.log()[-2000:]
            kfp.stop()
            emulator.stop()
    _table(args.jobs, created_s, training, elapsed, submitted, peak["rss"])
    if training < args.jobs:
        print(log_tail, file=sys.stderr)
        return 1
    return 0


def _sample(operator: OperatorProcess, peak: dict[str, int], done: threading.Event) -> None:
    while not done.wait(0.2):
        if operator.process is None:
            return
        try:
            rss = psutil.Process(operator.process.pid).memory_info().rss
        except psutil.Error:
            return
        peak["rss"] = max(peak["rss"], rss)


def _wait(emulator: KubeEmulator, total: int, started: float, timeout: float,
          operator: OperatorProcess) -> tuple[int, float]:  # fmt: skip
    training = 0
    while time.monotonic() - started < timeout and operator.alive():
        items = emulator.list(*JOBS, "default")
        training = sum(1 for i in items if (i.get("status") or {}).get("phase") == "Training")
        if training >= total:
            break
        time.sleep(0.5)
    return training, time.monotonic() - started


def _table(jobs: int, created_s: float, training: int, elapsed: float, submitted: int,
           rss: int) -> None:  # fmt: skip
    rows = [
        ("RecommenderJobs created", f"{jobs} (in {created_s:.1f} s)", ""),
        ("reconciled to Training", f"{training}", f"all {jobs}"),
        ("time until all Training", f"{elapsed:.1f} s", "< 120 s"),
        ("throughput", f"{training / elapsed:.1f} jobs/s", ""),
        ("KFP runs submitted", f"{submitted}", f"{jobs} (one per job)"),
        ("operator peak RSS", f"{rss / 2**20:.0f} MB", "< 300 MB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'operator benchmark':<{width}}  {'measured':<22} target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:<22} {target}")


if __name__ == "__main__":
    raise SystemExit(main())
