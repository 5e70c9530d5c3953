"""Local serving's processes after crashes: nothing escapes `stop` or a redeploy, the URL stays.

Real processes on loopback: the canary router, and stand-in servers with the
process shape of ``bentoml serve`` (``forking_server.py``: a parent and a
worker in a session of its own; ``kill -9`` of the parent leaves the worker
answering). BentoML itself is exercised the same way in canary/test_rollout.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from kuberec.serving.canary.admin import TOKEN_FILE, bearer
from kuberec.serving.canary.local import LocalRollout, ProcessRecord, ServingError
from kuberec.serving.processes import ID_ENV, JOB_ENV, marked
from tests.support.paths import ROOT

pytestmark = pytest.mark.slow  # a router starts in ~2 s on a busy machine

FORKING = str(ROOT / "tests" / "support" / "forking_server.py")


def _forking_starter(
    reference: str, port: int, host: str, env: Mapping[str, str]
) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, FORKING, str(port), reference],
                            env={**os.environ, **env}, start_new_session=True)  # fmt: skip


@pytest.fixture()
def rollout(tmp_path: Path) -> Iterator[LocalRollout]:
    local = LocalRollout(tmp_path / "serving", ready_timeout_s=30, start_server=_forking_starter)
    try:
        yield local
    finally:
        LocalRollout(local.state_dir, start_server=_forking_starter).stop()
        assert marked(JOB_ENV, local.job_marker) == []


def _version(url: str) -> str | None:
    request = urllib.request.Request(url + "/recommend", data=b'{"user_id": 1}',
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return str(json.loads(response.read())["model_version"])
    except OSError:
        return None


def _kill_parent(record: ProcessRecord) -> list[int]:
    """``kill -9`` the server's parent; returns the worker pids it leaves behind."""
    workers = [p for p in marked(ID_ENV, record.tag) if p != record.pid]
    assert workers, "the stand-in has a worker"
    os.kill(record.pid, signal.SIGKILL)
    _wait_gone([record.pid])
    return workers


def _wait_gone(pids: list[int], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() and "Z" not in _state(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _config(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/router/config",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_stop_ends_the_worker_of_a_server_whose_parent_was_killed(
    rollout: LocalRollout,
) -> None:
    url = rollout.deploy_stable("v1")
    stable = rollout.records["stable"]
    workers = _kill_parent(stable)
    assert _version(stable.url) == "v1"  # the orphan still answers on the old port
    LocalRollout(rollout.state_dir).stop()  # `kuberec stop`: another process
    assert _wait_gone(workers)
    assert _version(stable.url) is None and _version(url) is None


def test_a_redeploy_stops_the_orphaned_worker_of_the_old_stable(rollout: LocalRollout) -> None:
    url = rollout.deploy_stable("v1")
    old = rollout.records["stable"]
    workers = _kill_parent(old)
    assert rollout.deploy_stable("v1") == url  # what the reconciler does: the server is gone
    assert _wait_gone(workers)
    assert _version(old.url) is None
    assert _version(url) == "v1" and rollout.records["stable"].pid != old.pid


def test_a_killed_router_comes_back_on_its_port_in_front_of_the_running_stable(
    rollout: LocalRollout,
) -> None:
    url = rollout.deploy_stable("v1")
    stable, router = rollout.records["stable"], rollout.records["router"]
    os.kill(router.pid, signal.SIGKILL)
    assert _wait_gone([router.pid]) and _version(url) is None
    later = LocalRollout(rollout.state_dir, start_server=_forking_starter)  # the next `run`
    assert later.deploy_stable("v1") == url  # the job's URL stays
    assert later.records["stable"] == stable  # reused, not a second stable
    assert list(later.servers) == [stable.tag]
    assert _version(url) == "v1"


def test_a_weight_change_after_a_router_crash_restarts_it_with_the_canary(
    rollout: LocalRollout,
) -> None:
    url = rollout.deploy_stable("v1")
    rollout.deploy_canary("v2", weight=0)
    router = rollout.records["router"]
    os.kill(router.pid, signal.SIGKILL)
    assert _wait_gone([router.pid])
    rollout.set_weight(100)
    assert rollout.url == url
    assert {_version(url) for _ in range(5)} == {"v2"}


def test_stop_ends_processes_of_the_job_it_has_no_record_of(rollout: LocalRollout) -> None:
    rollout.deploy_stable("v1")
    lost = rollout.records["stable"]
    processes = marked(ID_ENV, lost.tag)  # the parent and its worker
    assert len(processes) == 2
    replay = subprocess.Popen(["sleep", "300"], start_new_session=True,
                              env={**os.environ, **rollout.marker_env("replay")})  # fmt: skip
    state = rollout.state_dir / "serving.json"
    data = json.loads(state.read_text())  # a crash lost the records of the stable server
    del data["processes"]["stable"]
    data["servers"] = []
    state.write_text(json.dumps(data))
    LocalRollout(rollout.state_dir).stop()
    replay.wait(timeout=10)
    assert _wait_gone(processes)
    assert _version(lost.url) is None


def test_a_server_is_on_record_while_it_starts_and_stopped_when_it_never_gets_ready(
    tmp_path: Path,
) -> None:
    def never_ready(reference: str, port: int, host: str, env: Mapping[str, str]
                    ) -> subprocess.Popen:  # fmt: skip
        return subprocess.Popen(["sleep", "300"], env={**os.environ, **env},
                                start_new_session=True)  # fmt: skip

    local = LocalRollout(tmp_path / "serving", ready_timeout_s=3.0, start_server=never_ready)
    recorded: list[str] = []

    def watch() -> None:  # what a `kuberec stop` in another shell would read meanwhile
        state, deadline = local.state_dir / "serving.json", time.monotonic() + 3.0
        while not recorded and time.monotonic() < deadline:
            if state.exists():
                recorded.extend(r["tag"] for r in json.loads(state.read_text())["servers"])
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with pytest.raises(ServingError, match="not ready"):
        local.deploy_stable("v1")
    watcher.join(timeout=5)
    assert recorded and recorded[0].startswith("stable-")
    assert marked(JOB_ENV, local.job_marker) == [] and local.servers == {}


def test_the_router_token_is_private_and_new_for_each_router(rollout: LocalRollout) -> None:
    url = rollout.deploy_stable("v1")
    token_file = rollout.state_dir / TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    first = token_file.read_text().strip()
    assert _config(url, {"weight": 0}, {})[0] == 401
    assert _config(url, {"weight": 0}, bearer(first))[0] == 200
    router = rollout.records["router"]
    os.kill(router.pid, signal.SIGKILL)
    assert _wait_gone([router.pid])
    rollout.deploy_stable("v1")
    assert token_file.read_text().strip() != first
    assert _config(url, {"weight": 0}, bearer(first))[0] == 401


def test_the_router_accepts_as_backends_only_servers_this_job_started(
    rollout: LocalRollout, tmp_path: Path
) -> None:
    url = rollout.deploy_stable("v1")
    admin = bearer((rollout.state_dir / TOKEN_FILE).read_text().strip())
    other = LocalRollout(tmp_path / "other-job", ready_timeout_s=30,
                         start_server=_forking_starter)  # fmt: skip
    try:
        foreign = other.deploy_stable("intruder")
        for target in ("file:///etc/passwd", foreign, other.records["stable"].url):
            status, body = _config(url, {"stable": target}, admin)
            assert (status, body["field"]) == (400, "stable"), target
        assert _version(url) == "v1"
        rollout.deploy_canary("v2", weight=100)  # one of its own: accepted
        assert _version(url) == "v2"
    finally:
        other.stop()
