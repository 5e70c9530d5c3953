"""Where a request's CPU goes: py-spy samples of the BentoML service under load.

Starts ``kuberec serve`` of the default ml-100k model (EASE-T; trained once
into ``--workdir`` and reused), puts closed-loop load on ``/recommend`` and
``/score`` in turn (``--concurrency`` clients, loopback), and samples the
server's processes with py-spy meanwhile. For each endpoint it prints the
requests/s, the functions with the most *self* time (where the CPU is spent)
and the most *total* time (what a share of the work happens under), as a share
of all samples taken, and the self time summed by package (uvicorn, starlette,
bentoml, pydantic, prometheus_client, kuberec, ...). Run from the repository
root (py-spy reads another process's memory: it needs root or ptrace rights)::

    python benchmarks/serving_profile.py --seconds 10 --workdir /tmp/kuberec-bench
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from http_load import closed_loop

from serving import DATA_DIR, ml100k_run, reused  # benchmarks/serving.py: sys.path[0]

#: ``function (file:line)`` as py-spy's raw (collapsed) format writes a frame.
FRAME = re.compile(r"^(?P<function>.+?) \((?P<file>[^():]+)(?::\d+)?\)$")


def bodies(endpoint: str, users: list[object], items: list[object]) -> list[bytes]:
    """One body per user: ``/recommend`` k=10; ``/score`` ten items drawn per user."""
    rng = np.random.default_rng(0)
    if endpoint == "/recommend":
        return [json.dumps({"user_id": u, "k": 10}).encode() for u in users]
    return [
        json.dumps(
            {
                "user_id": u,
                "item_ids": [items[i] for i in rng.choice(len(items), 10, replace=False)],
            }
        ).encode()
        for u in users
    ]


def profile(
    url: str,
    pid: int,
    endpoint: str,
    payloads: list[bytes],
    concurrency: int,
    seconds: float,
    rate: int,
    out: Path,
) -> dict[str, float]:
    """Load ``endpoint`` while py-spy samples ``pid`` and its children into ``out``."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    sampler = subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--format",
            "raw",
            "--function",
            "--nonblocking",
            "--rate",
            str(rate),
            "--duration",
            str(int(seconds)),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    result = asyncio.run(closed_loop(url, payloads, concurrency, seconds + 0.5, endpoint))
    _, errors = sampler.communicate(timeout=60)
    if sampler.returncode != 0 or not out.is_file():
        raise SystemExit(f"py-spy failed ({sampler.returncode}): {errors.decode().strip()}")
    return result


def read_stacks(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """Collapsed stacks -> ([(function, file), ...] root first, samples).

    py-spy's process and thread frames are dropped.
    """
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = []
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            if match and not frame.startswith(("process ", "thread ")):
                frames.append((match["function"], match["file"]))
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def package(file: str) -> str:
    """The top-level package a frame's file belongs to (py-spy shortens paths to it)."""
    parts = Path(file).parts
    if "kuberec" in parts or parts[:1] in (("serving",), ("components",)):
        return "kuberec"
    return parts[0].removesuffix(".py") if parts else file


def report(stacks: list[tuple[list[tuple[str, str]], int]], top: int) -> str:
    total = sum(count for _, count in stacks) or 1
    own: Counter[tuple[str, str]] = Counter()
    under: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    for frames, count in stacks:
        own[frames[-1]] += count
        packages[package(frames[-1][1])] += count
        for frame in set(frames):
            under[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("self", own), ("total", under)):
        lines.append(f"  top {top} by {title} time:")
        lines += [
            f"    {count / total:>6.1%}  {function}  ({file})"
            for (function, file), count in counter.most_common(top)
        ]
    lines.append("  self time by package:")
    lines += [f"    {count / total:>6.1%}  {name}" for name, count in packages.most_common(12)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="load and sampling per endpoint"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--endpoint",
        choices=("/recommend", "/score"),
        action="append",
        help="profile only this endpoint (repeatable; default both)",
    )
    parser.add_argument("--workdir", type=Path, help="keep the trained run here and reuse it")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("KUBEREC_DATA_DIR", str(DATA_DIR))
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kuberec-serving-profile-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("BENTOML_HOME", str(workdir / "bentoml"))
    from kuberec.components.models import load_model
    from kuberec.serving.server import free_port, start_server, stop_server, wait_ready

    run = reused(workdir / "ml100k-ease_t", ml100k_run)
    loaded = load_model(run / "model")
    users = [_plain(u) for u in loaded.user_index.ids.tolist()]
    items = [_plain(i) for i in loaded.item_index.ids.tolist()]
    port = free_port()
    process = start_server(run, port)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout=600, process=process)
        for endpoint in args.endpoint or ["/recommend", "/score"]:
            out = workdir / f"profile{endpoint.replace('/', '-')}.txt"
            result = profile(
                url,
                process.pid,
                endpoint,
                bodies(endpoint, users, items),
                args.concurrency,
                args.seconds,
                args.rate,
                out,
            )
            print(
                f"\n== {endpoint} at concurrency {args.concurrency}: {result['rps']:.0f} "
                f"req/s, p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
                f"{result['errors']:.0f} errors; load average {os.getloadavg()[0]:.2f} "
                f"(raw stacks: {out})"
            )
            print(report(read_stacks(out), args.top), flush=True)
    finally:
        stop_server(process)
    return 0


def _plain(value: object) -> object:
    return int(value) if isinstance(value, int | np.integer) else str(value)


if __name__ == "__main__":
    sys.exit(main())
