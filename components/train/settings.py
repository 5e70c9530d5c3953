"""What a training run needs besides the model: Ray placement, epochs, stopping, storage.

The fields a job sets (``spec.training``) take their defaults from the contract's
``TrainingSpec``, and :meth:`TrainSettings.from_spec` builds the settings from a job's, so
each default is written once, in kuberec/api/spec.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from kuberec.api.names import METRICS
from kuberec.api.spec import TrainingSpec
from kuberec.errors import ConfigError


def _job(name: str) -> Any:
    """The default of ``spec.training.<name>``: the job's default is the loop's."""
    return TrainingSpec.model_fields[name].default


@dataclass(frozen=True)
class TrainSettings:
    """Ray Train settings; the defaults run one CPU worker on a local Ray instance."""

    # ``_job(...)``: set by a job's spec.training, which says what each means; the rest are
    # the loop's own. (The order is config.json's.)
    backend: str = _job("backend")  # "ray": Ray Train TorchTrainer; "local": in-process
    workers: int = _job("workers")
    use_gpu: bool = _job("use_gpu")
    cpus_per_worker: float = _job("cpus_per_worker")
    gpus_per_worker: float = _job("gpus_per_worker")
    ray_address: str | None = _job("ray_address")  # None: local Ray; "auto" or ray://host:10001
    storage_path: Path | None = None  # checkpoints; default <run dir>/ray
    max_failures: int = _job("max_failures")  # worker failures tolerated (FailureConfig)
    epochs: int = _job("epochs")
    patience: int = _job("patience")  # epochs without validation improvement before stopping
    validation_fraction: float = _job("validation_fraction")  # each user's share held out
    validation_metric: str = "ndcg"
    validation_k: int = 10
    seed: int = _job("seed")
    mixed_precision: bool = True  # bf16 autocast, on GPU only
    # 1: DDP, gradients all-reduced every step; N > 1: local SGD, weights averaged every
    # N steps and at each epoch end (components/train/averaging.py)
    averaging_period: int = _job("averaging_period")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, training: TrainingSpec, **overrides: Any) -> TrainSettings:
        """The settings of a job's ``spec.training`` (placement and scheduling, the cluster's
        business, left out), with ``overrides`` (e.g. the run's Ray address) over them."""
        values = {name: getattr(training, name) for name in JOB_FIELDS}
        return cls(**{**values, **overrides})

    def __post_init__(self) -> None:
        _at_least("workers", self.workers, 1)
        _at_least("cpus_per_worker", self.cpus_per_worker, 0)
        _at_least("gpus_per_worker", self.gpus_per_worker, 0)
        _at_least("max_failures", self.max_failures, 0)
        _at_least("epochs", self.epochs, 1)
        _at_least("patience", self.patience, 1)
        _at_least("validation_k", self.validation_k, 1)
        _at_least("averaging_period", self.averaging_period, 1)
        if not isinstance(self.averaging_period, int):
            raise ConfigError(
                f"averaging_period: must be a whole number of steps, got {self.averaging_period!r}"
            )
        if not 0 <= self.validation_fraction < 1:
            raise ConfigError(
                f"validation_fraction: must be in [0, 1), got {self.validation_fraction}"
            )
        if self.backend not in ("ray", "local"):
            raise ConfigError(f"backend: {self.backend!r} is not one of ['ray', 'local']")
        if self.backend == "local" and self.workers != 1:
            raise ConfigError("workers: the local backend runs one worker; use backend ray")
        if self.validation_metric not in METRICS:
            raise ConfigError(
                f"validation_metric: {self.validation_metric!r} is not one of {list(METRICS)}"
            )
        if self.use_gpu and self.gpus_per_worker == 0:
            object.__setattr__(self, "gpus_per_worker", 1.0)

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["storage_path"] = str(self.storage_path) if self.storage_path else None
        return values


def _at_least(name: str, value: float, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ConfigError(f"{name}: must be >= {minimum}, got {value!r}")


#: The fields a job's ``spec.training`` sets; the others are the loop's own.
JOB_FIELDS = tuple(f.name for f in fields(TrainSettings) if f.name in TrainingSpec.model_fields)
