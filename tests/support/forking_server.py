"""A stand-in with the process shape of ``bentoml serve``: a parent and a worker in its own session.

``python tests/support/forking_server.py PORT VERSION``: the parent starts one worker
(``setsid``, as circus does) that serves ``/readyz``, ``/recommend`` and
``/feedback`` on PORT, and waits; on SIGTERM it stops the worker and exits.
Killed with SIGKILL, it leaves the worker serving, an orphan no process tree
reaches: what the serving code must still find and stop.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    version = "v?"

    def do_GET(self) -> None:
        self._answer({"ready": True})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer({"items": [{"item_id": 1, "score": 1.0, "explanation": ""}],
                      "model_version": self.version, "request_id": str(uuid.uuid4()),
                      "fallback": False, "accepted": True})  # fmt: skip

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


def main() -> None:
    if sys.argv[1] == "--worker":
        _Handler.version = sys.argv[3]
        ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), _Handler).serve_forever()
        return
    worker = subprocess.Popen([sys.executable, __file__, "--worker", *sys.argv[1:3]],
                              start_new_session=True)  # fmt: skip

    signal.signal(signal.SIGTERM, lambda *_: worker.terminate())  # then the wait below ends
    worker.wait()


if __name__ == "__main__":
    main()
