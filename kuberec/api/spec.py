"""The typed model of a ``RecommenderJob`` (``kuberec.io/v1alpha1``).

This is the contract: the CLI validates job files with it, the CRD's OpenAPI
schema is generated from it (``operator/crd.py``), and the pipeline takes its
parameters from it. Field names are snake_case in Python and camelCase in YAML.
The model types are checked through :mod:`kuberec.api.model_types` (they live
above the contract, beside the models).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from kuberec.api import model_types
from kuberec.api.camel import CamelModel
from kuberec.api.names import (
    AUTO_BUDGET_SECONDS,
    AUTO_CANDIDATES,
    AUTO_MEMORY_GIB,
    AUTO_MODEL,
    METRICS,
    JobProtocol,
    Metric,
    MovieLensRelease,
)
from kuberec.api.status import JobStatus
from kuberec.errors import ConfigError

GROUP = "kuberec.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


MAX_STEPS = 10


def _cel(*rules: tuple[str, str]) -> ConfigDict:
    """CEL rules for the CRD (``x-kubernetes-validations``), mirroring a Python validator."""
    validations = [{"rule": rule, "message": message} for rule, message in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": validations})


def _increasing(path: str, length: int) -> str:
    """Strict order in standard CEL (no index loops there): one clause per adjacent pair."""
    return " && ".join(
        f"(size({path}) <= {i + 1} || {path}[{i}] < {path}[{i + 1}])" for i in range(length - 1)
    )


class FileSpec(CamelModel):
    """A CSV or Parquet file by path or URI, with optional column renames."""

    uri: str = Field(min_length=1)
    columns: dict[str, str] = Field(default_factory=dict)


class SyntheticDataSpec(CamelModel):
    users: int = Field(ge=1)
    items: int = Field(ge=1)
    interactions: int = Field(ge=1)
    seed: int = 0


FeedbackEvent = Literal["impression", "click", "purchase"]


class DataFeedbackSpec(CamelModel):
    """Train on the job's own traffic: the events of ``spec.feedback.sink`` join the data."""

    include: bool = False
    events: list[FeedbackEvent] = Field(default_factory=lambda: ["click", "purchase"], min_length=1)
    weight: float = Field(1.0, gt=0, description="the rating column of feedback rows")


class DataSpec(CamelModel):
    """Exactly one source: a MovieLens release, your own files, or synthetic data."""

    model_config = _cel(
        ("[has(self.movielens), has(self.interactions), has(self.synthetic)]"
         ".filter(x, x).size() == 1",
         "set exactly one of movielens, interactions, synthetic"),
        ("!(has(self.items) || has(self.users)) || has(self.interactions)",
         "items and users files go with interactions"),
    )  # fmt: skip

    movielens: MovieLensRelease | None = None
    interactions: FileSpec | None = None
    items: FileSpec | None = None
    users: FileSpec | None = None
    synthetic: SyntheticDataSpec | None = None
    feedback: DataFeedbackSpec = Field(default_factory=DataFeedbackSpec)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        chosen = [n for n in ("movielens", "interactions", "synthetic") if getattr(self, n)]
        if len(chosen) != 1:
            raise ValueError(
                "set exactly one of movielens, interactions, synthetic"
                + (f" (found {chosen})" if chosen else "")
            )
        if (self.items or self.users) and not self.interactions:
            raise ValueError("items and users files go with interactions, not with " + chosen[0])
        return self


class FeaturesSpec(CamelModel):
    profile: Literal["default", "production"] = "default"
    text_embeddings: bool = True
    recent_days: int = Field(30, ge=1)
    feature_service: Literal["training", "serving"] = "training"


class TuningSpec(CamelModel):
    """Ray Tune (ASHA) over the model's search space; 0 trials trains the given hyperparameters."""

    trials: int = Field(0, ge=0, le=200)


def _model_type_enum(schema: dict[str, Any]) -> None:
    schema["enum"] = model_types.catalogue().names()  # called only when the CRD is generated


