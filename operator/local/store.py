"""The local platform's status store: ``<workdir>/status.json``, written atomically.

Every write is write-then-rename, and the copy it replaces is kept as
``status.json.bak`` first, so a file damaged by hand (or by a disk) is
reported with the backup to restore instead of a traceback, and nothing
already stored is lost. The file also names the job that owns the directory
(``metadata``), which the job-directory check reads (``operator/local/job_dir.py``).

It also numbers spec generations the way the API server does (a changed spec
is a new generation), so ``observedGeneration`` means the same thing locally.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kuberec.api.spec import RecommenderJob, describe_errors, spec_hash
from kuberec.api.status import JobStatus
from kuberec.components.datasets.atomic import atomic_path
from kuberec.errors import ConfigError

STATUS_FILE = "status.json"
BACKUP_FILE = STATUS_FILE + ".bak"


class CorruptStatus(ConfigError):
    """``status.json`` cannot be read as a kuberec status; the message says how to recover."""


def load_status(workdir: Path) -> JobStatus | None:
    path = Path(workdir) / STATUS_FILE
    document = _read(path)
    return None if document is None else _status(path, document)


def stored_job(workdir: Path) -> str | None:
    """The name of the job whose status the directory holds (None: no status yet)."""
    document = _read(Path(workdir) / STATUS_FILE)
    name = ((document or {}).get("metadata") or {}).get("name")
    return name if isinstance(name, str) else None


def save_status(workdir: Path, job: RecommenderJob, status: JobStatus) -> None:
    path = Path(workdir) / STATUS_FILE
    document = {
        "apiVersion": job.api_version, "kind": job.kind,
        "metadata": {**job.metadata.model_dump(exclude_none=True)},
        "generations": _generations(path),
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }  # fmt: skip
    _write(path, document)


def with_generation(workdir: Path, job: RecommenderJob) -> RecommenderJob:
    """The job with ``metadata.generation`` numbered by its spec hash (recorded for next time)."""
    path = Path(workdir) / STATUS_FILE
    document = _read(path) or {"metadata": {"name": job.metadata.name}, "status": {}}
    generations = _generations(path)
    digest = spec_hash(job.spec)
    if digest not in generations:
        generations[digest] = max(generations.values(), default=0) + 1
        _write(path, {**document, "generations": generations})
    metadata = job.metadata.model_copy(update={"generation": generations[digest]})
    return job.model_copy(update={"metadata": metadata})


def _read(path: Path) -> dict[str, Any] | None:
    """The parsed file, None when absent, CorruptStatus when it is not a status document."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"cannot be read: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise _corrupt(path, f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise _corrupt(path, f"a JSON {type(document).__name__}, expected an object")
    for key, kind in (("metadata", dict), ("status", dict), ("generations", dict)):
        if key in document and not isinstance(document[key], kind):
            raise _corrupt(path, f"{key!r} is a {type(document[key]).__name__}, not an object")
    generations = document.get("generations") or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in generations.values()):
        raise _corrupt(path, "'generations' must map spec hashes to integers")
    _status(path, document)  # so that a damaged file is never what the backup keeps
    return document


def _status(path: Path, document: dict[str, Any]) -> JobStatus:
    try:
        return JobStatus.model_validate(document.get("status") or {})
    except ValidationError as exc:
        raise _corrupt(path, "status." + describe_errors(exc)) from exc


def _generations(path: Path) -> dict[str, int]:
    return dict((_read(path) or {}).get("generations") or {})


def _write(path: Path, document: dict[str, Any]) -> None:
    """Back up the current file, then replace it in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with atomic_path(path.with_name(BACKUP_FILE)) as tmp:
            shutil.copyfile(path, tmp)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2))


def _corrupt(path: Path, problem: str) -> CorruptStatus:
    backup = path.with_name(BACKUP_FILE)
    if backup.exists():
        fix = f"restore the previous copy with `mv {backup} {path}`, or move both away"
    else:
        fix = "move it away"
    return CorruptStatus(
        f"{path} is not a kuberec status file ({problem}); {fix} to start this job afresh"
    )
