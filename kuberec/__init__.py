"""kuberec: recommendation-as-a-service on Kubernetes.

The importable parts live in the top-level folders of the repository and are
mapped under this namespace by pyproject.toml: ``kuberec.components``,
``kuberec.operator``, ``kuberec.pipelines``, ``kuberec.serving`` and
``kuberec.feature_repo``. This package itself holds only the CLI and the
shared error types.
"""

from __future__ import annotations

__version__ = "0.1.0"