class AutoModelSpec(CamelModel):
    """``model.type: auto``: the candidates tried on validation data, within a budget."""

    budget_seconds: float = Field(AUTO_BUDGET_SECONDS, gt=0)
    candidates: list[str] = Field(default_factory=lambda: list(AUTO_CANDIDATES), min_length=1)
    memory_gib: float = Field(AUTO_MEMORY_GIB, gt=0, alias="memoryGiB")

    def settings(self) -> dict[str, Any]:
        """Keyword arguments of ``components.train.auto.AutoSpec``."""
        return {
            "budget_seconds": self.budget_seconds,
            "candidates": tuple(self.candidates),
            "memory_gib": self.memory_gib,
        }


class ModelSpec(CamelModel):
    """The model type (``auto``: chosen on validation data) and its hyperparameters."""

    type: str = Field(AUTO_MODEL, json_schema_extra=_model_type_enum)
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    tuning: TuningSpec = Field(default_factory=TuningSpec)
    auto: AutoModelSpec = Field(default_factory=AutoModelSpec)

    @model_validator(mode="after")
    def _known_type_and_hyperparameters(self) -> ModelSpec:
        """The registry's own checks, when the job is loaded: not after ingest and features ran.

        The registry (and torch with it) is imported only when there is something to check:
        a named type, hyperparameters, or candidates other than the default ones.
        """
        auto = self.auto.settings()
        if (
            self.type == AUTO_MODEL
            and not self.hyperparameters
            and auto["candidates"] == AUTO_CANDIDATES
        ):
            return self
        try:
            model_types.catalogue().check(self.type, self.hyperparameters, auto)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self


class Toleration(CamelModel):
    key: str | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None


class RetrainOn(CamelModel):
    """Retrain once this many interactions arrived after the last training's data."""

    min_new_interactions: int | None = Field(None, ge=1)


QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"
CRON = r"^(@(hourly|daily|weekly|monthly|yearly))|(\S+ \S+ \S+ \S+ \S+)$"
DURATION = r"^[0-9]+(ms|s|m|h)$"


class TrainingSpec(CamelModel):
    """Ray placement, schedule and stopping; mirrors ``components.train.TrainSettings``."""

    # The docstring is the CRD's description (kept as generated). TrainSettings takes its
    # defaults from these fields, and TrainSettings.from_spec builds the loop's part.

    model_config = _cel(
        ("self.backend != 'local' || self.workers == 1",
         "the local backend runs one worker; use backend ray for more"),
    )  # fmt: skip

    backend: Literal["ray", "local"] = "ray"
    workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, ge=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    memory_per_worker: str | None = Field(None, pattern=QUANTITY)
    ray_address: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    priority_class_name: str | None = None
    schedule: str | None = Field(None, pattern=CRON, description="cron: retrain periodically")
    retrain_on: RetrainOn = Field(default_factory=RetrainOn)
    max_failures: int = Field(1, ge=0)
    epochs: int = Field(20, ge=1)
    patience: int = Field(3, ge=1)
    validation_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0
    averaging_period: int = Field(
        1, ge=1,
        description="1: DDP (gradients all-reduced every step); N > 1: local SGD, the "
        "workers average their weights every N steps, N times less traffic",
    )  # fmt: skip

    @model_validator(mode="after")
    def _local_is_one_worker(self) -> TrainingSpec:
        if self.backend == "local" and self.workers != 1:
            raise ValueError("the local backend runs one worker; use backend ray for more")
        return self


class GatesSpec(CamelModel):
    """What a challenger must reach to replace the champion."""

    model_config = _cel(
        ("!has(self.minImprovement) || double(self.minImprovement) >= 0.0"
         " || (has(self.allowRegression) && self.allowRegression)",
         "minImprovement below 0 lets a worse model replace the champion; "
         "set allowRegression: true to allow it"),
    )  # fmt: skip

    min_metrics: dict[str, float] = Field(default_factory=dict)
    min_improvement: float = Field(0.0, ge=-1, le=10)
    allow_regression: bool = Field(
        False, description="allow a negative minImprovement: a challenger up to that much "
        "worse than the champion is promoted",
    )  # fmt: skip

    @model_validator(mode="after")
    def _regression_is_explicit(self) -> GatesSpec:
        if self.min_improvement < 0 and not self.allow_regression:
            raise ValueError(
                f"minImprovement {self.min_improvement} lets a worse model replace the "
                "champion; set gates.allowRegression: true to allow it, or use a value >= 0"
            )
        return self


