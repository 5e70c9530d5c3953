"""Feedback benchmark: how fast a click becomes a feature, and what pushing costs serving.

On MovieLens 100K with the default model (EASE-T), for the default Feast
profile (SQLite) and the production one (Redis + PostgreSQL registry), one
``bentoml serve`` process with the Feast push and the Parquet sink on:

- **feedback-to-feature latency**: a user's top item is clicked (``POST
  /feedback``); from the moment the answer says ``accepted``, ``/recommend`` for
  that user is asked again back to back until the item has left the list. The
  time to that first answer is the latency (p50/p99 over ``--trials`` users);
- **push throughput beside serving**: closed-loop ``/recommend`` load
  (``--concurrency`` clients) alone, then the same load with feedback clients
  clicking as fast as they are answered; ``/recommend`` req/s in both, the
  events/s the server pushed (``kuberec_feedback_pushed_total``) and those
  dropped (``kuberec_feedback_dropped_total``); with ``--push-off-baseline``
  also a server that answers and stores the same feedback without pushing it.
  ``--repeats N`` alternates the two loads N times and shows medians, so one
  load spike on the shared machine skews a pair, not a column.

Load comes from this process on loopback (``benchmarks/http_load.py``'s closed loop).
The machine is shared: compare the columns of one run. Run from the
repository root::

    python benchmarks/feedback_loop.py                 # ~4 minutes on 2 cores
    python benchmarks/feedback_loop.py --trials 20 --seconds 3 --profiles default
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from http_load import Connection, closed_loop  # the serving benchmarks' load generator

from serving import ml100k_run

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "datasets"


def feature_repo(workdir: Path, profile: str) -> Path:
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.features.store import StoreSettings
    from kuberec.pipelines.features_step import run_features

    settings = StoreSettings(
        workdir / f"feast-{profile}",
        profile=profile,
        project=f"bench_{profile}_{uuid.uuid4().hex[:6]}",
    )
    run_features(load_movielens("ml-100k"), settings, text_embeddings=False)
    return settings.repo_dir


async def _post(connection: Connection, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    status, payload = await connection.post(path, json.dumps(body).encode())
    return status, json.loads(payload)


async def latency(
    url: str, users: list[Any], trials: int, timeout_s: float = 10.0
) -> dict[str, float]:
    """Seconds from /feedback accepted to the first /recommend without the clicked item."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = Connection(host, int(port))
    found: list[float] = []
    missed = 0
    for user in users[:trials]:
        _, answer = await _post(connection, "/recommend", {"user_id": user, "k": 10})
        item = answer["items"][0]["item_id"]
        status, _ = await _post(
            connection,
            "/feedback",
            {
                "request_id": answer["request_id"],
                "user_id": user,
                "item_id": item,
                "event": "click",
            },
        )
        accepted = time.perf_counter()
        assert status == 200
        while True:
            _, again = await _post(connection, "/recommend", {"user_id": user, "k": 10})
            if item not in [i["item_id"] for i in again["items"]]:
                found.append(time.perf_counter() - accepted)
                break
            if time.perf_counter() - accepted > timeout_s:
                missed += 1
                break
    connection.close()
    ms = np.asarray(found) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "trials": len(found),
        "missed": missed,
    }


async def load(
    url: str,
    users: list[Any],
    items: list[Any],
    concurrency: int,
    feedback_clients: int,
    seconds: float,
) -> dict[str, float]:
    """Closed-loop /recommend clients, and ``feedback_clients`` clicking meanwhile
    (two ``http_load.closed_loop`` streams on one event loop)."""
    recommend = [json.dumps({"user_id": u, "k": 10}).encode() for u in users]
    streams = [closed_loop(url, recommend, concurrency, seconds)]
    if feedback_clients:
        clicks = [
            json.dumps({"request_id": f"bench-{uuid.uuid4().hex[:8]}-{i}",
                        "user_id": users[i % len(users)], "item_id": items[i % len(items)],
                        "event": "click"}).encode()
            for i in range(20_000)
        ]  # fmt: skip
        streams.append(closed_loop(url, clicks, feedback_clients, seconds, path="/feedback"))
    cpu = time.process_time()
    results = await asyncio.gather(*streams)
    served = results[0]
    clicked = results[1] if feedback_clients else {"rps": 0.0, "errors": 0}
    return {
        "recommend_rps": served["rps"],
        "recommend_p99_ms": served["p99_ms"],
        "feedback_rps": clicked["rps"],
        "errors": served["errors"] + clicked["errors"],
        "seconds": seconds,
        "client_cpu_s": time.process_time() - cpu,
        "load1": os.getloadavg()[0],
    }


