"""Start, wait for and stop ``bentoml serve`` processes that serve a kuberec model.

Used by ``kuberec serve``, the tests, the benchmark and anything else that needs
a server (the canary router runs two). The model reference is resolved here,
once, before the server starts: an artifact URI is imported into the BentoML
store and the server is handed its tag, so the server's workers never
race to import the same file. :func:`wait_ready` and :func:`free_port` are
:mod:`.processes`' (named here too, as the API a server's user needs).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from kuberec.components.package import resolve_model
from kuberec.errors import ConfigError, ServingError
from kuberec.serving.processes import (
    SurvivorsError,
    free_port,
    process_tree,
    snapshot,
    terminate,
    wait_ready,
)

__all__ = ["free_port", "resolve_reference", "start_server", "stop_server", "wait_ready"]

SERVICE = "kuberec.serving.service:Recommender"
#: The environment variable that tells the service which model to load.
MODEL_ENV = "KUBEREC_MODEL"
#: JSON of the job's ``spec.serving.ranking``: the re-ranking the service applies.
RANKING_ENV = "KUBEREC_RANKING"


def resolve_reference(reference: str | Path) -> str:
    """What ``$KUBEREC_MODEL`` gets: a run directory as an absolute path, else a store tag."""
    try:
        packaged = resolve_model(reference)
    except ValueError as exc:  # BentoML's tag parser on a string that is no tag (e.g. a path)
        raise ConfigError(
            f"{reference} is neither a run directory, an exported model file, "
            f"nor a BentoML model tag ({exc})"
        ) from None
    if packaged.metadata.get("run_dir") is not None:
        return str(Path(packaged.metadata["run_dir"]).resolve())
    return packaged.tag


def start_server(
    reference: str | Path,
    port: int = 3000,
    host: str = "127.0.0.1",
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    capture: bool = True,
) -> subprocess.Popen[bytes]:
    """Launch ``bentoml serve`` for the model in its own process group; returns at once.

    Output goes to ``log_path`` (default: a temporary file, ``process.log_path``),
    never to a pipe nobody reads; ``capture=False`` leaves it on this terminal.
    Pair with :func:`wait_ready` and :func:`stop_server`.
    """
    environment = {**os.environ, **(env or {}), MODEL_ENV: resolve_reference(reference)}
    environment.setdefault("OMP_NUM_THREADS", "1")
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--port",
        str(port),
        "--host",
        host,
    ]
    if not capture:
        return _exec_done(subprocess.Popen(command, env=environment, start_new_session=True))
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix=f"kuberec-serve-{port}-", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    with Path(log_path).open("ab") as log:
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    process.log_path = Path(log_path)  # type: ignore[attr-defined]
    return _exec_done(process)


def _exec_done(process: subprocess.Popen[bytes], timeout: float = 2.0) -> subprocess.Popen[bytes]:
    """Return once ``/proc`` shows the child's command line.

    ``Popen`` returns while the kernel may still be setting up the new program
    (its ``/proc/<pid>/cmdline`` reads empty for a moment), and callers that
    record the command line to recognise the process later would record ''.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if Path(f"/proc/{process.pid}/cmdline").read_bytes():
                break
        except OSError:
            break
        time.sleep(0.005)
    return process


def stop_server(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop the server and every process under it; when this returns, none of them runs.

    TERM goes to the server's process group (the arbiter stops its workers
    gracefully); what is still alive after ``timeout`` is KILLed, the arbiter
    first so it cannot respawn a worker. The tree is collected from ``/proc``
    before signalling, because ``bentoml serve`` starts its workers in sessions
    of their own: a group signal misses them, and once the arbiter is gone they
    are reparented and no longer found. Each pid is signalled only while its
    start time is the one collected, so a recycled pid is never touched.
    """
    if process.poll() is not None:
        return
    tree = snapshot(process_tree(process.pid))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree.update(snapshot(process_tree(process.pid)))  # workers started since
    try:
        terminate(tree, timeout_s=0.0)
    except SurvivorsError as exc:
        raise ServingError(f"processes of the server {process.pid} {exc}") from None
    finally:
        process.wait()
