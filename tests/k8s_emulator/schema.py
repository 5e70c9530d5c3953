"""Structural OpenAPI v3 schemas of CRDs: pruning, defaulting and validation.

The order follows the real API server: unknown fields are pruned (or reported), nulls
of non-nullable fields dropped, defaults applied, then the value is validated. Errors
carry the field path and the real server's wording so tests can assert on them.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

ROOT_KEEP = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class FieldError:
    """One validation failure: (reason, field path, message) as in a Status cause."""

    reason: str
    field: str
    message: str


def show(value: Any) -> str:
    """A value as the real server prints it in `Invalid value: ...`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(type_name(value))


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _keeps_unknown(schema: dict[str, Any]) -> bool:
    return bool(
        schema.get("x-kubernetes-preserve-unknown-fields")
        or schema.get("x-kubernetes-embedded-resource")
    )


def normalize(
    value: Any, schema: dict[str, Any], path: str, unknown: list[str], root: bool = False
) -> Any:
    """Prune unknown fields (recorded in `unknown`), drop non-nullable nulls, default."""
    if isinstance(value, dict) and (schema.get("type") in (None, "object")):
        props: dict[str, Any] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in ROOT_KEEP:
                result[key] = item
                continue
            sub = props.get(key)
            if sub is None and isinstance(extra, dict):
                sub = extra
            if sub is None:
                if _keeps_unknown(schema) or (extra is True):
                    result[key] = item
                else:
                    unknown.append(child(path, key))
                continue
            if item is None and not sub.get("nullable"):
                continue
            result[key] = normalize(item, sub, child(path, key), unknown)
        for key, sub in props.items():
            if key not in result and "default" in sub:
                result[key] = normalize(
                    copy.deepcopy(sub["default"]), sub, child(path, key), unknown
                )
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [
            normalize(item, schema["items"], f"{path}[{i}]", unknown)
            for i, item in enumerate(value)
        ]
    return value


def _type_ok(value: Any, schema: dict[str, Any]) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, str | int) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected is None:
        return True
    if value is None:
        return bool(schema.get("nullable"))
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, int | float) and not isinstance(value, bool),
    }.get(expected, True)


def _invalid(path: str, value: Any, text: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, f"Invalid value: {show(value)}: {text}")


def _numeric(value: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors = []
    where = f"{path} in body"
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") is True and value <= low:
            errors.append(_invalid(path, value, f"{where} should be greater than {low}"))
        elif value < low:
            errors.append(
                _invalid(path, value, f"{where} should be greater than or equal to {low}")
            )
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") is True and value >= high:
            errors.append(_invalid(path, value, f"{where} should be less than {high}"))
        elif value > high:
            errors.append(_invalid(path, value, f"{where} should be less than or equal to {high}"))
    if schema.get("multipleOf") and value % schema["multipleOf"] != 0:
        errors.append(
            _invalid(path, value, f"{where} should be a multiple of {schema['multipleOf']}")
        )
    return errors


def _string(value: str, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors = []
    where = f"{path} in body"
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(
            _invalid(path, value, f"{where} should be at least {schema['minLength']} chars long")
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(
            FieldError(
                "FieldValueTooLong",
                path,
                f"Too long: may not be more than {schema['maxLength']} bytes",
            )
        )
    if "pattern" in schema and not re.search(schema["pattern"], value):
        errors.append(_invalid(path, value, f"{where} should match '{schema['pattern']}'"))
    return errors


def _array(value: list[Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    errors = []
    where = f"{path} in body"
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(
            _invalid(path, len(value), f"{where} should have at least {schema['minItems']} items")
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {schema['maxItems']} items",
            )
        )
    if schema.get("uniqueItems") or schema.get("x-kubernetes-list-type") == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                duplicate = f"Duplicate value: {show(item)}"
                errors.append(FieldError("FieldValueDuplicate", f"{path}[{i}]", duplicate))
            seen.append(item)
    if isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(validate(item, schema["items"], f"{path}[{i}]"))
    return errors


def _object(value: dict[str, Any], schema: dict[str, Any], path: str) -> list[FieldError]:
    errors = []
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(FieldError("FieldValueRequired", child(path, key), "Required value"))
    props = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        sub = props.get(key) or (extra if isinstance(extra, dict) else None)
        if sub is not None:
            errors.extend(validate(item, sub, child(path, key)))
    where = f"{path} in body"
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            _invalid(
                path,
                len(value),
                f"{where} should have at least {schema['minProperties']} properties",
            )
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            _invalid(
                path,
                len(value),
                f"{where} should have at most {schema['maxProperties']} properties",
            )
        )
    return errors


def _combinators(value: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for sub in schema.get("allOf") or []:
        errors.extend(validate(value, sub, path))
    if schema.get("anyOf") and all(validate(value, s, path) for s in schema["anyOf"]):
        errors.append(
            _invalid(path, value, f"{path} in body must match at least one schema in anyOf")
        )
    if schema.get("oneOf"):
        passing = sum(1 for s in schema["oneOf"] if not validate(value, s, path))
        if passing != 1:
            errors.append(
                _invalid(
                    path, value, f"{path} in body must validate one and only one schema (oneOf)"
                )
            )
    if "not" in schema and not validate(value, schema["not"], path):
        errors.append(_invalid(path, value, f"{path} in body must not validate the schema (not)"))
    return errors


def validate(value: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    """Schema errors of `value` (already normalized), depth first, in field order."""
    if not _type_ok(value, schema):
        expected = schema.get("type", "string or integer")
        return [
            _invalid(
                path, value, f"{path} in body must be of type {expected}: {show(type_name(value))}"
            )
        ]
    if value is None:
        return []
    errors: list[FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(show(v) for v in schema["enum"])
        errors.append(
            FieldError(
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {show(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        errors.extend(_numeric(value, schema, path))
    elif isinstance(value, str):
        errors.extend(_string(value, schema, path))
    elif isinstance(value, list):
        errors.extend(_array(value, schema, path))
    elif isinstance(value, dict):
        errors.extend(_object(value, schema, path))
    errors.extend(_combinators(value, schema, path))
    return errors


def validate_root(obj: dict[str, Any], schema: dict[str, Any]) -> list[FieldError]:
    """Validate a whole custom resource; apiVersion, kind and metadata are the server's."""
    body = {k: v for k, v in obj.items() if k not in ROOT_KEEP}
    root_schema = dict(schema)
    root_schema["properties"] = {
        k: v for k, v in (schema.get("properties") or {}).items() if k not in ROOT_KEEP
    }
    root_schema["required"] = [r for r in schema.get("required") or [] if r not in ROOT_KEEP]
    return validate(body, root_schema, "")
