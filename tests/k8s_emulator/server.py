"""HTTP front of the emulator: the real API server's URL layout over the Store.

A ThreadingHTTPServer on loopback speaks HTTP/1.1 with keep-alive (the kubernetes
client and aiohttp pool connections) and streams watches as chunked JSON lines.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from . import errors
from .errors import ApiError
from .faults import FaultRule, Faults
from .kubeconfig import write_kubeconfig
from .resources import ResourceType
from .selectors import field_selector, label_selector
from .store import Store

VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0-kuberec-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-01-01T00:00:00Z",
    "goVersion": "go1.22",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Route:
    """A parsed resource URL."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass(frozen=True)
class RequestRecord:
    """What the emulator saw, for tests that assert on the client's traffic."""

    method: str
    path: str
    query: dict[str, str]
    verb: str
    resource: str | None
    body: Any


def parse_route(parts: list[str]) -> Route | None:
    """Split `/api/v1/...` or `/apis/g/v/...` (already split on '/') into a Route."""
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    return Route(group, version, rest[0], namespace, *[*rest[1:], None, None][:2])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], emulator: KubeEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read records
        pass

    def setup(self) -> None:
        super().setup()
        self.server.emulator._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.emulator._connections.discard(self.connection)

    # -- plumbing ----------------------------------------------------------------------

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return None
        raw = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "")
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body is not valid JSON: {exc}") from exc

    def _handle(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        emulator = self.server.emulator
        try:
            body = self._read_body()
            parts = [p for p in url.path.split("/") if p]
            route = parse_route(parts)
            verb = self._verb(route, query)
            emulator._record(
                RequestRecord(
                    self.command, url.path, query, verb, route.plural if route else None, body
                )
            )
            fault = emulator.faults.take(
                verb, route.group if route else None, route.plural if route else None
            )
            if fault is not None:
                raise fault
            if route is None:
                self._send_json(200, self._meta(parts))
            else:
                self._resource(route, verb, query, body)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # an emulator bug must reach the test as a 500, not a hang
            self._send_json(500, errors.internal(f"emulator error: {exc!r}").status())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def _verb(self, route: Route | None, query: dict[str, str]) -> str:
        method = self.command
        if route is None:
            return "discovery"
        if method == "GET":
            if route.name:
                return "get"
            return "watch" if query.get("watch", "").lower() in ("true", "1") else "list"
        if method == "DELETE" and not route.name:
            return "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
            method, method.lower()
        )

    # -- discovery ---------------------------------------------------------------------

    def _meta(self, parts: list[str]) -> Any:
        registry = self.server.emulator.store.registry
        with self.server.emulator.store._cond:
            if parts == ["version"]:
                return VERSION
            if parts in (["healthz"], ["livez"], ["readyz"]):
                return "ok"
            if parts == ["api"]:
                return registry.api_versions()
            if parts == ["apis"]:
                return registry.api_group_list()
            if parts == ["api", "v1"]:
                found = registry.resource_list("", "v1")
            elif parts[:1] == ["apis"] and len(parts) == 2:
                found = registry.api_group(parts[1])
            elif parts[:1] == ["apis"] and len(parts) == 3:
                found = registry.resource_list(parts[1], parts[2])
            else:
                found = None
        if found is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return found

    # -- resources ---------------------------------------------------------------------

    def _resource(self, route: Route, verb: str, query: dict[str, str], body: Any) -> None:
        store = self.server.emulator.store
        with store._cond:
            rt = store.registry.find(route.group, route.version, route.plural)
        if rt is None or (route.namespace and not rt.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.subresource and not (route.subresource == "status" and rt.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = route.namespace if rt.namespaced else None
        options = {
            "dry_run": query.get("dryRun") == "All",
            "strict": query.get("fieldValidation") == "Strict",
        }
        warnings: list[str] = []
        name, sub = route.name, route.subresource
        selector = self._predicate(query)
        if verb == "watch":
            self._watch(store, rt, namespace, query)
            return
        if verb in ("create", "update", "patch") and not isinstance(body, dict | list):
            raise errors.bad_request("a request body is required")
        if rt.namespaced and verb in ("create",) and not namespace:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        code = 200
        if verb == "get":
            result = store.get(rt, namespace, name)  # type: ignore[arg-type]
        elif verb == "list":
            result = store.list(rt, namespace, selector)
        elif verb == "create":
            result = store.create(rt, namespace, body, warnings=warnings, **options)
            code = 201
        elif verb == "update":
            result = store.replace(
                rt,
                namespace,
                name,
                body,
                subresource=sub,  # type: ignore[arg-type]
                warnings=warnings,
                **options,
            )
        elif verb == "patch":
            content_type = self.headers.get("Content-Type", "application/merge-patch+json")
            result = store.patch(
                rt,
                namespace,
                name,
                body,
                content_type,  # type: ignore[arg-type]
                subresource=sub,
                warnings=warnings,
                **options,
            )
        elif verb == "delete":
            opts = body if isinstance(body, dict) else {}
            pre = opts.get("preconditions") or {}
            result = store.delete(
                rt,
                namespace,
                name,  # type: ignore[arg-type]
                propagation=query.get("propagationPolicy") or opts.get("propagationPolicy"),
                precondition_rv=pre.get("resourceVersion"),
                precondition_uid=pre.get("uid"),
                dry_run=options["dry_run"],
            )
        elif verb == "deletecollection":
            result = store.delete_collection(rt, namespace, selector)
        else:
            raise errors.method_not_allowed(f"{self.command} is not supported")
        headers = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None
        self._send_json(code, result, headers)

    @staticmethod
    def _predicate(query: dict[str, str]) -> Any:
        by_label = label_selector(query.get("labelSelector"))
        by_field = field_selector(query.get("fieldSelector"))
        return lambda obj: by_label(obj) and by_field(obj)

    def _watch(
        self, store: Store, rt: ResourceType, namespace: str | None, query: dict[str, str]
    ) -> None:
        timeout = float(query.get("timeoutSeconds") or self.server.emulator.watch_timeout)
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        events = store.watch(
            rt,
            namespace,
            query.get("resourceVersion"),
            self._predicate(query),
            timeout,
            self.server.emulator.bookmark_interval if bookmarks else None,
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for event in events:
                self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _chunk(self, event: dict[str, Any]) -> None:
        line = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.flush()


class KubeEmulator:
    """A stateful Kubernetes API on loopback; state survives stop()/start() like etcd.

    Typical use is through the `k8s_emulator` fixture; directly:

        emulator = KubeEmulator(); emulator.start()
        emulator.write_kubeconfig(tmp_path / "kubeconfig")
        emulator.load_crd(crd_dict_or_yaml_path)
        emulator.fail_next(2, status=409, verb="patch", resource="recommenderjobs")
        with emulator.unreachable(): ...
        emulator.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.store = Store()
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.watch_timeout = 1800.0
        self.bookmark_interval = 5.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> KubeEmulator:
        if self._server is not None:
            return self
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"k8s-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every open connection (watches end, clients see resets)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self.store.close_watches()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """The API server is down inside the block and back, same port and state, after."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        return write_kubeconfig(Path(path), self.url, namespace)

    # -- faults and records ------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        verb: str | None = None,
        resource: str | None = None,
        group: str | None = None,
        message: str | None = None,
    ) -> FaultRule:
        """The next `count` requests matching verb/resource (None: any) fail with `status`."""
        return self.faults.add(FaultRule(count, status, verb, resource, group, message))

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    def requests_for(
        self, verb: str | None = None, resource: str | None = None
    ) -> list[RequestRecord]:
        with self._lock:
            return [
                r
                for r in self.requests
                if verb in (None, r.verb) and resource in (None, r.resource)
            ]

    def compact(self) -> None:
        """Drop the watch history: a watch resuming from an old resourceVersion gets 410."""
        self.store.compact()

    # -- direct state access (no HTTP, no faults) --------------------------------------

    def _type(self, api_version: str, kind_or_plural: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        with self.store._cond:
            for (g, v, plural), rt in self.store.registry.types.items():
                if (g, v) == (group, version) and kind_or_plural in (rt.kind, plural):
                    return rt
        raise LookupError(f"{api_version} {kind_or_plural} is not served (CRD not loaded?)")

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace it if it exists (schema and rules still apply)."""
        rt = self._type(manifest["apiVersion"], manifest["kind"])
        meta = manifest.get("metadata", {})
        namespace = meta.get("namespace", "default") if rt.namespaced else None
        try:
            current = self.store.get(rt, namespace, meta["name"])
        except ApiError as exc:
            if exc.code != 404:
                raise
            return self.store.create(rt, namespace, manifest)
        body = dict(manifest)
        body["metadata"] = {**meta, "resourceVersion": current["metadata"]["resourceVersion"]}
        return self.store.replace(rt, namespace, meta["name"], body)

    def load_crd(self, crd: dict[str, Any] | str | Path) -> dict[str, Any]:
        """Create (or replace) a CRD from a dict or a YAML file; its kind is served at once."""
        if not isinstance(crd, dict):
            docs = [d for d in yaml.safe_load_all(Path(crd).read_text()) if d]
            if len(docs) != 1:
                for doc in docs:
                    self.load_crd(doc)
                return docs[-1]
            crd = docs[0]
        return self.apply(crd)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = "default"
    ) -> dict[str, Any] | None:
        """The stored object, or None; for assertions that bypass the client."""
        rt = self._type(api_version, kind)
        try:
            return self.store.get(rt, namespace if rt.namespaced else None, name)
        except ApiError:
            return None

    def list(
        self, api_version: str, kind: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        rt = self._type(api_version, kind)
        items: list[dict[str, Any]] = self.store.list(rt, namespace, lambda _: True)["items"]
        return items

    def set_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        status: dict[str, Any],
        namespace: str | None = "default",
    ) -> dict[str, Any]:
        """Write an object's status as a controller would (e.g. a Deployment becoming ready)."""
        rt = self._type(api_version, kind)
        return self.store.patch(
            rt,
            namespace if rt.namespaced else None,
            name,
            {"status": status},
            "application/merge-patch+json",
            subresource="status" if rt.status_subresource else None,
        )

    def create_namespace(self, name: str) -> dict[str, Any]:
        return self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
