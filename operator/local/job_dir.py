"""One owner per job directory: an exclusive lock, and the job the directory belongs to.

Two ``kuberec run`` on one ``--workdir`` would both reconcile, train and deploy
(two server sets, one of them untracked); a job run into another job's
directory would replace that job's champion. ``claim`` refuses both: it takes
an ``flock`` on ``<workdir>/.lock`` (released by the kernel when the holder
exits, even by ``kill -9``, so a crash never leaves a stale lock) and checks
that ``status.json`` names this job. Child processes (pipeline, servers) do
not inherit the lock: Python opens files non-inheritable.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kuberec.api.spec import RecommenderJob
from kuberec.errors import ConfigError
from kuberec.operator.local.store import stored_job

LOCK_FILE = ".lock"
_WAIT_POLL_S = 0.5


class JobDirectoryBusy(ConfigError):
    """Another process holds the job directory's lock."""


class ForeignJobDirectory(ConfigError):
    """The directory holds another job's state."""


@contextmanager
def claim(workdir: Path, job: RecommenderJob, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold ``workdir`` for ``job`` for the duration; wait up to ``wait_s`` for another holder."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, path, wait_s)
        check_owner(workdir, job.metadata.name)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {job.metadata.name}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_owner(workdir: Path, name: str) -> None:
    """Refuse a directory whose status belongs to a job of another name."""
    owner = stored_job(workdir)
    if owner is not None and owner != name:
        raise ForeignJobDirectory(
            f"{workdir} holds the job {owner!r}, not {name!r}; run {name!r} with another "
            f"--workdir (default .kuberec/{name}), or `kuberec stop {owner} --workdir {workdir}` "
            "and remove the directory to reuse it"
        )


def _lock(fd: int, path: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(_WAIT_POLL_S)
    holder = _holder(path)
    waited = f" after waiting {wait_s:.0f}s" if wait_s > 0 else ""
    raise JobDirectoryBusy(
        f"{path.parent} is in use by {holder}{waited}; wait for it to finish, stop it, "
        "or pass --wait to queue behind it"
    )


def _holder(path: Path) -> str:
    """``pid N (job NAME)`` from the lock file, as the holder wrote it."""
    try:
        pid, _, name = path.read_text().strip().partition(" ")
    except OSError:
        return "another kuberec run"
    if not pid.isdigit():
        return "another kuberec run"
    return f"kuberec run pid {pid}" + (f" (job {name})" if name else "")
