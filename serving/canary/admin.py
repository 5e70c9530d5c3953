"""The canary router's admin token: one per job, in a file only its owner can read.

:class:`~kuberec.serving.canary.local.LocalRollout` writes it (mode 0600)
into the job's serving directory before it starts the router; the router
reads it at start, and kuberec's own rollout code sends it as
``Authorization: Bearer <token>`` on every admin call.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from kuberec.errors import ConfigError

TOKEN_FILE = "router.token"


def write_token(path: Path) -> str:
    """A fresh random token in ``path`` (0600 whatever the umask); returns it."""
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(token + "\n")
    return token


def read_token(path: Path) -> str:
    """The token in ``path``; refused when others could read it too."""
    try:
        mode = path.stat().st_mode
        token = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the router's admin token {path}: {exc.strerror}; "
            "`kuberec stop` and `kuberec run` start a router with a new one"
        ) from None
    if stat.S_IMODE(mode) & 0o077:
        raise ConfigError(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); `chmod 600 {path}`"
        )
    if not token:
        raise ConfigError(f"{path} is empty; `kuberec stop` and `kuberec run` write a new token")
    return token


def bearer(token: str) -> dict[str, str]:
    """The header an admin call carries."""
    return {"Authorization": f"Bearer {token}"}


def is_bearer(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time)."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), token.encode())
