"""Cluster submission through ``kfp.Client``: an experiment per job, a run per run key.

The display name of a run is ``<job>-<key>``; before creating one, the
experiment is searched for that name, so submitting the same key twice (an
operator restart between submit and status patch) returns the existing run.
Once a run succeeded, its result is the ``result.json`` the package step wrote
to the artifact store (read through fsspec: ``s3://``, ``gs://``, ``file://``).
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import fsspec

from kuberec.api.spec import RecommenderJob
from kuberec.errors import KuberecError
from kuberec.operator.kubernetes.manifests import feast_store_env
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.operator.observations import RunObservation
from kuberec.pipelines.compile import compile_pipeline
from kuberec.pipelines.context import RunContext, job_json, run_result_uri

RUNNING = {"RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "PAUSED", "CANCELING"}
SUCCEEDED = {"SUCCEEDED", "SKIPPED"}


class KfpUnavailable(KuberecError):
    """The KFP API did not answer; the operator retries with backoff."""


def experiment_name(job: RecommenderJob) -> str:
    return f"kuberec-{job.metadata.namespace}-{job.metadata.name}"


def run_name(job: RecommenderJob, key: str) -> str:
    return f"{job.metadata.name}-{key}"


class KfpRuns:
    """Holds one ``kfp.Client`` (a connection pool and auth state) for many jobs."""

    def __init__(self, host: str, *, artifact_root: str, namespace: str | None = None,
                 existing_token: str | None = None,
                 settings: ClusterSettings | None = None) -> None:  # fmt: skip
        import warnings

        from kfp import Client

        self.artifact_root = artifact_root
        self.namespace = namespace
        self.settings = settings or ClusterSettings()  # the Feast stores the steps fill
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            self.client = Client(host=host, namespace=namespace or "kubeflow",
                                 existing_token=existing_token)  # fmt: skip
        self.host = host

    def submit(self, job: RecommenderJob, context: RunContext) -> str:
        """The run id for ``context.run_key``: the existing run's, or a new run's."""
        experiment = self._call(self.client.create_experiment, experiment_name(job),
                                namespace=self.namespace)  # fmt: skip
        existing = self._find(experiment.experiment_id, run_name(job, context.run_key))
        if existing is not None:
            return str(existing.run_id)
        with tempfile.TemporaryDirectory() as tmp:
            package = compile_pipeline(job, Path(tmp) / "pipeline.yaml",
                                       env=feast_store_env(job, self.settings))  # fmt: skip
            run = self._call(
                self.client.run_pipeline,
                experiment_id=experiment.experiment_id,
                job_name=run_name(job, context.run_key),
                pipeline_package_path=str(package),
                params={"job": job_json(job), "context": context.to_json()},
                enable_caching=False,
            )
        return str(run.run_id)

    def observe(self, job: RecommenderJob, key: str) -> RunObservation | None:
        experiment = self._call(self.client.create_experiment, experiment_name(job),
                                namespace=self.namespace)  # fmt: skip
        run = self._find(experiment.experiment_id, run_name(job, key))
        if run is None:
            return None
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        step = _current_step(run)
        if state in RUNNING:
            return RunObservation(key, str(run.run_id), "Running", step=step)
        if state in SUCCEEDED:
            result = _read_json(run_result_uri(self.artifact_root, job, key))
            if result is None:
                missing = "the run succeeded but left no result.json"
                return RunObservation(key, str(run.run_id), "Failed", step="package",
                                      message=missing)  # fmt: skip
            return RunObservation(key, str(run.run_id), "Succeeded", result=result)
        message = _error_message(run) or f"run ended {state}"
        return RunObservation(key, str(run.run_id), "Failed", step=_failed_step(run) or step,
                              message=message)  # fmt: skip

    def cancel(self, job: RecommenderJob, key: str) -> bool:
        """Terminate the run for ``key`` if it is still running; True when one was stopped."""
        experiment = self._call(self.client.create_experiment, experiment_name(job),
                                namespace=self.namespace)  # fmt: skip
        run = self._find(experiment.experiment_id, run_name(job, key))
        if run is None or str(run.state) not in RUNNING:
            return False
        self._call(self.client.terminate_run, str(run.run_id))
        return True

    def _find(self, experiment_id: str, name: str) -> Any:
        flt = json.dumps({"predicates": [
            {"operation": "EQUALS", "key": "display_name", "stringValue": name}
        ]})  # fmt: skip
        listed = self._call(self.client.list_runs, experiment_id=experiment_id, filter=flt,
                            page_size=10)  # fmt: skip
        runs = [r for r in (listed.runs or []) if r.display_name == name]
        return runs[0] if runs else None

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        from kfp_server_api.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            with contextlib.redirect_stdout(io.StringIO()):  # kfp prints UI links
                return method(*args, **kwargs)
        except (HTTPError, OSError) as exc:
            raise KfpUnavailable(f"KFP API at {self.host} is unreachable: {exc}") from exc
        except ApiException as exc:
            if exc.status is not None and (exc.status >= 500 or exc.status == 429):
                raise KfpUnavailable(f"KFP API at {self.host} answered {exc.status}") from exc
            raise KuberecError(f"KFP API refused the request ({exc.status}): {exc.body}") from exc


def _read_json(uri: str) -> dict[str, Any] | None:
    try:
        with fsspec.open(uri, "r") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def _tasks(run: Any) -> list[Any]:
    details = getattr(run, "run_details", None)
    return list(getattr(details, "task_details", None) or [])


def _current_step(run: Any) -> str | None:
    running = [t for t in _tasks(run) if str(t.state) == "RUNNING"]
    return str(running[-1].display_name) if running else None


def _failed_step(run: Any) -> str | None:
    failed = [t for t in _tasks(run) if str(t.state) in ("FAILED", "ERROR")]
    return str(failed[0].display_name) if failed else None


def _error_message(run: Any) -> str | None:
    error = getattr(run, "error", None)
    return str(error.message) if error is not None and getattr(error, "message", None) else None
