"""Fault injection: make chosen requests fail the way an unhealthy API server does.

A rule matches on verb and resource (plural, optionally group) and answers the next
`count` matching requests with an error Status instead of serving them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .errors import ApiError

_REASONS = {
    409: (
        "Conflict",
        "the object has been modified; please apply your changes to the latest "
        "version and try again",
    ),
    429: (
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
    ),
    500: (
        "InternalError",
        'an error on the server ("injected fault") has prevented the request from succeeding',
    ),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted"),
}


@dataclass
class FaultRule:
    """The next `count` requests matching verb/resource/group fail with `status`."""

    count: int
    status: int
    verb: str | None = None
    resource: str | None = None
    group: str | None = None
    message: str | None = None
    hits: int = 0

    def matches(self, verb: str, group: str | None, resource: str | None) -> bool:
        return (
            self.count > 0
            and self.verb in (None, verb)
            and self.resource in (None, resource)
            and self.group in (None, group)
        )

    def error(self) -> ApiError:
        reason, default = _REASONS.get(self.status, ("InternalError", "injected fault"))
        return ApiError(self.status, reason, self.message or default)


@dataclass
class Faults:
    """The active rules; first match wins and is consumed."""

    rules: list[FaultRule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def take(self, verb: str, group: str | None, resource: str | None) -> ApiError | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(verb, group, resource):
                    rule.count -= 1
                    rule.hits += 1
                    return rule.error()
        return None