class EvaluationSpec(CamelModel):
    """The holdout both champion and challenger are scored on, and the gate."""

    protocol: JobProtocol = "temporal"
    k: int = Field(10, ge=1, le=1000)
    metric: Metric = "ndcg"
    seed: int = 42
    gates: GatesSpec = Field(default_factory=GatesSpec)

    model_config = _cel(
        ("!has(self.gates) || !has(self.gates.minMetrics) || "
         f"self.gates.minMetrics.all(m, m.matches('^({'|'.join(METRICS)})(@[0-9]+)?$'))",
         "gates.minMetrics keys are metrics like ndcg@10"),
    )  # fmt: skip

    @model_validator(mode="after")
    def _known_gate_metrics(self) -> EvaluationSpec:
        for name in self.gates.min_metrics:
            base, _, k = name.partition("@")
            if base not in METRICS or (k and not k.isdigit()):
                raise ValueError(
                    f"gates.minMetrics: {name!r} is not a metric; use one of "
                    f"{[m + '@K' for m in METRICS]}"
                )
        return self


class ResourcesSpec(CamelModel):
    cpu: str | None = Field(None, pattern=QUANTITY)
    memory: str | None = Field(None, pattern=QUANTITY)


class AnalysisSpec(CamelModel):
    """Thresholds of the canary analysis, checked at every interval."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p95_latency_ms: float = Field(500.0, gt=0)
    min_click_through_ratio: float = Field(0.9, ge=0)
    min_samples: int = Field(50, ge=0)
    on_insufficient_data: Literal["Hold", "Extend", "Fail"] = "Hold"


class CanarySpec(CamelModel):
    model_config = _cel((_increasing("self.steps", MAX_STEPS), "steps must be strictly increasing"))

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 25, 50, 100], min_length=1, max_length=MAX_STEPS
    )
    interval: str = Field("60s", pattern=DURATION)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    shadow: bool = False

    @model_validator(mode="after")
    def _increasing_steps(self) -> CanarySpec:
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)):
            raise ValueError("steps: must be strictly increasing")
        return self

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


#: The served default, chosen on a validation split carved from ml-100k's training
#: data (benchmarks/ranking.py, EASE-T): the largest diversity costing at most 1 %
#: NDCG@10 there (-0.8 %; on the test split -1.8 % NDCG@10, +34 % coverage).
DEFAULT_DIVERSITY = 0.3
DEFAULT_CANDIDATES = 1000
MAX_PINNED = 100
MAX_EXCLUDED = 10_000

ItemId = StrictInt | StrictStr


class RankingSpec(CamelModel):
    """The re-ranking stage after scoring: diversity, boosts, category caps, pins, exclusions."""

    diversity: float = Field(
        DEFAULT_DIVERSITY, ge=0, le=1,
        description="maximal marginal relevance: 0 is the plain top-K, 1 only avoids similar items",
    )  # fmt: skip
    novelty: float = Field(0.0, ge=0, le=1, description="boost for rarely taken items")
    freshness: float = Field(0.0, ge=0, le=1, description="boost for recently added items")
    max_per_category: int | None = Field(
        None, ge=1, description="at most this many items of one category (genre) per page"
    )
    page_size: int = Field(10, ge=1, le=1000, description="positions a category cap counts over")
    pinned: list[ItemId] = Field(
        default_factory=list,
        max_length=MAX_PINNED,
        description="item ids shown first, in this order",
    )
    excluded: list[ItemId] = Field(
        default_factory=list, max_length=MAX_EXCLUDED, description="item ids never recommended"
    )
    candidates: int = Field(
        DEFAULT_CANDIDATES,
        ge=1,
        le=100_000,
        description="the pool re-ranked: the best-scored items",
    )

    def override(self, values: RankingSpec | None) -> RankingSpec:
        """This strategy with the fields a request set replaced; ``excluded`` adds up.

        A request cannot bring back an item the job excludes.
        """
        if values is None:
            return self
        update = {name: getattr(values, name) for name in values.model_fields_set}
        if "excluded" in update:
            update["excluded"] = [
                *self.excluded,
                *(i for i in values.excluded if i not in self.excluded),
            ]
        return self.model_copy(update=update)

    def to_json(self) -> str:
        """What ``$KUBEREC_RANKING`` carries to a server: the fields not at their defaults."""
        return self.model_dump_json(by_alias=True, exclude_defaults=True)


class ServingSpec(CamelModel):
    replicas: int = Field(1, ge=1)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    canary: CanarySpec = Field(default_factory=CanarySpec)
    ranking: RankingSpec = Field(default_factory=RankingSpec)


class FeedbackSpec(CamelModel):
    """Where served traffic goes: Feast's online store at once, and a durable Parquet sink."""

    sink: str | None = Field(
        None,
        min_length=1,
        description="folder or URI of the Parquet "
        "dataset (partitioned by day) that feedback events land in",
    )
    push: bool = Field(True, description="push clicks and purchases to the Feast online store")
    impressions: bool = Field(
        False, description="also record every served item as an impression in the sink"
    )
    queue_size: int = Field(
        10_000,
        ge=1,
        description="events waiting to be pushed; beyond "
        "it they are dropped and counted, never blocking a request",
    )


