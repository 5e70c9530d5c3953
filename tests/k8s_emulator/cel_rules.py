"""`x-kubernetes-validations` CEL rules, evaluated with cel-python like the API server does.

Each rule runs with `self` bound to the value at the schema node that declares it, and
`oldSelf` to the stored value on updates (rules that mention `oldSelf` are transition
rules and are skipped on create, as on a real server).
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel

from .schema import FieldError, child, type_name

_REASONS = {
    "FieldValueInvalid": "Invalid value: {value}: {message}",
    "FieldValueForbidden": "Forbidden: {message}",
    "FieldValueRequired": "Required value: {message}",
    "FieldValueDuplicate": "Duplicate value: {value}: {message}",
}

_ENV = celpy.Environment()


@lru_cache(maxsize=512)
def _program(rule: str) -> Any:
    return _ENV.program(_ENV.compile(rule))


def _evaluate(expression: str, self_value: Any, old_value: Any) -> Any:
    activation = {"self": json_to_cel(self_value)}
    if old_value is not None:
        activation["oldSelf"] = json_to_cel(old_value)
    result = _program(expression).evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


def _failure(rule: dict[str, Any], value: Any, old: Any, path: str) -> FieldError | None:
    try:
        passed = _evaluate(rule["rule"], value, old)
    except Exception as exc:  # CEL compile/eval errors are reported like the real server
        detail = exc.args[0] if exc.args else exc
        return FieldError(
            "FieldValueInvalid",
            path,
            f'Invalid value: "{type_name(value)}": {detail} evaluating rule: {rule["rule"]}',
        )
    if bool(passed):
        return None
    message = rule.get("message") or f"failed rule: {rule['rule']}"
    if rule.get("messageExpression"):
        # the real server falls back to `message` when the expression fails
        with contextlib.suppress(Exception):
            message = str(_evaluate(rule["messageExpression"], value, old))
    field = path
    if rule.get("fieldPath"):
        field = f"{path}{rule['fieldPath']}" if path else rule["fieldPath"].lstrip(".")
    template = _REASONS.get(rule.get("reason", "FieldValueInvalid"), _REASONS["FieldValueInvalid"])
    text = template.format(value=f'"{type_name(value)}"', message=message)
    return FieldError(rule.get("reason", "FieldValueInvalid"), field, text)


def cel_errors(value: Any, old: Any, schema: dict[str, Any], path: str) -> list[FieldError]:
    """All failing rules under `schema` for `value` (and `old`, the stored value, if any)."""
    errors: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in rule["rule"] and old is None:
            continue
        failure = _failure(rule, value, old, path)
        if failure is not None:
            errors.append(failure)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            sub = props.get(key) or (extra if isinstance(extra, dict) else None)
            if sub is not None and item is not None:
                errors.extend(cel_errors(item, old_map.get(key), sub, child(path, key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            errors.extend(cel_errors(item, None, schema["items"], f"{path}[{i}]"))
    return errors


def root_cel_errors(
    obj: dict[str, Any], old: dict[str, Any] | None, schema: dict[str, Any]
) -> list[FieldError]:
    keep = ("apiVersion", "kind", "metadata")
    body = {k: v for k, v in obj.items() if k not in keep}
    old_body = None if old is None else {k: v for k, v in old.items() if k not in keep}
    return cel_errors(body, old_body, schema, "")
