"""The processes behind a local rollout: how they start, how they are recorded, how they stop.

:class:`~kuberec.serving.canary.local.LocalRollout` decides which servers run
and with what weight; this module is the process side of it: a
:class:`ProcessRecord` per process (enough to find it again and to stop only
it), the state file they are kept in (``serving.json``, and ``servers.json``,
the router's list of allowed backends, written atomically), the default
server starter, the router's command line, and the router's admin calls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kuberec.components.datasets.atomic import atomic_path
from kuberec.errors import ConfigError, ServingError
from kuberec.serving.canary.admin import TOKEN_FILE, bearer
from kuberec.serving.processes import SurvivorsError, cmdline, terminate

STATE_FILE = "serving.json"
#: The JSON list of the job's server URLs: the only backends the router accepts.
SERVERS_FILE = "servers.json"
#: ``(reference, port, host, env)``: start a server with ``env`` added to its environment
#: (the job's markers), in a session of its own; returns at once.
ServerStarter = Callable[[str, int, str, Mapping[str, str]], subprocess.Popen]


@dataclass
class ProcessRecord:
    """One process this manager started: enough to find it again and to stop only it."""

    role: str  # router | stable | canary
    pid: int
    port: int
    url: str
    cmdline: str
    reference: str | None = None
    #: ``$KUBEREC_SERVING_ID`` of the process and all its workers ('' in older state files)
    tag: str = ""

    def alive(self) -> bool:
        return cmdline(self.pid) == self.cmdline


@dataclass
class RolloutFile:
    """What ``serving.json`` holds: the processes by role, every server spawned, the split."""

    records: dict[str, ProcessRecord]
    servers: dict[str, ProcessRecord]
    weight: int = 0
    shadow: bool = False


def load_state(state_dir: Path) -> RolloutFile | None:
    """The state file in ``state_dir``; None when there is none."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        records = {r: ProcessRecord(**v) for r, v in data["processes"].items()}
        servers = [ProcessRecord(**v) for v in data.get("servers", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a serving state file ({exc}); remove it") from exc
    return RolloutFile(records, {r.tag: r for r in servers},
                       int(data.get("weight", 0)), bool(data.get("shadow", False)))  # fmt: skip


def save_state(state_dir: Path, state: RolloutFile) -> None:
    """Write ``serving.json`` and the router's ``servers.json``, each in one rename."""
    state_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "weight": state.weight,
        "shadow": state.shadow,
        "processes": {role: asdict(r) for role, r in state.records.items()},
        "servers": [asdict(r) for r in state.servers.values()],
    }
    _write(state_dir / STATE_FILE, json.dumps(data, indent=2))
    urls = sorted({r.url for r in [*state.servers.values(), *state.records.values()]
                   if r.role != "router"})  # fmt: skip
    _write(state_dir / SERVERS_FILE, json.dumps(urls))


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as staged:
        staged.write_text(text)


def default_starter(log_dir: Path) -> ServerStarter:
    """``serving/server.py``'s :func:`start_server`, logging to ``log_dir/<port>.log``."""
    from kuberec.serving.server import start_server

    def starter(reference: str, port: int, host: str, env: Mapping[str, str]) -> subprocess.Popen:
        log_dir.mkdir(parents=True, exist_ok=True)
        return start_server(reference, port=port, host=host, env=env,
                            log_path=log_dir / f"{port}.log")  # fmt: skip

    return starter


def spawn_router(
    state_dir: Path, host: str, port: int, stable_url: str, env: Mapping[str, str]
) -> subprocess.Popen:
    """Start the canary router in a session of its own (log: ``router.log``); returns at once."""
    log_file = open(state_dir / "router.log", "ab")  # noqa: SIM115 (child keeps it)
    command = [
        sys.executable, "-m", "kuberec.serving.canary.router",
        "--host", host, "--port", str(port), "--stable", stable_url,
        "--token-file", str(state_dir / TOKEN_FILE),
        "--servers-file", str(state_dir / SERVERS_FILE),
    ]  # fmt: skip
    with log_file:
        return subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **env},
        )  # fmt: skip


def terminate_all(targets: dict[int, str], timeout_s: float = 20.0) -> None:
    """:func:`~kuberec.serving.processes.terminate`, a survivor reported as a ServingError."""
    try:
        terminate(targets, timeout_s)
    except SurvivorsError as exc:
        raise ServingError(f"cannot stop the job's servers: {exc}") from None


def post_json(url: str, body: dict[str, Any], token: str) -> dict[str, Any]:
    """An admin call to the router; its refusal is a ConfigError, no answer a ServingError."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **bearer(token)},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url}: {exc.read().decode(errors='replace')}") from exc
    except OSError as exc:
        raise ServingError(f"cannot reach the router at {url}: {exc}") from exc


def get_json(url: str, token: str) -> dict[str, Any]:
    """A read from the router's admin API."""
    request = urllib.request.Request(url, headers=bearer(token))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())
    except OSError as exc:
        raise ServingError(f"cannot reach the router at {url}: {exc}") from exc
