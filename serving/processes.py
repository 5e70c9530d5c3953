"""Finding and stopping server processes, including the ones that escaped their parent.

``bentoml serve`` starts its workers in sessions of their own, so neither its
process group nor, once the arbiter is gone (``kill -9``), its process tree
reaches them: an orphaned worker keeps answering on the old port. Every
process kuberec starts for a job's serving therefore carries two environment
variables, which children inherit and a process cannot drop from
``/proc/<pid>/environ``: :data:`JOB_ENV` (the job's serving directory) and
:data:`ID_ENV` (one server). Stopping a server, or everything a job ever
started, is a scan for those markers plus the process tree; each pid is
signalled only while its start time is the one first seen, so a recycled pid
is never touched.

The helpers every caller of a server needs live here once too: a free port
(:func:`free_port`, :func:`port_free`), waiting for an answer
(:func:`wait_ready`, :func:`answers`), whether a pid runs (:func:`pid_exists`),
and the one :class:`~kuberec.errors.ServingError` they raise.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from kuberec.errors import ServingError

#: The job's serving directory, in the environment of every process started for it.
JOB_ENV = "KUBEREC_SERVING_JOB"
#: One server (or the router), in the environment of it and all its workers.
ID_ENV = "KUBEREC_SERVING_ID"


class SurvivorsError(OSError):
    """Processes survived SIGKILL (they belong to another user or are stuck in the kernel)."""


def markers(job: str | Path, process_id: str) -> dict[str, str]:
    """The environment that makes a process findable by :func:`marked`."""
    return {JOB_ENV: str(job), ID_ENV: process_id}


def cmdline(pid: int) -> str:
    """The process's command line ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def start_time(pid: int) -> str:
    """Start time since boot ('' when gone): tells a process from a later one with its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    return fields[19]


def alive(pid: int, started: str) -> bool:
    """Running (not a zombie, which holds no resources) and still the process we saw."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and fields[19] == started


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from ``/proc``), parents first."""
    children: dict[int, list[int]] = {}
    for child in _pids():
        try:
            stat = Path(f"/proc/{child}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(child)
    tree, queue = [], [pid]
    while queue:
        current = queue.pop(0)
        tree.append(current)
        queue.extend(children.get(current, []))
    return tree


def marked(name: str, value: str) -> list[int]:
    """Processes of this user whose environment sets ``name=value``, oldest pid first."""
    needle = f"{name}={value}".encode()
    found = []
    for pid in _pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:  # gone, or another user's
            continue
        if needle in environ.split(b"\0"):
            found.append(pid)
    return sorted(found)


def snapshot(pids: Iterable[int]) -> dict[int, str]:
    """``{pid: start time}`` of those still running, to signal them safely later."""
    found = {pid: start_time(pid) for pid in pids}
    return {pid: started for pid, started in found.items() if started}


def terminate(targets: dict[int, str], timeout_s: float = 15.0) -> None:
    """TERM every target (and the group of each group leader), KILL what is left after
    ``timeout_s``; when this returns none of them runs."""
    for pid, started in targets.items():
        if alive(pid, started):
            _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(alive(p, s) for p, s in targets.items()):
        time.sleep(0.05)
    for pid, started in targets.items():  # parents first: an arbiter before its workers
        if alive(pid, started):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while any(alive(p, s) for p, s in targets.items()):
        if time.monotonic() > deadline:
            left = sorted(p for p, s in targets.items() if alive(p, s))
            raise SurvivorsError(f"processes survived SIGKILL: {left}")
        time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process, and its group when it leads one (``bentoml serve`` has workers)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts; a zombie too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port`` (reusing addresses, as aiohttp does)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 within two seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(
    url: str,
    timeout: float = 120.0,
    *,
    process: subprocess.Popen[bytes] | None = None,
    probe: str = "/readyz",
) -> None:
    """Poll ``url`` + ``probe`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    target = url.rstrip("/") + probe
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServingError(
                f"the server for {url} exited with status {process.returncode}{_log_tail(process)}"
            )
        if answers(target):
            return
        time.sleep(0.25)
    raise ServingError(
        f"{url} was not ready after {timeout:.0f}s"
        f"{_log_tail(process) if process is not None else ''}"
    )


def _log_tail(process: subprocess.Popen[bytes] | None, lines: int = 20) -> str:
    """The last lines of the log :func:`~kuberec.serving.server.start_server` attached."""
    path = getattr(process, "log_path", None)
    if path is None or not Path(path).exists():
        return ""
    tail = Path(path).read_text(errors="replace").splitlines()[-lines:]
    return "; last log lines:\n" + "\n".join(tail)
