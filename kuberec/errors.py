"""Typed errors whose messages tell the user what to fix.

The CLI prints any ``KuberecError`` as one line, without a traceback, and exits
non-zero; everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class KuberecError(Exception):
    """Base of every error a user can act on."""


class DataError(KuberecError):
    """Input data is missing, malformed or inconsistent."""


class DownloadError(KuberecError):
    """A dataset could not be fetched or failed its checksum."""


class FeatureStoreError(KuberecError):
    """The Feast repo or one of its stores is misconfigured or unreachable."""


class ConfigError(KuberecError):
    """A setting or job file is invalid."""


class ServingError(KuberecError):
    """A model server or the canary router did not start, answer, or stop."""
