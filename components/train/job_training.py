"""From a job's spec to a training run's arguments, built in one place.

``kuberec train -f`` and the pipeline's train step both read ``spec.model`` and
``spec.training`` through :func:`job_training`, so a job trains the same way from the
command line and on the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kuberec.api.spec import JobSpec
from kuberec.components.train.auto import AutoSpec
from kuberec.components.train.settings import TrainSettings

#: What ``--set KEY=VALUE`` may set besides hyperparameters.
SETTING_NAMES = frozenset(TrainSettings.__dataclass_fields__) - {"extra", "storage_path"}


@dataclass(frozen=True)
class JobTraining:
    """The model type (``auto``: chosen later), its hyperparameters, settings and auto budget."""

    model_type: str
    hparams: dict[str, Any]
    settings: TrainSettings
    auto_values: dict[str, Any]

    def auto(self) -> AutoSpec:
        """``model.auto``, checked only when asked for: a named type does not use it."""
        return AutoSpec(**self.auto_values)


def job_training(
    spec: JobSpec,
    *,
    model_type: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    auto: Mapping[str, Any] | None = None,
    **settings: Any,
) -> JobTraining:
    """The run ``spec`` asks for, with a caller's changes over it.

    ``overrides`` (``--set``) are split by name: training settings, else hyperparameters;
    ``auto`` replaces ``model.auto`` fields and ``settings`` training settings (the run's
    Ray address).
    """
    given = dict(overrides or {})
    training = {k: v for k, v in given.items() if k in SETTING_NAMES}
    hparams = {
        **spec.model.hyperparameters,
        **{k: v for k, v in given.items() if k not in SETTING_NAMES},
    }
    built = TrainSettings.from_spec(spec.training, **{**training, **settings})
    return JobTraining(
        model_type=model_type or spec.model.type,
        hparams=hparams,
        settings=built,
        auto_values={**spec.model.auto.settings(), **(auto or {})},
    )
