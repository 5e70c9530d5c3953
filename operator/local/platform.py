"""The local (embedded) platform: kfp.local pipeline runs and BentoML processes on this machine.

It implements what the reconcile loop needs from a platform: ``observe`` (the
data, the pipeline run launched under a key, what serves) and ``execute`` (one
action, idempotently). Everything lives under the job's workdir, so a second
``kuberec run`` finds the runs and servers the first one left::

    WORKDIR/
      status.json            the job's status (operator/local/store.py)
      data/                  the Feast repo and sources
      artifacts/             exported models and run results (the artifact store)
      runs/<key>/            job.json, context.json, pipeline.log, events.jsonl, pid, exit
      pipeline-root/         kfp.local outputs
      serving/               serving.json (processes) and window snapshots
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.feedback import fingerprint, sink_uri, with_feedback
from kuberec.components.datasets.sources import load_source
from kuberec.components.evaluation import split
from kuberec.components.package import dataset_digest
from kuberec.operator.actions import (
    Action,
    DeployStable,
    LaunchRun,
    PauseServing,
    Promote,
    Rollback,
    SetWeight,
    StartCanary,
)
from kuberec.operator.observations import (
    DataObservation,
    Observations,
    RunObservation,
    ServingObservation,
)
from kuberec.pipelines.context import RunContext, job_json, local_path, run_result_uri
from kuberec.serving.canary.metrics import Counters
from kuberec.serving.processes import pid_exists

RUN_FILES = ("job.json", "context.json")


class LocalPlatform:
    """State is real here (child processes, a cached data digest), hence a class."""

    def __init__(
        self, workdir: Path, *, data_dir: Path | None = None, base: Path = Path("."),
        serve: bool = True, replay_rate: float = 20.0,
    ) -> None:  # fmt: skip
        self.workdir = Path(workdir).resolve()
        self.data_dir = Path(data_dir).resolve() if data_dir else None
        self.base = Path(base).resolve()
        self.serve = serve
        self.replay_rate = replay_rate  # canary traffic from the holdout; 0: real traffic only
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._data: tuple[str, Dataset, DataObservation] | None = None
        self._rollout: Any = None
        self._ranking = "{}"  # $KUBEREC_RANKING of the servers started next: the job's
        self._feedback: tuple[Any, str | None] = (None, None)  # spec.feedback, its sink

    @property
    def artifact_root(self) -> str:
        return (self.workdir / "artifacts").as_uri()

    # --- observe ---------------------------------------------------------------------------------

    def observe(self, job: RecommenderJob, status: JobStatus) -> Observations:
        run = None
        if status.pipeline_run is not None:
            run = self.observe_run(job, status.pipeline_run.key)
        return Observations(
            now=datetime.now(UTC),
            data=self.observe_data(job),
            run=run,
            serving=self.observe_serving(status),
        )

    def observe_data(self, job: RecommenderJob) -> DataObservation:
        """The data's digest, computed once per data spec in this process."""
        return self._dataset(job)[1]

    def _dataset(self, job: RecommenderJob) -> tuple[Dataset, DataObservation]:
        # the feedback sink grows while serving: its fingerprint is part of the data's
        key = job.spec.data.model_dump_json() + fingerprint(sink_uri(job.spec, self.base))
        if self._data is None or self._data[0] != key:
            dataset = load_source(job.spec.data, data_dir=self.data_dir, base=self.base)
            dataset = with_feedback(dataset, job.spec, self.base)
            observed = DataObservation(dataset_digest(dataset), len(dataset.interactions))
            self._data = (key, dataset, observed)
        return self._data[1], self._data[2]

    def observe_run(self, job: RecommenderJob, key: str) -> RunObservation | None:
        folder = self._run_dir(key)
        if not (folder / "pid").exists():
            return None
        log = str(folder / "pipeline.log")
        events = read_events(folder / "events.jsonl")
        step = events[-1]["step"] if events else None
        code = self._exit_code(key, folder)
        if code is None:
            return RunObservation(key, key, "Running", step=step, log=log)
        failed = next((e for e in reversed(events) if e["state"] == "failed"), None)
        result_path = local_path(run_result_uri(self.artifact_root, job, key))
        if code == 0 and result_path.exists():
            result = json.loads(result_path.read_text())
            return RunObservation(key, key, "Succeeded", log=log, result=result)
        if failed is not None:
            return RunObservation(key, key, "Failed", step=failed["step"],
                                  message=failed.get("reason"), log=log)  # fmt: skip
        reason = f"the pipeline process exited with status {code} before any step failed"
        return RunObservation(key, key, "Failed", step=step, message=reason, log=log)

    def observe_serving(self, status: JobStatus) -> ServingObservation:
        if not self.serve:
            return ServingObservation(enabled=False)
        rollout = self._serving()
        records = rollout.records
        stable, canary = records.get("stable"), records.get("canary")
        alive = [r for r in (records.get("router"), stable, canary) if r is not None]
        healthy = bool(alive) and all(r.alive() for r in alive)
        traffic = {}
        if status.rollout is not None and canary is not None and healthy:
            traffic = self._window_traffic(status.rollout.window_started_at)
        return ServingObservation(
            enabled=True,
            stable=stable.reference if stable and stable.alive() else None,
            canary=canary.reference if canary and canary.alive() else None,
            weight=rollout.weight,
            url=rollout.url,
            healthy=healthy,
            traffic=traffic,
        )

    # --- act -------------------------------------------------------------------------------------

    def execute(self, job: RecommenderJob, action: Action) -> None:
        self._ranking = job.spec.serving.ranking.to_json()
        self._feedback = job.spec.feedback, sink_uri(job.spec, self.base)
        if isinstance(action, LaunchRun):
            self.launch(job, action)
        elif not self.serve or isinstance(action, PauseServing):
            return
        elif isinstance(action, DeployStable):
            self._serving().deploy_stable(action.model.version)
        elif isinstance(action, StartCanary):
            shadow = job.spec.serving.canary.shadow
            self._serving().deploy_canary(action.model.version, weight=action.weight,
                                          shadow=shadow)  # fmt: skip
            self._start_replay(job)
        elif isinstance(action, SetWeight):
            self._serving().set_weight(action.weight)
        elif isinstance(action, Promote):
            self._stop_replay()
            self._serving().promote()
        elif isinstance(action, Rollback):
            self._stop_replay()
            self._serving().rollback()

    def launch(self, job: RecommenderJob, action: LaunchRun) -> None:
        """Start the pipeline for ``action.key`` unless a process for that key already exists."""
        folder = self._run_dir(action.key)
        if (folder / "pid").exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        context = RunContext(
            run_id=f"{job.metadata.name}-{action.key}",
            run_key=action.key,
            artifact_root=self.artifact_root,
            feature_store_dir=str(self.workdir / "data"),
            champion_uri=action.champion_uri,
            data_dir=str(self.data_dir or ""),
            base=str(self.base),
            events=str(folder / "events.jsonl"),
        )
        (folder / "job.json").write_text(job_json(job))
        (folder / "context.json").write_text(context.to_json())
        command = [
            sys.executable, "-m", "kuberec.pipelines.local_run",
            str(folder / "job.json"), str(folder / "context.json"),
            str(self.workdir / "pipeline-root"), "--exit-file", str(folder / "exit"),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")
        with (folder / "pipeline.log").open("ab") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env,
                cwd=self.workdir, start_new_session=True,
            )  # fmt: skip
        self._children[action.key] = process
        (folder / "pid").write_text(str(process.pid))

    def stop_serving(self) -> None:
        if self.serve:
            self._stop_replay()
            self._serving().stop()

    def _start_replay(self, job: RecommenderJob) -> None:
        """Replay the evaluation holdout through the router: the canary's online signal here.

        On a cluster real users provide it; on one machine nobody would, and a
        canary would hold forever. The holdout is the newest part of the data
        neither model trained on, so its clicks are an honest signal.
        It is marked synthetic: the servers count it but neither push nor store
        it, so a job that trains on its feedback settles instead of retraining
        on its own canary's clicks.
        """
        if self.replay_rate <= 0 or _alive_pid(self._replay_pid_file):
            return
        dataset, _ = self._dataset(job)
        evaluation = job.spec.evaluation
        held_out = split(evaluation.protocol, dataset.interactions, seed=evaluation.seed).test
        folder = self.workdir / "serving"
        held_out[["user_id", "item_id"]].to_parquet(folder / "holdout.parquet", index=False)
        command = [
            sys.executable, "-m", "kuberec", "replay", str(self._serving().url),
            "--interactions", str(folder / "holdout.parquet"), "--rate", str(self.replay_rate),
            "--k", str(evaluation.k), "--limit", "100000000", "--synthetic",
        ]  # fmt: skip
        env = {**os.environ, **self._serving().marker_env("replay")}  # `kuberec stop` ends it
        with (folder / "replay.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, start_new_session=True)  # fmt: skip
        self._children["replay"] = process
        self._replay_pid_file.write_text(str(process.pid))

    def _stop_replay(self) -> None:
        path = self._replay_pid_file
        if not path.exists():
            return
        pid = int(path.read_text())
        if pid_exists(pid):
            os.killpg(pid, signal.SIGTERM)
        child = self._children.pop("replay", None)
        if child is not None:
            child.wait(timeout=10)
        path.unlink(missing_ok=True)

    @property
    def _replay_pid_file(self) -> Path:
        return self.workdir / "serving" / "replay.pid"

    # --- helpers ---------------------------------------------------------------------------------

    def _run_dir(self, key: str) -> Path:
        return self.workdir / "runs" / key

    def _exit_code(self, key: str, folder: Path) -> int | None:
        child = self._children.get(key)
        if child is not None and child.poll() is None:
            return None
        if (folder / "exit").exists():
            return int((folder / "exit").read_text().strip() or 1)
        if child is not None:
            return child.returncode
        pid = int((folder / "pid").read_text())
        return None if pid_exists(pid) else -1

    def _serving(self) -> Any:
        if self._rollout is None:
            from kuberec.serving.canary.local import LocalRollout

            self._rollout = LocalRollout(self.workdir / "serving", start_server=self._start_server)
        return self._rollout

    def _start_server(
        self, reference: str, port: int, host: str, markers: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        """A server reading fresh user histories from this job's Feast online store,
        re-ranking as the job's ``spec.serving.ranking`` says."""
        from kuberec.serving.feedback_settings import feedback_env
        from kuberec.serving.online_features import FEAST_REPO_ENV
        from kuberec.serving.server import RANKING_ENV, start_server

        logs = self.workdir / "serving"
        logs.mkdir(parents=True, exist_ok=True)
        env = {**markers, FEAST_REPO_ENV: str(self.workdir / "data" / "feature_repo"),
               RANKING_ENV: self._ranking, **feedback_env(*self._feedback)}  # fmt: skip
        return start_server(reference, port=port, host=host, env=env,
                            log_path=logs / f"server-{port}.log")  # fmt: skip

    def _window_traffic(self, window: str) -> dict[str, Any]:
        """Per-version metrics since ``window``: router counters now minus at the window start."""
        rollout = self._serving()
        snapshots = self.workdir / "serving" / "windows.json"
        saved = json.loads(snapshots.read_text()) if snapshots.exists() else {}
        now = rollout.snapshot()
        if window not in saved:  # the window starts at its first observation
            saved = {window: {name: c.to_dict() for name, c in now.items()}}
            snapshots.write_text(json.dumps(saved))
        before = {name: Counters.from_dict(c) for name, c in saved[window].items()}
        canary, stable = rollout.interval_metrics(before, now)
        return {"canary": canary, "stable": stable}


def read_events(path: Path) -> list[dict[str, Any]]:
    """A run's step events (``runs/<key>/events.jsonl``), oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _alive_pid(path: Path) -> bool:
    return path.exists() and pid_exists(int(path.read_text()))
