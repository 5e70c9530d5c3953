"""Patch bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and apply.

Strategic merge and server-side apply are treated as merge patches: for the kinds
kuberec writes (maps of scalars, whole lists replaced) the result is the same.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request, unsupported_media_type

MERGE_TYPES = {
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+json",
}
JSON_PATCH = "application/json-patch+json"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise _unprocessable(f"path not found: /{'/'.join(parts)}") from exc
    return node


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", f"the server rejected our request: {message}")


def _get(doc: Any, parts: list[str]) -> Any:
    if not parts:
        return doc
    parent, last = _parent(doc, parts), parts[-1]
    try:
        return parent[int(last)] if isinstance(parent, list) else parent[last]
    except (KeyError, IndexError, ValueError) as exc:
        raise _unprocessable(f"path not found: /{'/'.join(parts)}") from exc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(doc, parts), parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if not 0 <= index <= len(parent):
            raise _unprocessable(f"index out of range: {last}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _unprocessable(f"cannot add to /{'/'.join(parts)}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    parent, last = _parent(doc, parts), parts[-1]
    try:
        if isinstance(parent, list):
            parent.pop(int(last))
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError) as exc:
        raise _unprocessable(f"path not found: /{'/'.join(parts)}") from exc
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        kind, parts = op.get("op"), _pointer(op.get("path", ""))
        if kind == "add":
            doc = _add(doc, parts, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            doc = (
                _add(_remove(doc, parts), parts, copy.deepcopy(op["value"]))
                if parts
                else (copy.deepcopy(op["value"]))
            )
        elif kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = copy.deepcopy(_get(doc, source))
            if kind == "move":
                doc = _remove(doc, source)
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise _unprocessable(f"test failed at {op.get('path')}")
        else:
            raise bad_request(f"unknown JSON patch operation {kind!r}")
    return doc


def apply_patch(target: Any, body: Any, content_type: str) -> Any:
    media = content_type.split(";")[0].strip()
    if media == JSON_PATCH:
        return json_patch(target, body)
    if media in MERGE_TYPES:
        return merge_patch(target, body)
    raise unsupported_media_type(content_type)
