"""Model types by name: validation and construction in one place.

Each model's defaults, rules and search space are declared beside it (its module's
``MODEL_TYPES``, :class:`~.model_type.ModelType`); the registry collects them.

The CLI, the pipeline and the Ray trainer all go through :func:`resolve_hparams`
and :func:`build_model`, so a job file is validated the same way everywhere and a
run records the complete, effective hyperparameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kuberec.components.models import (
    bivae,
    dcn,
    ease,
    gru4rec,
    item_knn,
    mf,
    ncf,
    popularity,
    sasrec,
    sparse_ease,
    two_tower,
    vae,
)
from kuberec.components.models.base import Recommender
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import RuleViolation
from kuberec.components.models.model_type import HParams, ModelType
from kuberec.errors import ConfigError

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData

__all__ = [
    "MODEL_TYPES",
    "HParams",
    "ModelType",
    "build_model",
    "create_model",
    "model_type",
    "resolve_hparams",
]

#: Every model type, in this order (the order benchmarks and listings show them), collected
#: from the ``MODEL_TYPES`` each model module declares beside its model.
MODEL_TYPES: dict[str, ModelType] = {
    m.name: m
    for module in (
        popularity,
        item_knn,
        ease,
        sparse_ease,
        mf,
        ncf,
        two_tower,
        sasrec,
        gru4rec,
        vae,
        bivae,
        dcn,
    )
    for m in module.MODEL_TYPES
}


def model_type(name: str) -> ModelType:
    """The registered type called ``name``, or a ConfigError listing the valid names."""
    found = MODEL_TYPES.get(name)
    if found is None:
        raise ConfigError(f"unknown model type {name!r}; valid: {sorted(MODEL_TYPES)}")
    return found


def resolve_hparams(name: str, hparams: Mapping[str, object] | None = None) -> HParams:
    """Defaults overridden by ``hparams``, every value checked against its rule."""
    spec = model_type(name)
    given = dict(hparams or {})
    unknown = sorted(set(given) - set(spec.rules))
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for model type {name!r}; "
            f"valid: {sorted(spec.rules)}"
        )
    resolved: HParams = {}
    for key, rule in spec.rules.items():
        value = given.get(key, spec.defaults[key])
        try:
            resolved[key] = rule.check(value)
        except RuleViolation as exc:
            raise ConfigError(f"{name} hyperparameter {key!r}: {exc}, got {value!r}") from None
    if spec.cross_check is not None:
        spec.cross_check(resolved)
    return resolved


def create_model(name: str, schema: DataSchema, hparams: Mapping[str, object]) -> Recommender:
    """A model with the shapes of ``schema`` and empty data tables (what loading fills)."""
    spec = model_type(name)
    resolved = resolve_hparams(name, hparams)
    return spec.cls(schema, **{k: resolved[k] for k in spec.model_keys})  # type: ignore[arg-type]


def build_model(
    name: str, data: EncodedData, hparams: Mapping[str, object] | None = None
) -> Recommender:
    """A model ready to train (or, for baselines, to score) on ``data``."""
    model = create_model(name, data.schema, hparams or {})
    model.attach(data)
    return model
