"""Multi-node Ray Train: two ``ray start`` nodes on this machine, one DDP worker on each.

Each node offers one CPU and each worker asks for one, so a two-worker run only
fits by spreading over both nodes; the driver also records the node of every
bundle of the workers' placement group while training runs. The driver is a
subprocess, so this test process never holds Ray state.

Teardown kills the process groups the test started (the scoped equivalent of
``ray stop --force``): ``ray stop`` would kill every Ray process on the machine,
including other users' clusters.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
STARTED = "block forever"  # what ``ray start --block`` prints once its node is up
START_TIMEOUT_S = 180
DRIVER_TIMEOUT_S = 420

#: Runs in the driver subprocess: argv is (address, storage path).
DRIVER = """
import json, sys, threading
import ray
from ray.util import placement_group_table
from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.train.trainer import ensure_ray, train
from kuberec.components.train.settings import TrainSettings

address, storage = sys.argv[1], sys.argv[2]
settings = TrainSettings(ray_address=address, workers=2, epochs=2, validation_fraction=0.1)
ensure_ray(settings)
placements, done = {}, threading.Event()

def watch():
    # The workers' placement group exists only while training runs: poll it.
    while not done.is_set():
        for pg_id, pg in placement_group_table().items():
            nodes = [n for n in pg["bundles_to_node_id"].values() if n and n != "ff" * 28]
            if len(pg["bundles"]) == settings.workers and len(nodes) == settings.workers:
                placements[pg_id] = nodes
        done.wait(0.2)

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
try:
    outcome = train(
        "mf", generate(SyntheticSpec(120, 80, 3000, seed=0)), {"dim": 16}, settings,
        storage_path=storage, run_name="two-nodes",
    )
finally:
    done.set()
    watcher.join()
report = {
    "nodes": [n["NodeID"] for n in ray.nodes() if n["Alive"]],
    "placements": list(placements.values()),
    "epochs": [r["epoch"] for r in outcome.history],
    "best_epoch": outcome.best_epoch,
    "checkpoint": outcome.checkpoint,
}
ray.shutdown()
print("REPORT " + json.dumps(report))
"""


@dataclass(frozen=True)
class Cluster:
    address: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a worker node, one CPU each, in their own temp dir with their own token."""
    temp_dir = Path(tempfile.mkdtemp(prefix="kr-ray-", dir="/tmp"))  # short: socket paths
    port = _free_port()
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        # Explicit token auth: a joining node does not switch to it from ~/.ray alone.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    common = ["--num-cpus=1", "--block", "--disable-usage-stats"]
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        nodes.append(
            _start_node(
                [str(RAY), "start", "--head", f"--port={port}", "--include-dashboard=false",
                 f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={_free_port()}",
                 *common],
                temp_dir / "head.log", env,
            )
        )  # fmt: skip
        nodes.append(
            _start_node(
                [str(RAY), "start", f"--address=127.0.0.1:{port}",
                 f"--dashboard-agent-listen-port={_free_port()}", *common],
                temp_dir / "worker.log", env,
            )
        )  # fmt: skip
        yield Cluster(f"127.0.0.1:{port}", env)
    finally:
        _stop(reversed(nodes))
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_training_spreads_its_workers_over_two_nodes(cluster: Cluster, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, cluster.address, str(tmp_path / "ray")],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    lines = [x for x in run.stdout.splitlines() if x.startswith("REPORT ")]
    assert run.returncode == 0 and lines, run.stdout[-3000:] + run.stderr[-6000:]
    report = json.loads(lines[-1].removeprefix("REPORT "))

    assert len(report["nodes"]) == 2
    assert report["placements"], "the workers' placement group was never seen placed"
    for bundle_nodes in report["placements"]:
        assert len(set(bundle_nodes)) == 2, bundle_nodes
        assert set(bundle_nodes) == set(report["nodes"])
    assert report["epochs"] == [0, 1]
    assert report["best_epoch"] in (0, 1)
    assert report["checkpoint"] and Path(report["checkpoint"]).is_relative_to(tmp_path)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_node(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``ray start --block`` in its own process group, returned once its node is up."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while STARTED not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop([process])
            pytest.fail(f"{' '.join(command[:3])} did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    return process


def _stop(processes: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each node's processes, as ``ray stop --force`` does, but only this cluster's.

    A node's GCS, raylet and agents share its process group; its workers run in
    their own sessions, so they are found as descendants of the node's process.
    """
    for process in processes:
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        with contextlib.suppress(ProcessLookupError):  # the whole group already exited
            os.killpg(process.pid, signal.SIGKILL)
        for child in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(timeout=30)
        psutil.wait_procs(descendants, timeout=30)
