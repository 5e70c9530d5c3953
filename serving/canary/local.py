"""The local platform's serving: BentoML processes behind the canary router, found again by file.

:class:`LocalRollout` starts a stable server (``serving/server.py``) and the
router in front of it, adds a canary, moves the weight, reads each track's
interval metrics from the router, and promotes or rolls back. Every process
it starts is recorded (pid, port, URL, command line) in ``serving.json`` in
the given directory, so a later ``kuberec`` invocation (or the operator's next
reconcile pass) finds the same processes, changes their weights and stops
them. A recorded pid is only signalled while its command line is the one
recorded, so a recycled pid is never touched.

The decisions themselves are :mod:`.analysis`'s; :meth:`LocalRollout.run_canary`
is the small loop that applies them here (the operator's reconcile loop does
the same one interval per pass).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuberec.errors import ConfigError, KuberecError
from kuberec.serving.canary.analysis import (
    Decision,
    RolloutPolicy,
    RolloutState,
    VersionMetrics,
    evaluate_interval,
    start,
)
from kuberec.serving.canary.metrics import ROUTER, Counters, interval, scrape

log = logging.getLogger(__name__)
STATE_FILE = "serving.json"
ServerStarter = Callable[[str, int, str], subprocess.Popen]  # (reference, port, host)


class ServingError(KuberecError):
    """A local server or the router did not start, answer, or stop."""


@dataclass
class ProcessRecord:
    """One process this manager started: enough to find it again and to stop only it."""

    role: str  # router | stable | canary
    pid: int
    port: int
    url: str
    cmdline: str
    reference: str | None = None

    def alive(self) -> bool:
        return _cmdline(self.pid) == self.cmdline


class LocalRollout:
    """Stable and canary BentoML servers behind one router URL, managed from ``state_dir``."""

    def __init__(
        self,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        ready_timeout_s: float = 180.0,
        start_server: ServerStarter | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self._start_server = start_server
        self._children: dict[int, subprocess.Popen] = {}
        self.records: dict[str, ProcessRecord] = {}
        self.weight = 0
        self.shadow = False
        self._load()

    # --- what is running -------------------------------------------------------------------------

    @property
    def url(self) -> str | None:
        """The router's URL: the one address clients use, whatever serves behind it."""
        router = self.records.get("router")
        return router.url if router else None

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "weight": self.weight,
            "shadow": self.shadow,
            "processes": {
                role: {**asdict(r), "alive": r.alive()} for role, r in self.records.items()
            },
        }

    # --- deploying -----------------------------------------------------------------------------

    def deploy_stable(self, reference: str | Path, *, router_port: int | None = None) -> str:
        """Serve ``reference`` as the stable version and return the router URL.

        With a router already running, the new server replaces the stable one
        at once (no canary): the router switches, then the old server stops.
        """
        server = self._start("stable", str(reference))
        router = self.records.get("router")
        if router is not None and router.alive():
            old = self.records.get("stable")
            self._configure(stable=server.url)
            self.records["stable"] = server
            self._save()
            if old is not None:
                self._stop(old)
            return router.url
        try:
            router = self._start_router(server.url, router_port)
        except BaseException:
            self._stop(server)
            raise
        self.records.update(stable=server, router=router)
        self.weight, self.shadow = 0, False
        self._save()
        return router.url

    def deploy_canary(
        self, reference: str | Path, *, weight: int = 0, shadow: bool = False
    ) -> str:
        """Start ``reference`` as the canary with ``weight`` percent (or mirrored, ``shadow``)."""
        self._require("router", "stable")
        if "canary" in self.records:
            self.rollback()
        server = self._start("canary", str(reference))
        self.records["canary"] = server
        self._save()
        try:
            self._configure(canary=server.url, weight=weight, shadow=shadow)
        except BaseException:
            self.rollback()
            raise
        return server.url

    def set_weight(self, weight: int) -> None:
        """Percent of users (by the sticky split) served by the canary."""
        self._require("router", "canary")
        self._configure(weight=weight)

    def set_shadow(self, shadow: bool) -> None:
        self._require("router", "canary")
        self._configure(shadow=shadow)

    def inject_faults(self, faults: dict[str, dict[str, float]]) -> None:
        """Router fault injection, e.g. ``{"canary": {"delay_ms": 300}}``; ``{}`` clears."""
        self._require("router")
        self._configure(faults=faults)

    def promote(self) -> str:
        """The canary becomes the stable version; the old stable server stops."""
        self._require("router", "canary")
        canary, old = self.records["canary"], self.records.get("stable")
        self._configure(stable=canary.url, canary=None)
        canary.role = "stable"
        self.records["stable"] = canary
        del self.records["canary"]
        self._save()
        if old is not None:
            self._stop(old)
        return canary.url

    def rollback(self) -> None:
        """Canary weight 0 (all users back on stable), then the canary server stops."""
        canary = self.records.pop("canary", None)
        if "router" in self.records and self.records["router"].alive():
            self._configure(canary=None)
        self.weight, self.shadow = 0, False
        self._save()
        if canary is not None:
            self._stop(canary)

    def stop(self) -> None:
        """Stop every process recorded here (router first) and forget them."""
        for role in ("router", "canary", "stable"):
            record = self.records.pop(role, None)
            if record is not None:
                self._stop(record)
        self.weight, self.shadow = 0, False
        path = self.state_dir / STATE_FILE
        path.unlink(missing_ok=True)

    # --- measuring -----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Counters]:
        """The router's cumulative per-track counters now."""
        self._require("router")
        return scrape(self.records["router"].url + "/router/metrics", ROUTER)

    @staticmethod
    def interval_metrics(
        before: dict[str, Counters], after: dict[str, Counters]
    ) -> tuple[VersionMetrics, VersionMetrics]:
        """``(canary, stable)`` of the interval between two snapshots."""
        per_track = interval(before, after)
        return per_track.get("canary", VersionMetrics()), per_track.get("stable", VersionMetrics())

    def shadow_report(self) -> dict[str, Any]:
        """overlap@K and latencies of the mirrored candidate (``/router/shadow``)."""
        self._require("router")
        return _get_json(self.records["router"].url + "/router/shadow")

    def run_canary(
        self,
        reference: str | Path,
        policy: RolloutPolicy,
        *,
        interval_s: float,
        on_decision: Callable[[Decision], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Decision]:
        """Deploy ``reference`` as a canary at the first step, then :meth:`drive` it."""
        self.deploy_canary(reference, weight=policy.steps[0])
        return self.drive(policy, interval_s=interval_s, on_decision=on_decision, sleep=sleep)

    def drive(
        self,
        policy: RolloutPolicy,
        *,
        interval_s: float,
        state: RolloutState | None = None,
        on_decision: Callable[[Decision], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Decision]:
        """Walk the deployed canary through the steps until it is promoted or rolled back.

        One decision per interval, applied at once: advance (new weight),
        promote, rollback, hold (a fresh interval) or extend (the next interval
        adds to this one). The operator's reconcile loop does the same, one
        interval per pass.
        """
        self._require("router", "canary")
        state = state or start(policy)
        if self.weight != state.weight:
            self.set_weight(state.weight)
        decisions: list[Decision] = []
        before = self.snapshot()
        while state.phase == "Progressing":
            sleep(interval_s)
            after = self.snapshot()
            canary, stable = self.interval_metrics(before, after)
            state, decision = evaluate_interval(
                state, policy, canary, stable, now=datetime.now(UTC)
            )
            decisions.append(decision)
            if on_decision is not None:
                on_decision(decision)
            log.info("canary %s: %s -> weight %s", decision.verdict.kind, decision.action,
                     decision.next_weight)  # fmt: skip
            if decision.action == "promote":
                self.promote()
            elif decision.action == "rollback":
                self.rollback()
            elif decision.action == "advance":
                self.set_weight(state.weight)
            if decision.action != "extend":
                before = self.snapshot()
        return decisions

    # --- processes ------------------------------------------------------------------------------

    def _start(self, role: str, reference: str) -> ProcessRecord:
        starter = self._start_server or _default_starter(self.state_dir)
        port = free_port(self.host)
        process = starter(reference, port, self.host)
        self._children[process.pid] = process
        url = f"http://{self.host}:{port}"
        record = ProcessRecord(role, process.pid, port, url, _cmdline(process.pid), reference)
        try:
            _wait_ready(url + "/readyz", process, self.ready_timeout_s)
        except BaseException:
            self._stop(record)
            raise
        return record

    def _start_router(self, stable_url: str, port: int | None) -> ProcessRecord:
        port = port or free_port(self.host)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.state_dir / "router.log", "ab")  # noqa: SIM115 (child keeps it)
        command = [
            sys.executable, "-m", "kuberec.serving.canary.router",
            "--host", self.host, "--port", str(port), "--stable", stable_url,
        ]  # fmt: skip
        with log_file:
            process = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._children[process.pid] = process
        url = f"http://{self.host}:{port}"
        record = ProcessRecord("router", process.pid, port, url, _cmdline(process.pid))
        try:
            _wait_ready(url + "/router/state", process, 30.0)
        except BaseException:
            process.kill()  # our own child: no pid-reuse risk, whatever /proc said
            process.wait(timeout=10)
            raise
        # /proc/<pid>/cmdline can read empty right after fork; by now the router serves
        record.cmdline = _cmdline(process.pid)
        return record

    def _stop(self, record: ProcessRecord, timeout_s: float = 20.0) -> None:
        """TERM the process (its group when it leads one), then KILL what is left of its tree.

        ``bentoml serve`` runs its workers in sessions of their own: a KILL of
        the arbiter alone would leave them serving, so the tree is collected
        first and every remaining member is killed after the grace period.
        """
        child = self._children.pop(record.pid, None)
        if child is not None and child.poll() is not None:
            return
        if child is None and not record.alive():
            return  # gone, or the pid now belongs to someone else
        tree = process_tree(record.pid)
        _signal(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if child is not None and child.poll() is not None:
                break
            if child is None and not record.alive():
                break
            time.sleep(0.1)
        for pid in tree:
            if _cmdline(pid):
                _signal(pid, signal.SIGKILL)
        if child is not None:
            child.wait(timeout=5)

    def _configure(self, **changes: Any) -> None:
        router = self.records["router"]
        state = _post_json(router.url + "/router/config", changes)
        self.weight, self.shadow = int(state["weight"]), bool(state["shadow"])
        self._save()

    def _require(self, *roles: str) -> None:
        missing = [r for r in roles if r not in self.records]
        if missing:
            raise ConfigError(
                f"no {' and '.join(missing)} is running here ({self.state_dir / STATE_FILE}); "
                "deploy a stable version first" if "stable" in missing or "router" in missing
                else f"no {' and '.join(missing)} is running here; deploy a canary first"
            )

    # --- the state file ---------------------------------------------------------------------------

    def _load(self) -> None:
        path = self.state_dir / STATE_FILE
        if not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            self.records = {r: ProcessRecord(**v) for r, v in data["processes"].items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a serving state file ({exc}); remove it") from exc
        self.weight, self.shadow = int(data.get("weight", 0)), bool(data.get("shadow", False))

    def _save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / STATE_FILE
        data = {
            "weight": self.weight,
            "shadow": self.shadow,
            "processes": {role: asdict(r) for role, r in self.records.items()},
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(path)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _default_starter(log_dir: Path) -> ServerStarter:
    from kuberec.serving.server import start_server

    def starter(reference: str, port: int, host: str) -> subprocess.Popen:
        log_dir.mkdir(parents=True, exist_ok=True)
        return start_server(reference, port=port, host=host, log_path=log_dir / f"{port}.log")

    return starter


def _wait_ready(url: str, process: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServingError(f"the process behind {url} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.25)
    raise ServingError(f"{url} was not ready within {timeout_s:.0f} s")


def _post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url}: {exc.read().decode(errors='replace')}") from exc
    except OSError as exc:
        raise ServingError(f"cannot reach the router at {url}: {exc}") from exc


def _get_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except OSError as exc:
        raise ServingError(f"cannot reach the router at {url}: {exc}") from exc


def _cmdline(pid: int) -> str:
    """The process's command line ('' when gone); compared before any signal."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process, and its group when it leads one (``bentoml serve`` has workers)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
