"""Search domains as plain values, so a model declares its space without importing Ray.

``components/train/tune.py`` turns them into Ray Tune's domains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
