"""Serving benchmark: /recommend latency and throughput, BentoML beside plain FastAPI + torch.

Two catalogues, measured in the same run:

- ``ml-100k``: the default model (EASE-T) trained on MovieLens 100K (1,682 items);
- ``synthetic-1M``: a matrix-factorisation model over 1,000,000 synthetic items
  (32-d item factors drawn around 256 cluster centres, as learned embeddings
  cluster; users from the synthetic generator). Its weights are not trained: a
  latency benchmark needs the shapes, not the quality.

For each, the kuberec BentoML service (one process; in-process adaptive
batching; explanations; a faiss index at 1M items since that is above
``KUBEREC_ANN_MIN_ITEMS``) and a minimal FastAPI + torch server of the same
model (one request at a time through ``model.score``, seen items masked,
``torch.topk``; no batching, no index, no explanations) each take closed-loop
load from 1, 8 and 32 concurrent clients for a few seconds per cell. Then ANN
against exact top-10 at 1M items, in-process: speed per query and recall@10.

The load generator shares the machine with the servers, so it is kept cheap
(raw keep-alive HTTP/1.1 on asyncio streams, ~0.05 ms of CPU per request; an
HTTP client library spent more CPU per request than either server). Absolute
figures on a shared 2-core machine are noisy; the side-by-side ratios, and the
servers' CPU per request (also printed), are the point. Run from the
repository root::

    python benchmarks/serving.py                 # ~5 minutes on 2 cores
    python benchmarks/serving.py --seconds 2 --skip-1m
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
from pathlib import Path
from typing import Any

import numpy as np
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
    train_run(load_movielens("ml-100k"), out, model_type="ease_t",
              settings=TrainSettings(backend="local"), source={"spec": {"movielens": "ml-100k"}})
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
        return {"items": [{"item_id": int(i) if isinstance(i, int | np.integer) else str(i),
                           "score": float(v)} for i, v in zip(ids, values.tolist(), strict=True)]}

    @app.get("/readyz")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def start_baseline(run_dir: Path, port: int) -> subprocess.Popen[bytes]:
    handle, _log = tempfile.mkstemp(prefix="kuberec-baseline-", suffix=".log")
    try:
        return subprocess.Popen(
            [sys.executable, __file__, "--baseline-server", str(run_dir), "--port", str(port)],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    finally:
        os.close(handle)


# --- load ------------------------------------------------------------------------------
class Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for JSON POSTs.

    The load generator shares the 2 cores with the servers: an HTTP client
    library spends ~3 ms of CPU per request at concurrency 32 (more than either
    server), which would cap both servers at the client's speed and hide their
    difference. Raw asyncio streams cost a small fraction of that.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = b""
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).strip(), 16)
                payload += await self._reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            payload = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


async def closed_loop(url: str, users: list[Any], concurrency: int, seconds: float
                      ) -> dict[str, float]:
    """``concurrency`` clients, each sending its next request when the last one answers."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    bodies = [json.dumps({"user_id": u, "k": 10}).encode() for u in users]
    latencies: list[float] = []
    errors = 0
    connections = [Connection(host, int(port)) for _ in range(concurrency)]
    await connections[0].post("/recommend", bodies[0])  # warm-up, not measured
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < stop:
            start = time.perf_counter()
            status, _ = await connections[offset].post("/recommend", bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - start)
            errors += status != 200
            i += concurrency

    began = time.perf_counter()
    await asyncio.gather(*(worker(j) for j in range(concurrency)))
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    ms = np.asarray(latencies) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rps": len(ms) / elapsed, "errors": errors, "requests": len(ms)}


