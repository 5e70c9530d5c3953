"""What every pipeline step gets besides its artifacts: the job and where things go.

Both travel as JSON strings (KFP parameters are strings, numbers and dicts);
the job is validated again inside each step, so a step never trusts its input.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from kuberec.api.spec import RecommenderJob


@dataclass(frozen=True)
class RunContext:
    run_id: str  # the pipeline run's id (lineage)
    run_key: str  # idempotency key: same key, same result
    artifact_root: str  # file:///... locally, s3://... or gs://... in a cluster
    feature_store_dir: str  # the job's Feast repo and sources
    champion_uri: str = ""  # the serving model's exported artifact; "" when none
    data_dir: str = ""  # MovieLens copies (no download) when set
    base: str = ""  # relative data URIs resolve against this (the job file's folder)
    events: str = ""  # local platform: a JSONL file the operator tails for step progress
    ray_address: str = ""  # the Ray cluster to train on; "" -> spec.training.rayAddress or local

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunContext:
        return cls(**json.loads(text))

    def result_uri(self, job: RecommenderJob) -> str:
        """Where the package step leaves the run's result for the operator to read."""
        return run_result_uri(self.artifact_root, job, self.run_key)


def run_result_uri(artifact_root: str, job: RecommenderJob, run_key: str) -> str:
    return f"{artifact_root.rstrip('/')}/{job.metadata.namespace}/{job.metadata.name}/runs/{run_key}/result.json"  # noqa: E501


def job_json(job: RecommenderJob) -> str:
    return job.model_dump_json(by_alias=True, exclude_none=True, exclude={"status"})


def parse_job(text: str) -> RecommenderJob:
    return RecommenderJob.model_validate_json(text)


def local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))
