"""What a model type declares beside its model: defaults, rules, constructor keys, search space.

Each model module lists its types in ``MODEL_TYPES`` under its class; the registry
(:mod:`.registry`) collects them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kuberec.components.models.hparams import HParam, Rule
from kuberec.components.models.search_space import Domain

if TYPE_CHECKING:
    from kuberec.components.models.base import Recommender

#: Validated hyperparameters (values are plain JSON types: int, float, bool, str, list[int]).
HParams = dict[str, Any]
CrossCheck = Callable[[HParams], None]


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
