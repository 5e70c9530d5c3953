"""Serving benchmark: /recommend through kuberec, no-op BentoML, FastAPI + torch, the HTTP floor.

Two catalogues, measured in the same run:

- ``ml-100k``: the default model (EASE-T) trained on MovieLens 100K (1,682 items);
- ``synthetic-1M``: a matrix-factorisation model over 1,000,000 synthetic items
  (32-d item factors drawn around 256 cluster centres, as learned embeddings
  cluster; users from the synthetic generator). Its weights are not trained: a
  latency benchmark needs the shapes, not the quality.

For each, four servers take closed-loop load from concurrent clients (1, 8
and 32 on ml-100k, 32 at 1M) for a few seconds per cell, one after the other
in each row: the kuberec BentoML service (one process; in-process adaptive
batching; explanations; re-ranking, the job default unless ``--ranking``; a
faiss index at 1M items since that is above ``KUBEREC_ANN_MIN_ITEMS``); the
same BentoML service shape with a no-op ``/recommend`` (``serving_noop.py``:
the ceiling BentoML's own ``@bentoml.api`` path allows); a minimal FastAPI +
torch server of the same model (one request at a time through
``model.score``, seen items masked, ``torch.topk``; no batching, no index, no
explanations); and the floor: uvicorn + starlette answering the same request
with an answer of the same shape and no model. Each server's requests/s are
also given as a share of the floor's, with its CPU per request and the load
average. Then ANN against exact top-10 at 1M items, in-process: speed per
query and recall@10.

The load generator shares the machine with the servers, so it is kept cheap
(raw keep-alive HTTP/1.1 on asyncio streams, ~0.05 ms of CPU per request; an
HTTP client library spent more CPU per request than either server). Absolute
figures on a shared 2-core machine are noisy; the side-by-side ratios, and the
servers' CPU per request (also printed), are the point. Run from the
repository root::

    python benchmarks/serving.py                 # ~6 minutes on 2 cores
    python benchmarks/serving.py --seconds 2 --skip-1m --workdir /tmp/kuberec-bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from http_load import closed_loop
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT.parent / "shared" / "datasets"
CONCURRENCY = (1, 8, 32)


# --- models --------------------------------------------------------------------------
def ml100k_run(workdir: Path) -> Path:
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.train.run import train_run
    from kuberec.components.train.settings import TrainSettings

    out = workdir / "ml100k-ease_t"
    train_run(
        load_movielens("ml-100k"),
        out,
        model_type="ease_t",
        settings=TrainSettings(backend="local"),
        source={"spec": {"movielens": "ml-100k"}},
    )
    return out


def synthetic_1m_run(workdir: Path, n_items: int = 1_000_000, dim: int = 32) -> Path:
    """A kuberec-model/1 run directory holding an MF model over ``n_items`` items."""
    import torch

    from kuberec.components.datasets.synthetic import SyntheticSpec, generate
    from kuberec.components.models import create_model, save_model
    from kuberec.components.models.encoded import EncodedData
    from kuberec.serving.retrieval import clustered_catalogue

    data = EncodedData.from_dataset(generate(SyntheticSpec(2_000, n_items, 100_000, seed=7)))
    model = create_model("mf", data.schema, {"dim": dim})
    items = clustered_catalogue(n_items, dim, seed=7)
    rng = np.random.default_rng(8)
    users = items[rng.integers(0, n_items, data.n_users + 1)]
    users += rng.standard_normal(users.shape).astype(np.float32) * 0.5
    with torch.no_grad():
        model.item_factors.weight.copy_(torch.from_numpy(items))
        model.user_factors.weight.copy_(torch.from_numpy(users))
    out = workdir / "synthetic-1m-mf"
    save_model(model, "mf", {"dim": dim}, data, out / "model")
    return out


def reused(out: Path, build: Callable[[Path], Path]) -> Path:
    """A run made by an earlier benchmark in the same ``--workdir``, else a fresh one."""
    if (out / "model").is_dir():
        return out
    return build(out.parent)


# --- the plain FastAPI + torch baseline ------------------------------------------------
class BaselineBody(BaseModel):
    user_id: int | str
    k: int = 10


def baseline_main(run_dir: str, port: int) -> None:
    """``uvicorn`` serving ``POST /recommend`` one request at a time."""
    import torch
    import uvicorn
    from fastapi import FastAPI

    from kuberec.components.models import load_model

    loaded = load_model(Path(run_dir) / "model")
    model = loaded.model
    app = FastAPI()

    @app.post("/recommend")
    def recommend(body: BaselineBody) -> dict[str, Any]:
        user = int(loaded.user_index.encode([body.user_id], unknown=-1)[0])
        seen = loaded.history.of(user) if user >= 0 else np.zeros(0, np.int64)
        history = None
        if model.history_length != 0:
            history = torch.as_tensor(loaded.history.recent([user], model.history_length))
        with torch.no_grad():
            scores = model.score(torch.tensor([user]), history)[0].clone()
        scores[torch.as_tensor(seen)] = -torch.inf
        values, index = torch.topk(scores, body.k)
        ids = loaded.item_index.decode(index.tolist())
        return {
            "items": [
                {
                    "item_id": int(i) if isinstance(i, int | np.integer) else str(i),
                    "score": float(v),
                }
                for i, v in zip(ids, values.tolist(), strict=True)
            ]
        }

    @app.get("/readyz")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the floor: the HTTP stack with no model ----------------------------------------
FLOOR_ITEMS = [
    {"item_id": 1 + i, "score": 1.0 - i / 100, "explanation": "because you liked Star Wars (1977)"}
    for i in range(1000)
]


def floor_main(port: int) -> None:
    """uvicorn + starlette answering ``POST /recommend`` with the service's answer shape.

    It parses the JSON body and answers ``k`` items with scores, explanations, a
    model version, a fresh request id and the fallback flag, and does nothing
    else: what any Python server on this stack pays per request before it does
    any work. The service's requests/s are reported as a share of this one's.
    """
    import uuid

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def recommend(request: Request) -> Response:
        body = json.loads(await request.body())
        k = int(body.get("k", 10))
        answer = {
            "items": FLOOR_ITEMS[:k],
            "model_version": "floor",
            "request_id": str(uuid.uuid4()),
            "fallback": body["user_id"] is None,
        }
        return Response(json.dumps(answer), media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b'{"ready": true}', media_type="application/json")

    app = Starlette(
        routes=[Route("/recommend", recommend, methods=["POST"]), Route("/readyz", ready)]
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _spawn(command: list[str], prefix: str) -> subprocess.Popen[bytes]:
    """``command`` in its own session, one OpenMP thread, its output in a temporary log."""
    handle, _log = tempfile.mkstemp(prefix=f"kuberec-bench-{prefix}-", suffix=".log")
    try:
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    finally:
        os.close(handle)


def start_helper(flag: str, port: int, *args: str) -> subprocess.Popen[bytes]:
    """This script in a child process as one of its helper servers."""
    command = [sys.executable, __file__, flag, *args, "--port", str(port)]
    return _spawn(command, flag.removeprefix("--").replace("-", "_"))


SERVERS = ("bentoml", "noop-bentoml", "fastapi", "floor")


def start_noop(port: int) -> subprocess.Popen[bytes]:
    """``benchmarks/serving_noop.py``'s no-op BentoML service."""
    service, here = "serving_noop:NoopRecommender", str(Path(__file__).parent)
    command = [sys.executable, "-m", "bentoml", "serve", service, "--working-dir", here]
    return _spawn([*command, "--port", str(port), "--host", "127.0.0.1"], "noop")


