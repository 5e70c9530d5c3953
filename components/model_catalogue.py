"""The components' side of the contract's model-type interface (kuberec/api/model_types.py).

Importing this module is cheap: the registry, and torch with it, is imported only when a job
names a type, sets hyperparameters or lists candidates of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuberec.api.names import AUTO_MODEL


class RegistryCatalogue:
    """``model.type`` checked by the model registry and ``model.auto`` by ``AutoSpec``."""

    def names(self) -> list[str]:
        from kuberec.components.models.registry import MODEL_TYPES

        return [AUTO_MODEL, *sorted(MODEL_TYPES)]

    def check(
        self, model_type: str, hyperparameters: Mapping[str, Any], auto: Mapping[str, Any]
    ) -> None:
        if model_type == AUTO_MODEL:
            from kuberec.components.train.auto import AutoSpec, require_no_hparams

            require_no_hparams(dict(hyperparameters))
            AutoSpec(**auto)
            return
        from kuberec.components.models.registry import resolve_hparams

        resolve_hparams(model_type, hyperparameters)
