"""The local platform's status store: ``<workdir>/status.json``, written atomically.

It also numbers spec generations the way the API server does (a changed spec
is a new generation), so ``observedGeneration`` means the same thing locally.
"""

from __future__ import annotations

import json
from pathlib import Path

from kuberec.components.datasets.atomic import atomic_path
from kuberec.errors import ConfigError
from kuberec.operator.spec import RecommenderJob, spec_hash
from kuberec.operator.status import JobStatus

STATUS_FILE = "status.json"


def load_status(workdir: Path) -> JobStatus | None:
    path = Path(workdir) / STATUS_FILE
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text())
        return JobStatus.model_validate(document["status"])
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"{path} is not a kuberec status file ({exc}); move it away to start this job afresh"
        ) from exc


def save_status(workdir: Path, job: RecommenderJob, status: JobStatus) -> None:
    path = Path(workdir) / STATUS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    generations = _generations(path)
    document = {
        "apiVersion": job.api_version, "kind": job.kind,
        "metadata": {**job.metadata.model_dump(exclude_none=True)},
        "generations": generations,
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }  # fmt: skip
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2))


def with_generation(workdir: Path, job: RecommenderJob) -> RecommenderJob:
    """The job with ``metadata.generation`` numbered by its spec hash (recorded for next time)."""
    path = Path(workdir) / STATUS_FILE
    generations = _generations(path)
    digest = spec_hash(job.spec)
    if digest not in generations:
        generations[digest] = max(generations.values(), default=0) + 1
        if path.exists():
            document = json.loads(path.read_text())
            document["generations"] = generations
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(document, indent=2))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps({"generations": generations, "status": {}}))
    metadata = job.metadata.model_copy(update={"generation": generations[digest]})
    return job.model_copy(update={"metadata": metadata})


def _generations(path: Path) -> dict[str, int]:
    if not path.exists():
        return {}
    try:
        return dict(json.loads(path.read_text()).get("generations", {}))
    except ValueError:
        return {}
