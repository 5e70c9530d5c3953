"""The local platform's serving: BentoML processes behind the canary router, found again by file.

:class:`LocalRollout` starts a stable server (``serving/server.py``) and the
router in front of it, adds a canary, moves the weight, reads each track's
interval metrics from the router, and promotes or rolls back. Every process
it starts is recorded (pid, port, URL, command line) in ``serving.json`` in
the given directory, so a later ``kuberec`` invocation (or the operator's next
reconcile pass) finds the same processes, changes their weights and stops
them.

Every server is recorded the moment it is spawned (``servers`` in the state
file), in a session of its own and with the job's markers in its environment
(:mod:`kuberec.serving.processes`), so :meth:`LocalRollout.stop` and every
redeploy stop the whole tree of every server the job ever started, including
workers whose ``bentoml serve`` parent was killed. After a crash the next call
finds what still runs: a dead router is restarted on its old port (the job's
URL stays) in front of the stable server when that still answers. The
router's admin calls carry the job's token (:mod:`.admin`), and the router
accepts only the URLs in ``servers.json`` as backends. The process side (the
records, the state file, spawning the router, its admin calls) is
:mod:`.local_processes`'; this module decides what runs.

The decisions themselves are :mod:`.analysis`' and :mod:`.steps`'; :meth:`LocalRollout.run_canary`
is the small loop that applies them here (the operator's reconcile loop does
the same one interval per pass).
"""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuberec.errors import ConfigError, ServingError
from kuberec.serving.canary.admin import TOKEN_FILE, read_token, write_token
from kuberec.serving.canary.analysis import VersionMetrics
from kuberec.serving.canary.local_processes import (
    SERVERS_FILE,
    STATE_FILE,
    ProcessRecord,
    RolloutFile,
    ServerStarter,
    default_starter,
    get_json,
    load_state,
    post_json,
    save_state,
    spawn_router,
    terminate_all,
)
from kuberec.serving.canary.metrics import ROUTER, Counters, interval, scrape
from kuberec.serving.canary.steps import (
    RolloutPolicy,
    RolloutState,
    StepDecision,
    evaluate_interval,
    start,
)
from kuberec.serving.processes import (
    ID_ENV,
    JOB_ENV,
    answers,
    cmdline,
    free_port,
    marked,
    markers,
    port_free,
    process_tree,
    snapshot,
    wait_ready,
)