def measure(
    name: str,
    run_dir: Path,
    users: list[Any],
    seconds: float,
    concurrencies: tuple[int, ...] = CONCURRENCY,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """All four servers up at once; each concurrency is measured on each in turn.

    Interleaving keeps the columns of a row close in time, so load from other
    processes on a shared machine falls on all alike; the load average is
    recorded beside each cell.
    """
    from kuberec.serving.canary.local import process_tree
    from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

    bodies = [json.dumps({"user_id": u, "k": 10}).encode() for u in users]
    rows: list[dict[str, Any]] = []
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for server in SERVERS:
            port = free_port()
            process = (
                start_server(run_dir, port, env=env)
                if server == "bentoml"
                else start_noop(port)
                if server == "noop-bentoml"
                else start_helper("--baseline-server", port, str(run_dir))
                if server == "fastapi"
                else start_helper("--floor-server", port)
            )
            servers[server] = (process, f"http://127.0.0.1:{port}")
            wait_ready(servers[server][1], timeout=600, process=process)
        for concurrency in concurrencies:
            for server, (process, url) in servers.items():
                pids = process_tree(process.pid)
                before, batches = _cpu_seconds(pids), _batches(url, server)
                result = asyncio.run(closed_loop(url, bodies, concurrency, seconds))
                cpu_ms = (_cpu_seconds(pids) - before) / max(1, result["requests"]) * 1e3
                after = _batches(url, server)
                extra = (
                    {"mean_batch": (after[0] - batches[0]) / max(1, after[1] - batches[1])}
                    if server == "bentoml"
                    else {}
                )
                rows.append(
                    {
                        "catalogue": name,
                        "server": server,
                        "concurrency": concurrency,
                        **result,
                        "cpu_ms_per_request": cpu_ms,
                        **extra,
                        "load_1m": os.getloadavg()[0],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for process, _ in servers.values():
            stop_server(process)
    return rows


def _batches(url: str, server: str) -> tuple[float, float]:
    """The service's ``/recommend`` batches so far: (requests in them, batches), from /metrics."""
    if server != "bentoml":
        return 0.0, 0.0
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        text = response.read().decode()
    found = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in found:
            if line.startswith(f"kuberec_batch_size_{part}{{") and '"/recommend"' in line:
                found[part] += float(line.rsplit(" ", 1)[1])
    return found["sum"], found["count"]


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes so far (from /proc; gone ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def ann_versus_exact(run_dir: Path, n_queries: int = 500) -> dict[str, float]:
    import torch

    from kuberec.components.models import load_model
    from kuberec.components.models.factors import factorize
    from kuberec.serving.retrieval import AnnIndex, ExactIndex, recall_at_k

    loaded = load_model(run_dir / "model")
    factors = factorize(loaded.model)
    assert factors is not None
    began = time.perf_counter()
    ann = AnnIndex(factors.items)
    build = time.perf_counter() - began
    exact = ExactIndex(factors.items)
    users = torch.arange(min(n_queries, loaded.schema.n_users))
    queries = factors.user_vectors(users, None).numpy()
    timings = {}
    for name, index in (("exact", exact), ("ann", ann)):
        began = time.perf_counter()
        for row in queries:  # one query at a time, as a request is served
            index.search(row[None, :], 10)
        timings[name] = (time.perf_counter() - began) / len(queries) * 1e3
    return {
        "items": factors.items.shape[0],
        "build_s": build,
        "exact_ms_per_query": timings["exact"],
        "ann_ms_per_query": timings["ann"],
        "speedup": timings["exact"] / timings["ann"],
        "recall_at_10": recall_at_k(ann, exact, queries, 10),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """One line per catalogue and concurrency: each server's p50, p99, req/s; shares of the floor.

    Then each server's CPU per request (ms), the service's p99/p50 and mean batch size
    (requests per model call), with the load average.
    """
    cells = " | ".join(f"{server + ' p50':>16} {'p99':>7} {'req/s':>7}" for server in SERVERS)
    shares = " ".join(f"{server + '/floor':>13}" for server in SERVERS[:-1])
    cpu = " ".join(f"{server[:5]:>6}" for server in SERVERS)
    head = (
        f"{'catalogue':<13} {'conc':>4} | {cells} | {shares} | CPU ms/req {cpu} | "
        f"{'bento p99/p50':>13} {'batch':>5} {'load':>5}"
    )
    lines = [head, "-" * len(head)]
    keyed = {(r["catalogue"], r["server"], r["concurrency"]): r for r in rows}
    for catalogue in dict.fromkeys(r["catalogue"] for r in rows):
        for c in sorted({r["concurrency"] for r in rows if r["catalogue"] == catalogue}):
            found = [keyed.get((catalogue, server, c)) for server in SERVERS]
            if any(r is None for r in found):
                continue
            cells = " | ".join(
                f"{r['p50_ms']:>14.1f}ms {r['p99_ms']:>5.1f}ms {r['rps']:>7.0f}"
                for r in found
                if r is not None
            )
            floor = found[-1]
            bento = found[0]
            assert floor is not None and bento is not None
            shares = " ".join(
                f"{r['rps'] / floor['rps']:>13.0%}" for r in found[:-1] if r is not None
            )
            cpu = " ".join(f"{r['cpu_ms_per_request']:>6.2f}" for r in found if r is not None)
            lines.append(
                f"{catalogue:<13} {c:>4} | {cells} | {shares} | {'':>10} {cpu} | "
                f"{bento['p99_ms'] / bento['p50_ms']:>12.1f}x {bento.get('mean_batch', 0):>5.1f} "
                f"{bento['load_1m']:>5.2f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell")
    parser.add_argument("--skip-1m", action="store_true", help="only ml-100k")
    parser.add_argument("--skip-100k", action="store_true", help="only the 1M catalogue")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=list(CONCURRENCY),
        help="concurrent clients per cell on ml-100k",
    )
    parser.add_argument(
        "--concurrency-1m",
        type=int,
        nargs="+",
        default=[32],
        help="concurrent clients per cell on the 1M catalogue",
    )
    parser.add_argument(
        "--ranking",
        help="the service's re-ranking as JSON (like "
        "spec.serving.ranking; default: the job default, diversity 0.3)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the trained runs here and reuse them next time"
    )
    parser.add_argument("--baseline-server", help=argparse.SUPPRESS)
    parser.add_argument("--floor-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        baseline_main(args.baseline_server, args.port)
        return 0
    if args.floor_server:
        floor_main(args.port)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("KUBEREC_DATA_DIR", str(DATA_DIR))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kuberec-serving-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BENTOML_HOME", str(workdir / "bentoml"))
    from kuberec.components.models import load_model
    from kuberec.serving.server import RANKING_ENV

    rows: list[dict[str, Any]] = []
    catalogues = []
    if not args.skip_100k:
        catalogues.append(
            ("ml-100k", reused(workdir / "ml100k-ease_t", ml100k_run), tuple(args.concurrency))
        )
    if not args.skip_1m:
        catalogues.append(
            (
                "synthetic-1M",
                reused(workdir / "synthetic-1m-mf", synthetic_1m_run),
                tuple(args.concurrency_1m),
            )
        )
    ann: dict[str, float] | None = None
    for name, run, concurrencies in catalogues:
        ids = load_model(run / "model").user_index.ids.tolist()
        users = [int(u) if isinstance(u, int | np.integer) else str(u) for u in ids]
        rows += measure(
            name,
            run,
            users,
            args.seconds,
            concurrencies,
            {RANKING_ENV: args.ranking} if args.ranking else None,
        )
        if name == "synthetic-1M":
            ann = ann_versus_exact(run)
    print()
    print(table(rows))
    if ann is not None:
        print()
        print(
            f"ANN (faiss IVF-Flat) vs exact top-10 at {ann['items']:,} items, one query at a "
            f"time: exact {ann['exact_ms_per_query']:.2f} ms, ANN "
            f"{ann['ann_ms_per_query']:.3f} ms ({ann['speedup']:.0f}x faster), "
            f"recall@10 {ann['recall_at_10']:.3f}, index built in {ann['build_s']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
