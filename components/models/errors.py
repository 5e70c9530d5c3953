"""Errors of model building and training that a user can act on."""

from __future__ import annotations

from kuberec.errors import KuberecError


class TrainingError(KuberecError):
    """Training diverged or cannot proceed; the message says which setting to change."""
