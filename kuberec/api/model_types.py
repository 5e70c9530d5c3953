"""The model types ``model.type`` accepts, as the contract sees them: through an interface.

The model types, their defaults and their hyperparameter rules live beside the models
(components/models/, with torch), above the contract, so the contract cannot import them. It
declares what it needs, :class:`ModelCatalogue`, and the composition root (``kuberec/__init__.py``)
installs the components' one, which imports the registry only when a job has something to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ModelCatalogue(Protocol):
    def names(self) -> list[str]:
        """Every value ``model.type`` accepts, ``auto`` first (the CRD's enum)."""
        ...

    def check(
        self, model_type: str, hyperparameters: Mapping[str, Any], auto: Mapping[str, Any]
    ) -> None:
        """Raise ``ConfigError`` unless the type, its hyperparameters and ``auto`` are valid."""
        ...


_installed: list[ModelCatalogue] = []


def install(catalogue: ModelCatalogue) -> None:
    """Make ``catalogue`` the one job specs are checked against (the last installed wins)."""
    _installed[:] = [catalogue]


def catalogue() -> ModelCatalogue:
    """The installed catalogue; importing ``kuberec`` installs the components' one."""
    if not _installed:
        raise RuntimeError("no model catalogue installed; import kuberec, which installs it")
    return _installed[0]
