"""kuberec: recommendation-as-a-service on Kubernetes.

The importable parts live in the top-level folders of the repository and are
mapped under this namespace by pyproject.toml: ``kuberec.components``,
``kuberec.operator``, ``kuberec.pipelines``, ``kuberec.serving`` and
``kuberec.feature_repo``. This package itself holds the job contract
(:mod:`kuberec.api`), the CLI (:mod:`kuberec.cli`) and the shared error types.

It is also the composition root: the contract checks ``model.type`` through an
interface (kuberec/api/model_types.py), and the model registry, which lives above
it, is installed behind it here, before any job can be validated.
"""

from __future__ import annotations

from kuberec.api import model_types as _model_types
from kuberec.components.model_catalogue import RegistryCatalogue as _RegistryCatalogue

__version__ = "0.1.0"

_model_types.install(_RegistryCatalogue())