log = logging.getLogger(__name__)


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
        #: every server started and not yet stopped, by tag, recorded the moment it spawns
        self.servers: dict[str, ProcessRecord] = {}
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

        With a router running, the new server replaces the stable one at once
        (no canary): the router switches, then the old server stops. After a
        crash (the router gone), a stable server of ``reference`` that still
        answers is kept, and the new router takes the old one's port when free.
        """
        old = self.records.get("stable")
        router = self.records.get("router")
        reuse = (
            old is not None and old.reference == str(reference) and old.alive()
            and answers(old.url + "/readyz")
            and (router is None or not router.alive())
        )  # fmt: skip
        server = old if reuse else self._start("stable", str(reference))
        assert server is not None
        if router is not None and router.alive():
            self._configure(stable=server.url)
            self.records["stable"] = server
            self._save()
            if old is not None:
                self._stop(old)
            return router.url
        if router is not None:  # dead: whatever is left of it goes, its port is reused
            self._stop(router)
            router_port = router_port or router.port
        try:
            router = self._start_router(server.url, router_port)
        except BaseException:
            if server is not old:
                self._stop(server)
            raise
        stale = [r for r in (old, self.records.get("canary")) if r is not None and r is not server]
        self.records = {"stable": server, "router": router}
        self.weight, self.shadow = 0, False
        self._save()
        for record in stale:
            self._stop(record)
        return router.url

    def deploy_canary(self, reference: str | Path, *, weight: int = 0, shadow: bool = False) -> str:
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
        if "router" in self.records:
            self._configure(canary=None)
        self.weight, self.shadow = 0, False
        self._save()
        if canary is not None:
            self._stop(canary)

    def stop(self) -> None:
        """Stop every process this job started (router first) and forget them.

        The recorded ones, every server recorded at spawn, and then whatever
        still carries the job's marker (an orphaned worker, a server whose
        record a crash lost, the holdout replay): none of them runs afterwards.
        """
        for role in ("router", "canary", "stable"):
            record = self.records.pop(role, None)
            if record is not None:
                self._stop(record, save=False)
        for record in list(self.servers.values()):
            self._stop(record, save=False)
        terminate_all(snapshot(marked(JOB_ENV, self.job_marker)))
        self.weight, self.shadow = 0, False
        for name in (STATE_FILE, SERVERS_FILE):
            (self.state_dir / name).unlink(missing_ok=True)

    @property
    def job_marker(self) -> str:
        """``$KUBEREC_SERVING_JOB`` of this job's processes: its serving directory."""
        return str(self.state_dir.resolve())

    def marker_env(self, process_id: str) -> dict[str, str]:
        """The environment that lets :meth:`stop` find a process started for this job."""
        return markers(self.job_marker, process_id)

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
        return get_json(self.records["router"].url + "/router/shadow", self._token())

    def run_canary(
        self,
        reference: str | Path,
        policy: RolloutPolicy,
        *,
        interval_s: float,
        on_decision: Callable[[StepDecision], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[StepDecision]:
        """Deploy ``reference`` as a canary at the first step, then :meth:`drive` it."""
        self.deploy_canary(reference, weight=policy.steps[0])
        return self.drive(policy, interval_s=interval_s, on_decision=on_decision, sleep=sleep)

    def drive(
        self,
        policy: RolloutPolicy,
        *,
        interval_s: float,
        state: RolloutState | None = None,
        on_decision: Callable[[StepDecision], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[StepDecision]:
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
        decisions: list[StepDecision] = []
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
        starter = self._start_server or default_starter(self.state_dir)
        port = free_port(self.host)
        tag = f"{role}-{uuid.uuid4().hex[:12]}"
        process = starter(reference, port, self.host, self.marker_env(tag))
        self._children[process.pid] = process
        url = f"http://{self.host}:{port}"
        record = ProcessRecord(role, process.pid, port, url, cmdline(process.pid), reference, tag)
        self.servers[tag] = record  # on disk before anything can fail
        self._save()
        try:
            wait_ready(url, self.ready_timeout_s, process=process)
        except BaseException:
            self._stop(record)
            raise
        # /proc can read empty (or the parent's) right after the spawn: once the server answers,
        # its own command line is what later `alive()` checks compare with.
        record.cmdline = cmdline(process.pid)
        self._save()
        return record

    def _start_router(self, stable_url: str, port: int | None) -> ProcessRecord:
        if port is not None and not port_free(self.host, port):
            log.warning("the router's port %d is taken; the job's URL changes", port)
            port = None
        port = port or free_port(self.host)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        token_file = self.state_dir / TOKEN_FILE
        write_token(token_file)  # a fresh token for every router
        self._save()
        tag = f"router-{uuid.uuid4().hex[:12]}"
        process = spawn_router(self.state_dir, self.host, port, stable_url, self.marker_env(tag))
        self._children[process.pid] = process
        url = f"http://{self.host}:{port}"
        record = ProcessRecord("router", process.pid, port, url, cmdline(process.pid), tag=tag)
        try:
            wait_ready(url, 30.0, process=process, probe="/router/metrics")
        except BaseException:
            process.kill()  # our own child: no pid-reuse risk, whatever /proc said
            process.wait(timeout=10)
            raise
        # /proc/<pid>/cmdline can read empty right after fork; by now the router serves
        record.cmdline = cmdline(process.pid)
        return record

    def _restart_router(self) -> ProcessRecord:
        """A router crashed: a new one on its port, in front of the recorded servers."""
        dead, stable = self.records["router"], self.records.get("stable")
        self._require("stable")
        assert stable is not None
        log.warning("the router (pid %d) is gone; starting a new one on port %d",
                    dead.pid, dead.port)  # fmt: skip
        self._stop(dead)
        router = self._start_router(stable.url, dead.port)
        self.records["router"] = router
        self._save()
        canary = self.records.get("canary")
        if canary is not None:
            post_json(router.url + "/router/config", {
                "canary": canary.url, "weight": self.weight, "shadow": self.shadow,
            }, self._token())  # fmt: skip
        return router

    def _stop(self, record: ProcessRecord, timeout_s: float = 20.0, *, save: bool = True) -> None:
        """TERM the process and everything that carries its marker, then KILL what is left.

        ``bentoml serve`` runs its workers in sessions of their own, and once
        its arbiter is killed they are orphans no tree reaches: the marker in
        their environment finds them, alive parent or not.
        """
        child = self._children.pop(record.pid, None)
        targets = snapshot(marked(ID_ENV, record.tag)) if record.tag else {}
        if record.alive():
            targets.update(snapshot(process_tree(record.pid)))
        terminate_all(targets, timeout_s)
        if child is not None:
            child.wait(timeout=5)
        if self.servers.pop(record.tag, None) is not None and save:
            self._save()

    def _configure(self, **changes: Any) -> None:
        router = self.records["router"]
        if not router.alive():
            router = self._restart_router()
        try:
            state = post_json(router.url + "/router/config", changes, self._token())
        except ServingError:
            time.sleep(0.2)
            if router.alive():
                raise
            router = self._restart_router()  # it died just now
            state = post_json(router.url + "/router/config", changes, self._token())
        self.weight, self.shadow = int(state["weight"]), bool(state["shadow"])
        self._save()

    def _token(self) -> str:
        return read_token(self.state_dir / TOKEN_FILE)

    def _require(self, *roles: str) -> None:
        missing = [r for r in roles if r not in self.records]
        if missing:
            raise ConfigError(
                f"no {' and '.join(missing)} is running here ({self.state_dir / STATE_FILE}); "
                "deploy a stable version first"
                if "stable" in missing or "router" in missing
                else f"no {' and '.join(missing)} is running here; deploy a canary first"
            )

    # --- the state file ---------------------------------------------------------------------------

    def _load(self) -> None:
        state = load_state(self.state_dir)
        if state is not None:
            self.records, self.servers = state.records, state.servers
            self.weight, self.shadow = state.weight, state.shadow

    def _save(self) -> None:
        state = RolloutFile(self.records, self.servers, self.weight, self.shadow)
        save_state(self.state_dir, state)
