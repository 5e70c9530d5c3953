"""What a training run needs besides the model: Ray placement, epochs, stopping, storage."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kuberec.errors import ConfigError

#: ``model.type: auto``'s defaults (components/train/auto.py): the closed-form types, which
#: fit in seconds on 2 CPU cores; deep models only when listed in ``model.auto.candidates``.
AUTO_CANDIDATES = ("ease_t", "ease", "sparse_ease", "item_knn", "popularity")
AUTO_BUDGET_SECONDS = 300.0
AUTO_MEMORY_GIB = 12.0


@dataclass(frozen=True)
class TrainSettings:
    """Ray Train settings; the defaults run one CPU worker on a local Ray instance."""

    backend: str = "ray"  # "ray": Ray Train TorchTrainer; "local": the same loop in-process
    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    ray_address: str | None = None  # None: a local Ray instance; "auto" or ray://host:10001
    storage_path: Path | None = None  # checkpoints; default <run dir>/ray
    max_failures: int = 1  # worker failures tolerated before the run fails (FailureConfig)
    epochs: int = 20
    patience: int = 3  # epochs without validation improvement before stopping early
    validation_fraction: float = 0.1  # share of each user's interactions held out to stop early
    validation_metric: str = "ndcg"
    validation_k: int = 10
    seed: int = 0
    mixed_precision: bool = True  # bf16 autocast, on GPU only
    # 1: DDP, gradients all-reduced every step; N > 1: local SGD, weights averaged every
    # N steps and at each epoch end (components/train/averaging.py)
    averaging_period: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

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
        metrics = ("ndcg", "recall", "precision", "map", "hit_rate", "mrr")
        if self.validation_metric not in metrics:
            raise ConfigError(
                f"validation_metric: {self.validation_metric!r} is not one of {list(metrics)}"
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


def training_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that are TrainSettings fields.

    A job's ``spec.training`` also holds placement and scheduling (node
    selectors, cron, retrain triggers): the cluster's business, not the loop's.
    """
    return {k: v for k, v in values.items() if k in TrainSettings.__dataclass_fields__}
