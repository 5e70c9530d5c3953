"""What a model type declares beside its model: defaults, rules, constructor keys, search space.

Each model module lists its types in ``MODEL_TYPES`` under its class; the registry
(:mod:`.registry`) collects them. Search spaces are plain values here (no Ray import in a
model module); ``components/train/tune.py`` turns them into Ray Tune domains.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kuberec.components.models.hparams import HParam, Rule

if TYPE_CHECKING:
    from kuberec.components.models.base import Recommender

#: Validated hyperparameters (values are plain JSON types: int, float, bool, str, list[int]).
HParams = dict[str, Any]
CrossCheck = Callable[[HParams], None]


@dataclass(frozen=True)
class LogUniform:
    """Ray Tune's ``loguniform(low, high)``."""

    low: float
    high: float


@dataclass(frozen=True)
class Uniform:
    """Ray Tune's ``uniform(low, high)``."""

    low: float
    high: float


@dataclass(frozen=True)
class Choice:
    """Ray Tune's ``choice(values)``."""

    values: tuple[Any, ...]


Domain = LogUniform | Uniform | Choice
#: The optimiser's weight decay, searched the same way for every trained type.
WEIGHT_DECAY = LogUniform(1e-6, 1e-3)


@dataclass(frozen=True)
class ModelType:
    """A model type: its class, defaults, rules and the keys its constructor takes.

    ``search_space`` is what Ray Tune searches (ranges around the defaults, every value
    passing the rules); None on a trained type tunes the optimiser only.
    """

    name: str
    cls: type[Recommender]
    description: str
    defaults: Mapping[str, HParam]
    rules: Mapping[str, Rule]
    model_keys: tuple[str, ...]
    cross_check: CrossCheck | None = field(default=None)
    search_space: Mapping[str, Domain] | None = field(default=None)

    @property
    def trainable(self) -> bool:
        return self.cls.family != "none"


def training_defaults(lr: float, batch_size: int) -> dict[str, HParam]:
    """The optimisation loop's defaults (components/models/hparams.py TRAINING_RULES)."""
    return {"lr": lr, "batch_size": batch_size, "weight_decay": 0.0, "max_grad_norm": 0.0}