def measure(name: str, run_dir: Path, users: list[Any], seconds: float) -> list[dict[str, Any]]:
    """Both servers up at once; each concurrency is measured on one, then at once on the other.

    Interleaving keeps the two columns of a row close in time, so load from
    other processes on a shared machine falls on both alike.
    """
    from kuberec.serving.canary.local import process_tree
    from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

    rows: list[dict[str, Any]] = []
    servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        for server in ("bentoml", "fastapi"):
            port = free_port()
            process = (start_server(run_dir, port) if server == "bentoml"
                       else start_baseline(run_dir, port))
            servers[server] = (process, f"http://127.0.0.1:{port}")
            wait_ready(servers[server][1], timeout=600, process=process)
        for concurrency in CONCURRENCY:
            for server, (process, url) in servers.items():
                pids = process_tree(process.pid)
                before = _cpu_seconds(pids)
                result = asyncio.run(closed_loop(url, users, concurrency, seconds))
                cpu_ms = (_cpu_seconds(pids) - before) / max(1, result["requests"]) * 1e3
                rows.append({"catalogue": name, "server": server, "concurrency": concurrency,
                             **result, "cpu_ms_per_request": cpu_ms})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for process, _ in servers.values():
            stop_server(process)
    return rows


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
    from kuberec.serving.retrieval import AnnIndex, ExactIndex, factorize, recall_at_k

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
    return {"items": factors.items.shape[0], "build_s": build,
            "exact_ms_per_query": timings["exact"], "ann_ms_per_query": timings["ann"],
            "speedup": timings["exact"] / timings["ann"],
            "recall_at_10": recall_at_k(ann, exact, queries, 10)}


def table(rows: list[dict[str, Any]]) -> str:
    head = (f"{'catalogue':<13} {'conc':>4} | {'bentoml p50':>11} {'p99':>8} {'req/s':>7} "
            f"{'cpu/req':>8} | {'fastapi p50':>11} {'p99':>8} {'req/s':>7} {'cpu/req':>8} | "
            f"{'req/s ratio':>11}")
    lines = [head, "-" * len(head)]
    keyed = {(r["catalogue"], r["server"], r["concurrency"]): r for r in rows}
    for catalogue in dict.fromkeys(r["catalogue"] for r in rows):
        for c in CONCURRENCY:
            b, f = keyed.get((catalogue, "bentoml", c)), keyed.get((catalogue, "fastapi", c))
            if b is None or f is None:
                continue
            lines.append(
                f"{catalogue:<13} {c:>4} | {b['p50_ms']:>9.1f}ms {b['p99_ms']:>6.1f}ms "
                f"{b['rps']:>7.1f} {b['cpu_ms_per_request']:>6.2f}ms | {f['p50_ms']:>9.1f}ms "
                f"{f['p99_ms']:>6.1f}ms {f['rps']:>7.1f} {f['cpu_ms_per_request']:>6.2f}ms | "
                f"{b['rps'] / f['rps']:>10.2f}x")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="load per cell")
    parser.add_argument("--skip-1m", action="store_true", help="only ml-100k")
    parser.add_argument("--baseline-server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        baseline_main(args.baseline_server, args.port)
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("KUBEREC_DATA_DIR", str(DATA_DIR))
    workdir = Path(tempfile.mkdtemp(prefix="kuberec-serving-bench-"))
    os.environ.setdefault("BENTOML_HOME", str(workdir / "bentoml"))
    from kuberec.components.models import load_model

    rows: list[dict[str, Any]] = []
    catalogues = [("ml-100k", ml100k_run(workdir))]
    if not args.skip_1m:
        catalogues.append(("synthetic-1M", synthetic_1m_run(workdir)))
    ann: dict[str, float] | None = None
    for name, run in catalogues:
        ids = load_model(run / "model").user_index.ids.tolist()
        users = [int(u) if isinstance(u, int | np.integer) else str(u) for u in ids]
        rows += measure(name, run, users, args.seconds)
        if name == "synthetic-1M":
            ann = ann_versus_exact(run)
    print()
    print(table(rows))
    if ann is not None:
        print()
        print(f"ANN (faiss IVF-Flat) vs exact top-10 at {ann['items']:,} items, one query at a "
              f"time: exact {ann['exact_ms_per_query']:.2f} ms, ANN "
              f"{ann['ann_ms_per_query']:.3f} ms ({ann['speedup']:.0f}x faster), "
              f"recall@10 {ann['recall_at_10']:.3f}, index built in {ann['build_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