def counter(url: str, name: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
        text = response.read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def measure(
    profile: str,
    run_dir: Path,
    workdir: Path,
    users: list[Any],
    items: list[Any],
    args: argparse.Namespace,
    *,
    push: bool = True,
) -> dict[str, Any]:
    """``push=False``: the same load on a server that only stores feedback (no Feast push),
    which tells the push's cost from that of answering /feedback at all."""
    from kuberec.serving.feedback_settings import PUSH_ENV, SINK_ENV
    from kuberec.serving.online_features import FEAST_REPO_ENV
    from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

    repo = feature_repo(workdir, profile)
    port = free_port()
    process = start_server(
        run_dir,
        port,
        env={
            FEAST_REPO_ENV: str(repo),
            SINK_ENV: str(workdir / f"sink-{profile}-{push}"),
            PUSH_ENV: "1" if push else "0",
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, 600, process=process)
        lag = (
            asyncio.run(latency(url, users[::7], args.trials))
            if push
            else dict.fromkeys(("p50_ms", "p99_ms"), float("nan"))
        )
        print(json.dumps({"profile": profile, "push": push, "latency": lag}), flush=True)
        plains, mixes, pushed_rates, dropped = [], [], [], 0.0
        for _ in range(args.repeats):  # alternated: a load spike hits one pair, not a column
            plains.append(asyncio.run(load(url, users, items, args.concurrency, 0, args.seconds)))
            pushed_before = counter(url, "kuberec_feedback_pushed_total")
            dropped_before = counter(url, "kuberec_feedback_dropped_total")
            mixes.append(
                asyncio.run(
                    load(url, users, items, args.concurrency, args.feedback_clients, args.seconds)
                )
            )
            time.sleep(2)  # what was queued is pushed
            pushed = counter(url, "kuberec_feedback_pushed_total") - pushed_before
            pushed_rates.append(pushed / mixes[-1]["seconds"])
            dropped += counter(url, "kuberec_feedback_dropped_total") - dropped_before
        plain, mixed = _median(plains), _median(mixes)
        row = {
            "profile": profile if push else f"{profile}, push off",
            "latency": lag,
            "serving_only": plain,
            "with_feedback": mixed,
            "repeats": args.repeats,
            "pushed_per_s": float(np.median(pushed_rates)),
            "dropped": dropped,
            "ratios": [
                m["recommend_rps"] / p["recommend_rps"] for p, m in zip(plains, mixes, strict=True)
            ],
        }
        print(json.dumps(row), flush=True)
        return row
    finally:
        stop_server(process)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.median([r[key] for r in runs])) for key in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="users clicked for the latency")
    parser.add_argument("--seconds", type=float, default=8.0, help="load per measurement")
    parser.add_argument("--concurrency", type=int, default=8, help="/recommend clients")
    parser.add_argument("--feedback-clients", type=int, default=4, help="/feedback clients")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="alternated serving-only / with-feedback pairs (medians shown)",
    )
    parser.add_argument("--profiles", default="default,production")
    parser.add_argument(
        "--push-off-baseline",
        action="store_true",
        help="also the first profile with the push off (sink only)",
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("KUBEREC_DATA_DIR", str(DATA_DIR))
    workdir = Path(tempfile.mkdtemp(prefix="kuberec-feedback-bench-"))
    os.environ.setdefault("BENTOML_HOME", str(workdir / "bentoml"))
    from kuberec.components.models import load_model

    run = ml100k_run(workdir)
    model = load_model(run / "model")
    users = [int(u) for u in model.user_index.ids.tolist()]
    items = [int(i) for i in model.item_index.ids.tolist()]
    rows = [measure(p, run, workdir, users, items, args) for p in args.profiles.split(",")]
    if args.push_off_baseline:
        rows.append(
            measure(args.profiles.split(",")[0], run, workdir, users, items, args, push=False)
        )
    print()
    print(
        f"{'profile':<18} | {'feedback->feature p50':>21} {'p99':>8} | {'recommend req/s':>15} "
        f"{'with feedback':>13} {'ratio':>6} | {'feedback/s':>10} {'pushed/s':>8} "
        f"{'dropped':>7} | {'client CPU s':>12} {'load':>5}"
    )
    for r in rows:
        lag, plain, mixed = r["latency"], r["serving_only"], r["with_feedback"]
        print(
            f"{r['profile']:<18} | {lag['p50_ms']:>19.1f}ms {lag['p99_ms']:>6.1f}ms | "
            f"{plain['recommend_rps']:>15.1f} {mixed['recommend_rps']:>13.1f} "
            f"{mixed['recommend_rps'] / plain['recommend_rps']:>6.2f} | "
            f"{mixed['feedback_rps']:>10.1f} {r['pushed_per_s']:>8.1f} {r['dropped']:>7.0f} | "
            f"{plain['client_cpu_s']:>5.2f}/{mixed['client_cpu_s']:<6.2f} {mixed['load1']:>5.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
