"""The emulator's state: objects, resourceVersions, the event history watches replay.

All the API semantics that clients depend on live here, independent of HTTP:
optimistic concurrency, generation, the status subresource, finalizers and
deletionTimestamp, owner-reference garbage collection, CRDs making kinds served.
"""

from __future__ import annotations

import bisect
import copy
import datetime as dt
import random
import re
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import errors
from .cel_rules import root_cel_errors
from .errors import ApiError
from .patching import apply_patch
from .resources import Registry, ResourceType, types_from_crd
from .schema import FieldError, normalize, validate_root

Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name
Predicate = Callable[[dict[str, Any]], bool]

_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_NAME_HELP = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass(frozen=True)
class Event:
    """One change, kept in order so a watch from any resourceVersion can be replayed."""

    rv: int
    type: str
    group: str
    plural: str
    namespace: str
    obj: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class Store:
    """Thread-safe object store; every mutation appends an Event and wakes watchers."""

    def __init__(self) -> None:
        self.registry = Registry.with_builtins()
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[Event] = []
        self.compacted_rv = 0
        self._rv = 0
        self._cond = threading.Condition(threading.RLock())
        self._closed_generation = 0
        with self._cond:
            for ns in ("default", "kube-system", "kube-public"):
                self._insert(self._namespace_type(), "", {"metadata": {"name": ns}})

    # -- helpers -----------------------------------------------------------------------

    def _namespace_type(self) -> ResourceType:
        rt = self.registry.find("", "v1", "namespaces")
        assert rt is not None
        return rt

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    @property
    def resource_version(self) -> str:
        return str(self._rv)

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> Key:
        return (rt.group, rt.plural, namespace or "" if rt.namespaced else "", name)

    def _emit(self, rt: ResourceType, type_: str, obj: dict[str, Any]) -> None:
        ns = obj["metadata"].get("namespace", "")
        rv = int(obj["metadata"]["resourceVersion"])
        self.history.append(Event(rv, type_, rt.group, rt.plural, ns, copy.deepcopy(obj)))
        self._cond.notify_all()

    def _view(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """An object as served under `rt`'s version (no conversion beyond apiVersion)."""
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        out["kind"] = rt.kind
        return out

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.objects.get(self._key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def _invalid(self, rt: ResourceType, name: str, errs: list[FieldError]) -> ApiError:
        return errors.invalid(
            rt.kind, rt.group, name, [(e.reason, e.field, e.message) for e in errs]
        )

    # -- admission: metadata, schema, CEL ----------------------------------------------

    def _check_name(self, rt: ResourceType, name: str) -> None:
        if not name:
            raise self._invalid(
                rt,
                "",
                [
                    FieldError(
                        "FieldValueRequired",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    )
                ],
            )
        if len(name) > 253 or not _NAME_RE.match(name):
            raise self._invalid(
                rt,
                name,
                [
                    FieldError(
                        "FieldValueInvalid",
                        "metadata.name",
                        f'Invalid value: "{name}": {_NAME_HELP}',
                    )
                ],
            )

    def _admit(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        strict: bool,
        warnings: list[str],
    ) -> dict[str, Any]:
        """Prune, default and validate a custom resource against its CRD schema and rules."""
        name = obj["metadata"].get("name", "")
        if rt.key == CRD_KEY:
            self._check_crd(rt, obj)
        if rt.schema is None:
            return obj
        unknown: list[str] = []
        obj = normalize(obj, rt.schema, "", unknown, root=True)
        if unknown and strict:
            fields = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise errors.bad_request(f"strict decoding error: {fields}")
        warnings.extend(f'unknown field "{f}"' for f in unknown)
        errs = validate_root(obj, rt.schema)
        if not errs:
            errs = root_cel_errors(obj, old, rt.schema)
        if errs:
            raise self._invalid(rt, name, errs)
        return obj

    def _check_crd(self, rt: ResourceType, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"].get("name", "")
        problems = []
        for field in ("group", "names", "versions"):
            if not spec.get(field):
                problems.append(FieldError("FieldValueRequired", f"spec.{field}", "Required value"))
        if not problems:
            expected = f"{names.get('plural')}.{spec['group']}"
            if name != expected:
                problems.append(
                    FieldError(
                        "FieldValueInvalid",
                        "metadata.name",
                        f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                    )
                )
        if problems:
            raise self._invalid(rt, name, problems)

    # -- reads -------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        with self._cond:
            return self._view(rt, self._stored(rt, namespace, name))

    def list(self, rt: ResourceType, namespace: str | None, predicate: Predicate) -> dict[str, Any]:
        with self._cond:
            items = [
                self._view(rt, obj)
                for (group, plural, ns, _), obj in sorted(self.objects.items())
                if (group, plural) == rt.key
                and (not namespace or ns == namespace)
                and predicate(obj)
            ]
            return {
                "apiVersion": rt.api_version,
                "kind": f"{rt.kind}List",
                "metadata": {"resourceVersion": self.resource_version},
                "items": items,
            }

    # -- writes ------------------------------------------------------------------------

    def _insert(
        self, rt: ResourceType, namespace: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if rt.namespaced:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["resourceVersion"] = str(self._next_rv())
        if rt.has_generation:
            meta["generation"] = 1
        for field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            meta.pop(field, None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        self.objects[self._key(rt, namespace, meta["name"])] = obj
        self._emit(rt, "ADDED", obj)
        self._after_write(rt, obj)
        return obj

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: dict[str, Any],
        *,
        dry_run: bool = False,
        strict: bool = False,
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        warnings = [] if warnings is None else warnings
        with self._cond:
            body = copy.deepcopy(body)
            meta = body.setdefault("metadata", {})
            self._check_api_version(rt, body)
            if rt.namespaced:
                if meta.get("namespace") and meta["namespace"] != namespace:
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request"
                    )
                if (("", "namespaces", "", namespace)) not in self.objects:
                    raise errors.not_found("namespaces", "", namespace or "")
            if not meta.get("name") and meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = meta["generateName"] + suffix
            self._check_name(rt, meta.get("name", ""))
            if rt.status_subresource:
                body.pop("status", None)  # status is written only through /status
            if self._key(rt, namespace, meta["name"]) in self.objects:
                raise errors.already_exists(rt.plural, rt.group, meta["name"])
            body = self._admit(rt, body, None, strict, warnings)
            self._default_builtin(rt, body)
            if dry_run:
                return self._view(rt, body)
            return self._view(rt, self._insert(rt, namespace, body))

    def _check_api_version(self, rt: ResourceType, body: dict[str, Any]) -> None:
        given = body.get("apiVersion")
        if given and given.split("/")[0] != (rt.group or "v1") and given != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({given}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if body.get("kind") and body["kind"] != rt.kind:
            raise errors.bad_request(
                f"the kind in the data ({body['kind']}) does not match the expected kind "
                f"({rt.kind})"
            )

    def _default_builtin(self, rt: ResourceType, body: dict[str, Any]) -> None:
        if rt.key == ("", "services"):
            spec = body.setdefault("spec", {})
            if spec.get("type", "ClusterIP") != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = f"10.96.{random.randint(0, 255)}.{random.randint(1, 254)}"
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("type", "ClusterIP")

    def replace(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            body = copy.deepcopy(body)
            meta = body.setdefault("metadata", {})
            if meta.get("name") not in (None, name):
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the "
                    f"URL ({name})"
                )
            self._check_api_version(rt, body)
            old = self._stored(rt, namespace, name)
            rv = meta.get("resourceVersion")
            if not rv and rt.custom:
                raise self._invalid(
                    rt,
                    name,
                    [
                        FieldError(
                            "FieldValueInvalid",
                            "metadata.resourceVersion",
                            "Invalid value: 0x0: must be specified for an update",
                        )
                    ],
                )
            return self._update(rt, old, body, rv, subresource, dry_run, strict, warnings)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
        warnings: list[str] | None = None,
    ) -> dict[str, Any]:
        with self._cond:
            old = self._stored(rt, namespace, name)
            requested_rv = None
            if isinstance(patch, dict):
                requested_rv = (patch.get("metadata") or {}).get("resourceVersion")
            body = apply_patch(copy.deepcopy(old), patch, content_type)
            if not isinstance(body, dict):
                raise errors.bad_request("the patch must produce an object")
            body.setdefault("metadata", {})["name"] = name
            return self._update(rt, old, body, requested_rv, subresource, dry_run, strict, warnings)

    def _update(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        body: dict[str, Any],
        requested_rv: str | None,
        subresource: str | None,
        dry_run: bool,
        strict: bool,
        warnings: list[str] | None,
    ) -> dict[str, Any]:
        warnings = [] if warnings is None else warnings
        old_meta = old["metadata"]
        if requested_rv and str(requested_rv) != old_meta["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, old_meta["name"])
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
        else:
            new = body
            if rt.status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
        meta = new.setdefault("metadata", {})
        for field in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        if "deletionTimestamp" in old_meta:
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise errors.ApiError(
                    422,
                    "Forbidden",
                    "no new finalizers can be added if the object is being "
                    f"deleted, found new finalizers {sorted(added)}",
                )
        new = self._admit(rt, new, old, strict, warnings)
        if new == old:
            return self._view(rt, old)  # a no-op write keeps the resourceVersion, as on k8s
        if rt.has_generation and self._spec_changed(rt, old, new):
            meta = new["metadata"]
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if dry_run:
            return self._view(rt, new)
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        key = self._key(rt, old_meta.get("namespace"), old_meta["name"])
        self.objects[key] = new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._view(rt, self._remove(rt, key))
        self._emit(rt, "MODIFIED", new)
        self._after_write(rt, new)
        return self._view(rt, new)

    @staticmethod
    def _spec_changed(rt: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
        ignored = ("metadata", "status") if rt.status_subresource else ("metadata",)
        return _without(old, *ignored) != _without(new, *ignored)

    # -- deletes -----------------------------------------------------------------------

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        precondition_uid: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self._cond:
            obj = self._stored(rt, namespace, name)
            meta = obj["metadata"]
            if (precondition_rv and precondition_rv != meta["resourceVersion"]) or (
                precondition_uid and precondition_uid != meta["uid"]
            ):
                raise errors.conflict(rt.plural, rt.group, name)
            if dry_run:
                return self._view(rt, obj)
            key = self._key(rt, namespace, name)
            if meta.get("finalizers"):
                if "deletionTimestamp" not in meta:
                    meta["deletionTimestamp"] = _now()
                    meta["deletionGracePeriodSeconds"] = 0
                    if rt.has_generation:
                        meta["generation"] = int(meta.get("generation", 1)) + 1
                    meta["resourceVersion"] = str(self._next_rv())
                    self._emit(rt, "MODIFIED", obj)
                return self._view(rt, obj)
            removed = self._remove(rt, key, orphan=propagation == "Orphan")
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": rt.group,
                    "kind": rt.plural,
                    "uid": removed["metadata"]["uid"],
                },
            }

    def delete_collection(
        self, rt: ResourceType, namespace: str | None, predicate: Predicate
    ) -> dict[str, Any]:
        with self._cond:
            listing = self.list(rt, namespace, predicate)
            for item in listing["items"]:
                meta = item["metadata"]
                if self._key(rt, meta.get("namespace"), meta["name"]) in self.objects:
                    self.delete(rt, meta.get("namespace"), meta["name"])
            return listing

    def _remove(self, rt: ResourceType, key: Key, orphan: bool = False) -> dict[str, Any]:
        obj = self.objects.pop(key)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit(rt, "DELETED", obj)
        self._collect_garbage(obj, orphan)
        if rt.key == CRD_KEY:
            self._unserve_crd(obj)
        if rt.key == ("", "namespaces"):
            self._empty_namespace(obj["metadata"]["name"])
        return obj

    def _type_of(self, group: str, plural: str) -> ResourceType | None:
        for (g, _, p), rt in self.registry.types.items():
            if (g, p) == (group, plural):
                return rt
        return None

    def _collect_garbage(self, owner: dict[str, Any], orphan: bool) -> None:
        """Delete (or orphan) every object that names `owner` in its ownerReferences."""
        uid = owner["metadata"]["uid"]
        for key, obj in list(self.objects.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if key not in self.objects or not any(r.get("uid") == uid for r in refs):
                continue
            rt = self._type_of(key[0], key[1])
            if rt is None:
                continue
            if orphan:
                kept = [r for r in refs if r.get("uid") != uid]
                self.patch(
                    rt,
                    key[2],
                    key[3],
                    {"metadata": {"ownerReferences": kept or None}},
                    "application/merge-patch+json",
                )
            else:
                self.delete(rt, key[2] or None, key[3])

    def _empty_namespace(self, namespace: str) -> None:
        for key in [k for k in self.objects if k[2] == namespace]:
            rt = self._type_of(key[0], key[1])
            if rt is not None and key in self.objects:
                self._remove(rt, key)

    # -- CRDs --------------------------------------------------------------------------

    def _after_write(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.key != CRD_KEY or obj["metadata"].get("deletionTimestamp"):
            return
        spec = obj["spec"]
        self.registry.remove_group_plural(spec["group"], spec["names"]["plural"])
        for served in types_from_crd(obj):
            self.registry.add(served)
        conditions = [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": _now()}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ]
        status = {
            "conditions": conditions,
            "acceptedNames": spec["names"],
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
        }
        if obj.get("status") != status:
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = str(self._next_rv())
            self._emit(rt, "MODIFIED", obj)

    def _unserve_crd(self, crd: dict[str, Any]) -> None:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        rt = self._type_of(group, plural)
        for key in [k for k in self.objects if (k[0], k[1]) == (group, plural)]:
            if rt is not None:
                self._remove(rt, key)
        self.registry.remove_group_plural(group, plural)

    # -- watches -----------------------------------------------------------------------

    def compact(self) -> None:
        """Forget the history, so watches from an older resourceVersion get 410 Gone."""
        with self._cond:
            self.compacted_rv = self._rv

    def close_watches(self) -> None:
        with self._cond:
            self._closed_generation += 1
            self._cond.notify_all()

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        since: str | None,
        predicate: Predicate,
        timeout: float,
        bookmark_every: float | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Watch events as dicts ({"type", "object"}) until timeout or server stop.

        The start is checked now (so errors come before any response is sent); the
        events come from the returned iterator.
        """
        deadline = time.monotonic() + timeout

        with self._cond:
            closed_at = self._closed_generation
            if since in (None, "", "0"):
                initial = [
                    {"type": "ADDED", "object": item}
                    for item in self.list(rt, namespace, predicate)["items"]
                ]
                cursor = len(self.history)
            else:
                try:
                    since_rv = int(since)  # type: ignore[arg-type]
                except ValueError as exc:
                    raise errors.bad_request(f"invalid resource version: {since}") from exc
                if since_rv < self.compacted_rv:
                    expired = errors.expired(
                        f"too old resource version: {since_rv} ({self.compacted_rv})"
                    )
                    initial = [{"type": "ERROR", "object": expired.status()}]
                    cursor = None
                else:
                    initial = []
                    cursor = bisect.bisect_right([e.rv for e in self.history], since_rv)
        return self._stream(
            rt, namespace, predicate, initial, cursor, closed_at, deadline, bookmark_every
        )

    def _stream(
        self,
        rt: ResourceType,
        namespace: str | None,
        predicate: Predicate,
        initial: list[dict[str, Any]],
        cursor: int | None,
        closed_at: int,
        deadline: float,
        bookmark_every: float | None,
    ) -> Iterator[dict[str, Any]]:
        def wanted(event: Event) -> bool:
            return (
                (event.group, event.plural) == rt.key
                and (not namespace or event.namespace == namespace)
                and predicate(event.obj)
            )

        yield from initial
        if cursor is None:
            return
        last_bookmark = time.monotonic()
        while True:
            with self._cond:
                while cursor == len(self.history):
                    now = time.monotonic()
                    if now >= deadline or self._closed_generation != closed_at:
                        return
                    if bookmark_every and now - last_bookmark >= bookmark_every:
                        break
                    wait = deadline - now
                    if bookmark_every:
                        wait = min(wait, bookmark_every - (now - last_bookmark))
                    self._cond.wait(max(wait, 0.01))
                if self._closed_generation != closed_at:
                    return
                batch = self.history[cursor:]
                cursor = len(self.history)
                current_rv = self.resource_version
            if not batch:
                last_bookmark = time.monotonic()
                yield {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": rt.api_version,
                        "kind": rt.kind,
                        "metadata": {"resourceVersion": current_rv},
                    },
                }
            for event in batch:
                if wanted(event):
                    yield {"type": event.type, "object": self._view(rt, event.obj)}
