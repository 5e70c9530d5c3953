"""Sticky assignment of users to the stable or the canary version.

A user's bucket (0..99) comes from a SHA-256 of the user id, never from a
random draw or Python's per-process ``hash``, so every router replica and every
restart agrees. A user is on the canary when its bucket is below the canary's
weight: for a given weight a user always sees one version, and raising the
weight only moves users from stable to canary, never back.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from kuberec.errors import ConfigError

Track = Literal["stable", "canary"]
BUCKETS = 100


def bucket(user_id: object, salt: str = "") -> int:
    """The user's bucket in ``0..99``; ``42`` and ``"42"`` share one (ids arrive as JSON)."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def check_weight(weight: int) -> int:
    """A canary weight is a whole percentage in 0..100."""
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= BUCKETS:
        raise ConfigError(
            f"canary weight must be a whole percentage within 0..100, got {repr(weight)[:40]}"
        )
    return weight


def assign(user_id: object, canary_weight: int, salt: str = "") -> Track:
    """``"canary"`` for the users whose bucket is below ``canary_weight`` percent."""
    return "canary" if bucket(user_id, salt) < check_weight(canary_weight) else "stable"
