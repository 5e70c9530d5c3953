"""A stateful Kubernetes API server emulator for tests (no real kube-apiserver runs here).

See `server.KubeEmulator` for the API and `fixtures` for the pytest fixtures.
"""

from __future__ import annotations

from .errors import ApiError
from .faults import FaultRule
from .server import KubeEmulator, RequestRecord

__all__ = ["ApiError", "FaultRule", "KubeEmulator", "RequestRecord"]
