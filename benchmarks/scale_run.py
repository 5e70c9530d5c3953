"""A large catalogue end to end through ``kuberec run``: wall seconds and peak memory per step.

Runs ``kuberec run JOB`` (default ``examples/synthetic-1m.yaml``: 1,000,000 items,
3,000,000 interactions, ``model.type: auto``) in a fresh job directory, then reads
the run's step events (each step runs in a process of its own and records its
seconds and peak RSS), times serving (package done -> servers ready), and sends
``/recommend`` to the job's URL: the first request, then ``--requests`` more for
random known users one at a time (p50/p95/p99). The served model's type, whether
the server searches a faiss index, and the server's resident memory come from the
job's status and the server's log. ``--items/--users/--interactions`` rescale the
synthetic data of the job (e.g. 100,000 items to find failures cheaply).

    flock /work/briefs/heavy.lock python benchmarks/scale_run.py --workdir /tmp/scale-1m
    python benchmarks/scale_run.py --workdir /tmp/scale-1m --reuse   # measure a finished run

Load average is printed beside the figures: on a shared machine it moves wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("ingest", "features", "train", "evaluate", "package")


def _job_file(job: Path, sizes: dict[str, int | None], folder: Path) -> Path:
    document = yaml.safe_load(job.read_text())
    synthetic = document["spec"]["data"].get("synthetic")
    changed = {k: v for k, v in sizes.items() if v is not None}
    if not changed:
        return job
    if synthetic is None:
        raise SystemExit(f"error: {job} has no data.synthetic to rescale")
    synthetic.update(changed)
    document["metadata"]["name"] = f"{document['metadata']['name']}-{synthetic['items']}"
    out = folder / job.name
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    return out


def _run(job: Path, workdir: Path, timeout_s: float) -> tuple[float, float]:
    """``kuberec run``'s wall seconds and the peak RSS of its whole process tree (MiB)."""
    command = [
        str(Path(sys.executable).parent / "kuberec"),
        "run",
        str(job),
        "--workdir",
        str(workdir),
        "--timeout",
        str(int(timeout_s)),
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command)
    peak = 0.0
    parent = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(_rss(p) for p in tree) / 2**20)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.5)
    if process.returncode != 0:
        raise SystemExit(f"error: kuberec run exited {process.returncode}")
    return time.perf_counter() - started, peak


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


