"""A local HTTP stand-in for the KFP v2beta1 REST API (no KFP server can run here).

It keeps experiments and runs in memory, answers the calls ``kfp.Client``
makes (experiments and runs: create, get, list with a display-name filter),
checks that a submitted run carries the kuberec pipeline spec and its
``job``/``context`` parameters, and lets a test move a run's state or make the
API unavailable (503), the way a real KFP would behave.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PREFIX = "/apis/v2beta1"


class KfpStandIn:
    def __init__(self) -> None:
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.unavailable = False
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> KfpStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_state(self, run_id: str, state: str, *, error: str | None = None,
                  tasks: list[dict[str, str]] | None = None) -> None:  # fmt: skip
        with self._lock:
            run = self.runs[run_id]
            run["state"] = state
            if error:
                run["error"] = {"code": 2, "message": error}
            if tasks is not None:
                run["run_details"] = {"task_details": tasks}

    # --- the API ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Any
               ) -> tuple[int, dict[str, Any]]:  # fmt: skip
        self.requests.append((method, path))
        if self.unavailable:
            return 503, {"error": "unavailable", "code": 14, "message": "KFP is down"}
        with self._lock:
            if path == f"{PREFIX}/healthz":
                return 200, {"multi_user": False}
            if path == f"{PREFIX}/experiments":
                if method == "POST":
                    return 200, self._create_experiment(body)
                return 200, self._list(self.experiments.values(), query, "experiments")
            if path.startswith(f"{PREFIX}/experiments/"):
                found = self.experiments.get(path.rsplit("/", 1)[1])
                return (200, found) if found else (404, {"message": "experiment not found"})
            if path == f"{PREFIX}/runs":
                if method == "POST":
                    return self._create_run(body)
                runs = [
                    r
                    for r in self.runs.values()
                    if r["experiment_id"] in query.get("experiment_id", [r["experiment_id"]])
                ]
                return 200, self._list(runs, query, "runs")
            if path.startswith(f"{PREFIX}/runs/") and path.endswith(":terminate"):
                run_id = path.removeprefix(f"{PREFIX}/runs/").removesuffix(":terminate")
                if run_id not in self.runs:
                    return 404, {"message": "run not found"}
                self.runs[run_id]["state"] = "CANCELED"
                return 200, {}
            if path.startswith(f"{PREFIX}/runs/"):
                found = self.runs.get(path.rsplit("/", 1)[1])
                return (200, found) if found else (404, {"message": "run not found"})
        return 404, {"message": f"no route {method} {path}"}

    def _create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        experiment = {
            "experiment_id": str(uuid.uuid4()), "display_name": body["display_name"],
            "namespace": body.get("namespace", ""), "created_at": _now(),
            "storage_state": "AVAILABLE",
        }  # fmt: skip
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _create_run(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        spec = body.get("pipeline_spec") or {}
        name = spec.get("pipelineInfo", {}).get("name")
        params = body.get("runtime_config", {}).get("parameters", {})
        if name != "kuberec-recommender" or not {"job", "context"} <= set(params):
            return 400, {"message": f"not a kuberec pipeline run (pipeline {name!r}, "
                                    f"parameters {sorted(params)})"}  # fmt: skip
        if body.get("experiment_id") not in self.experiments:
            return 404, {"message": "experiment not found"}
        run = {
            "run_id": str(uuid.uuid4()), "display_name": body["display_name"],
            "experiment_id": body["experiment_id"], "state": "PENDING", "created_at": _now(),
            "runtime_config": body["runtime_config"], "storage_state": "AVAILABLE",
            "pipeline_spec": spec,
        }  # fmt: skip
        self.runs[run["run_id"]] = run
        return 200, run

    @staticmethod
    def _list(items: Any, query: dict[str, list[str]], key: str) -> dict[str, Any]:
        selected = list(items)
        for text in query.get("filter", []):
            for predicate in json.loads(text).get("predicates", []):
                if predicate.get("key") == "display_name":
                    selected = [i for i in selected
                                if i["display_name"] == predicate.get("stringValue")]  # fmt: skip
        return {key: selected, "total_size": len(selected)} if selected else {"total_size": 0}


def _handler(standin: KfpStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self, method: str) -> None:
            parsed = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            status, payload = standin.handle(method, parsed.path, parse_qs(parsed.query), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
