"""The typed model of a ``RecommenderJob`` (``kuberec.io/v1alpha1``).

This is the contract: the CLI validates job files with it, and later the CRD's
OpenAPI schema and the pipeline's parameters are generated from it. So far it
covers the sections the embedded default runs (``data``, ``features``); the
Pipeline issue adds model, training, evaluation and serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kuberec.errors import ConfigError

GROUP = "kuberec.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
MOVIELENS_RELEASES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class FileSpec(_Model):
    """A CSV or Parquet file by path or URI, with optional column renames."""

    uri: str = Field(min_length=1)
    columns: dict[str, str] = Field(default_factory=dict)


class SyntheticSpec(_Model):
    users: int = Field(ge=1)
    items: int = Field(ge=1)
    interactions: int = Field(ge=1)
    seed: int = 0


class DataSpec(_Model):
    """Exactly one source: a MovieLens release, your own files, or synthetic data."""

    movielens: Literal["ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m"] | None = None
    interactions: FileSpec | None = None
    items: FileSpec | None = None
    users: FileSpec | None = None
    synthetic: SyntheticSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        chosen = [n for n in ("movielens", "interactions", "synthetic") if getattr(self, n)]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of movielens, interactions, synthetic" + (
                    f" (found {chosen})" if chosen else ""
                )
            )
        if (self.items or self.users) and not self.interactions:
            raise ValueError("items and users files go with interactions, not with " + chosen[0])
        return self


class FeaturesSpec(_Model):
    profile: Literal["default", "production"] = "default"
    text_embeddings: bool = Field(True, alias="textEmbeddings")
    recent_days: int = Field(30, ge=1, alias="recentDays")


class ModelSpec(_Model):
    """The model type (the default model when absent) and its hyperparameters."""

    type: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)


class TrainingSpec(_Model):
    """Ray placement and stopping; mirrors ``kuberec.components.train.TrainSettings``."""

    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(1, ge=1)
    use_gpu: bool = Field(False, alias="useGpu")
    cpus_per_worker: float = Field(1.0, ge=0, alias="cpusPerWorker")
    gpus_per_worker: float = Field(0.0, ge=0, alias="gpusPerWorker")
    ray_address: str | None = Field(None, alias="rayAddress")
    max_failures: int = Field(1, ge=0, alias="maxFailures")
    epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1, alias="validationFraction")
    seed: int = 0


class JobSpec(_Model):
    data: DataSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    namespace: str = "default"


class RecommenderJob(_Model):
    api_version: Literal["kuberec.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["RecommenderJob"]
    metadata: Metadata
    spec: JobSpec


def load_job(path: Path) -> RecommenderJob:
    """Parse and validate a job file; errors name the field path and the rule."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such job file") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: expected a RecommenderJob mapping, found {type(document).__name__}"
        )
    try:
        return RecommenderJob.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from exc


def _describe(error: dict[str, object]) -> str:
    location = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))  # type: ignore[union-attr]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location or '(root)'}: {message}"