def _events(workdir: Path) -> list[dict[str, Any]]:
    runs = sorted((workdir / "runs").glob("*/events.jsonl"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise SystemExit(f"error: no pipeline run in {workdir}/runs")
    return [json.loads(line) for line in runs[-1].read_text().splitlines()]


def _step_rows(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["state"] == "succeeded":
            rows[event["step"]] = event
        elif event["state"] == "failed":
            raise SystemExit(f"error: step {event['step']} failed: {event.get('reason')}")
    return rows


def _server(workdir: Path) -> tuple[str, int, Path]:
    status = json.loads((workdir / "status.json").read_text())
    status = status.get("status", status)
    serving = json.loads((workdir / "serving" / "serving.json").read_text())
    stable = serving["processes"]["stable"]
    return status["url"], int(stable["pid"]), workdir / "serving" / f"server-{stable['port']}.log"


def _served_by(model_type: str, n_items: int) -> str:
    """What the server searches with, by its rule (``serving/retrieval.build_index``): a faiss
    index for a model with item vectors from ``KUBEREC_ANN_MIN_ITEMS`` items, else exact."""
    from kuberec.components.datasets.synthetic import SyntheticSpec, generate
    from kuberec.components.models import EncodedData, build_model
    from kuberec.components.models.factors import factorize
    from kuberec.serving.retrieval import ANN_MIN_ITEMS_ENV, DEFAULT_ANN_MIN_ITEMS

    probe = build_model(
        model_type, EncodedData.from_dataset(generate(SyntheticSpec(60, 40, 600))), {}
    )
    if factorize(probe) is None:
        return "exact scoring by the model (no item vectors: no faiss index)"
    threshold = int(os.environ.get(ANN_MIN_ITEMS_ENV, DEFAULT_ANN_MIN_ITEMS))
    return "faiss index" if n_items >= threshold else f"exact top-K (< {threshold} items)"


def _tree_rss_mb(pid: int) -> float:
    try:
        process = psutil.Process(pid)
        return sum(_rss(p) for p in [process, *process.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def _post(url: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    request = urllib.request.Request(
        url + "/recommend",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    return (time.perf_counter() - started) * 1000, answer


def _users(workdir: Path, n: int, seed: int) -> list[object]:
    import pyarrow.parquet as pq

    files = sorted(workdir.glob("pipeline-root/*/ingest/dataset/interactions*"))
    if not files:
        files = sorted(workdir.glob("pipeline-root/*/ingest/dataset/**/*.parquet"))
    table = pq.read_table(files[-1], columns=["user_id"])
    ids = sorted(set(table.column("user_id").to_pylist()))
    return random.Random(seed).sample(ids, min(n, len(ids)))


def _items(workdir: Path) -> int:
    import pyarrow.parquet as pq

    files = sorted(workdir.glob("pipeline-root/*/ingest/dataset/items.parquet"))
    return pq.ParquetFile(files[-1]).metadata.num_rows


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, default=ROOT / "examples" / "synthetic-1m.yaml")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--items", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--interactions", type=int)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--reuse", action="store_true", help="measure the finished run there")
    parser.add_argument("--keep", action="store_true", help="leave the servers running")
    parser.add_argument("--timeout", type=float, default=5400.0)
    args = parser.parse_args(argv)

    wall = tree_peak = float("nan")
    if not args.reuse:
        if args.workdir.exists():
            shutil.rmtree(args.workdir)
        with tempfile.TemporaryDirectory() as folder:
            sizes = {"items": args.items, "users": args.users, "interactions": args.interactions}
            job = _job_file(args.job, sizes, Path(folder))
            wall, tree_peak = _run(job, args.workdir, args.timeout)
    events = _events(args.workdir)
    steps = _step_rows(events)
    missing = [s for s in STEPS if s not in steps]
    if missing:
        raise SystemExit(f"error: steps without a success event: {missing}")
    package_done = datetime.fromisoformat(steps["package"]["time"])
    status_time = datetime.fromtimestamp(
        (args.workdir / "status.json").stat().st_mtime, package_done.tzinfo
    )
    url, pid, _ = _server(args.workdir)

    users = _users(args.workdir, args.requests + 1, seed=0)
    first_ms, first = _post(url, {"user_id": users[0], "k": 10})
    latencies = []
    fallbacks = 0
    for user in users[1:]:
        ms, answer = _post(url, {"user_id": user, "k": 10})
        latencies.append(ms)
        fallbacks += bool(answer.get("fallback"))
    server_mb = _tree_rss_mb(pid)

    champion = json.loads((args.workdir / "status.json").read_text())["status"]["champion"]
    selection = champion.get("selection") or {}
    print(
        f"# {args.job.name} in {args.workdir} (load average now "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs)"
    )
    print(f"kuberec run: {wall:.0f} s wall, peak RSS of its process tree {tree_peak:.0f} MiB")
    print("\n| step | wall s | peak RSS MiB |\n|---|---:|---:|")
    for step in STEPS:
        print(f"| {step} | {steps[step]['seconds']:.1f} | {steps[step].get('peak_rss_mb', '-')} |")
    first_start = datetime.fromisoformat(next(e["time"] for e in events if e["state"] == "started"))
    print(
        f"| pipeline (ingest start -> package done; kfp.local starts a process per step) | "
        f"{(package_done - first_start).total_seconds():.1f} | |"
    )
    serve_s = (status_time - package_done).total_seconds()
    print(
        f"| serve (package done -> servers up, status written) | {serve_s:.1f} | "
        f"{server_mb:.0f} (server tree, after the requests) |"
    )
    print(f"| first /recommend | {first_ms / 1000:.2f} | |")
    print(
        f"\n/recommend, {len(latencies)} known users one at a time: p50 "
        f"{_percentile(latencies, 0.5):.1f} ms, p95 {_percentile(latencies, 0.95):.1f} ms, "
        f"p99 {_percentile(latencies, 0.99):.1f} ms; fallbacks {fallbacks}; "
        f"first answer {len(first.get('items', []))} items"
    )
    served_type = champion["modelType"]
    n_items = _items(args.workdir)
    print(
        f"served: {champion['version']} ({served_type}, {n_items:,} items): "
        f"{_served_by(served_type, n_items)}"
    )
    print(f"auto chose {selection.get('chosen', served_type)}:")
    for row in selection.get("candidates", []):
        print(
            f"  {row['modelType']:12} {row['status']:8} est {row.get('estimatedSeconds')} s"
            f" fit {row.get('fitSeconds')} s peak {row.get('peakMemoryMb')} MB "
            f"{row.get('reason') or ''}"
        )
    if not args.keep:
        name = json.loads(sorted((args.workdir / "runs").glob("*/job.json"))[-1].read_text())
        subprocess.run(
            [
                str(Path(sys.executable).parent / "kuberec"),
                "stop",
                name["metadata"]["name"],
                "--workdir",
                str(args.workdir),
            ],
            check=False,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