class JobSpec(CamelModel):
    model_config = _cel(
        ("!has(self.data.feedback) || !self.data.feedback.include || "
         "(has(self.feedback) && has(self.feedback.sink))",
         "data.feedback.include reads the events of feedback.sink; set feedback.sink"),
    )  # fmt: skip

    data: DataSpec
    features: FeaturesSpec = Field(default_factory=FeaturesSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    feedback: FeedbackSpec = Field(default_factory=FeedbackSpec)
    suspend: bool = False

    @model_validator(mode="after")
    def _feedback_has_a_sink(self) -> JobSpec:
        if self.data.feedback.include and not self.feedback.sink:
            raise ValueError(
                "data.feedback.include reads the events of feedback.sink; set feedback.sink"
            )
        return self


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    namespace: str = "default"
    generation: int | None = None
    uid: str | None = None


class RecommenderJob(CamelModel):
    api_version: Literal["kuberec.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["RecommenderJob"]
    metadata: Metadata
    spec: JobSpec
    status: JobStatus | None = None


def parse_duration(text: str) -> float:
    """``"90s"``, ``"5m"``, ``"250ms"``, ``"1h"`` -> seconds."""
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    raise ConfigError(f"{text!r} is not a duration like 30s, 5m, 1h")


def spec_hash(spec: JobSpec) -> str:
    """What decides whether a trained model still matches the spec.

    ``serving``, ``feedback`` (where served traffic goes) and ``suspend`` are excluded.

    Fields left at their defaults are left out, so a release that adds a field
    (with a default that keeps today's behaviour) does not retrain every job.
    """
    relevant = spec.model_dump(
        mode="json",
        by_alias=True,
        exclude={"serving", "feedback", "suspend"},
        exclude_defaults=True,
    )
    text = json.dumps(relevant, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_job(path: Path) -> RecommenderJob:
    """Parse and validate a job file; errors name the field path and the rule."""
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such job file") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a directory; pass the job's YAML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file ({exc.reason} at byte {exc.start}); "
                          "pass the job's YAML file") from exc  # fmt: skip
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(document, dict):
        raise ConfigError(
            f"{path}: expected a RecommenderJob mapping, found {type(document).__name__}"
        )
    try:
        return RecommenderJob.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {describe_errors(exc)}") from exc


def describe_errors(exc: ValidationError) -> str:
    """Every error of ``exc`` as ``field.path: rule``, joined on one line."""
    return "; ".join(_describe(e) for e in exc.errors())  # type: ignore[arg-type]


def _describe(error: dict[str, object]) -> str:
    location = ".".join(str(p) for p in error["loc"] if not str(p).startswith("function-"))  # type: ignore[union-attr]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location or '(root)'}: {message}"
