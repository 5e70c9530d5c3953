"""Hyperparameter rules: each checks one value and says, in words, what it must be.

Errors name the model type, the key and the rule (``mf hyperparameter 'dim': must be
an integer >= 1, got 0``), so a job file can be fixed without reading code.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

HParam = int | float | bool | str | list[int]


class RuleViolation(ValueError):
    """A value breaks its rule; the message is the rule ("must be >= 1")."""


@dataclass(frozen=True)
class IntRange:
    minimum: int = 1
    maximum: int | None = None

    def check(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise RuleViolation(f"must be an integer {self._bounds()}")
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            raise RuleViolation(f"must be {self._bounds()}")
        return int(value)

    def _bounds(self) -> str:
        if self.maximum is None:
            return f">= {self.minimum}"
        return f"in [{self.minimum}, {self.maximum}]"


@dataclass(frozen=True)
class FloatRange:
    minimum: float = 0.0
    maximum: float | None = None
    open_minimum: bool = False
    open_maximum: bool = False

    def check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise RuleViolation(f"must be a number {self._bounds()}")
        v = float(value)
        low_ok = v > self.minimum if self.open_minimum else v >= self.minimum
        high_ok = self.maximum is None or (
            v < self.maximum if self.open_maximum else v <= self.maximum
        )
        if not math.isfinite(v) or not (low_ok and high_ok):
            raise RuleViolation(f"must be {self._bounds()}")
        return v

    def _bounds(self) -> str:
        low = f"> {self.minimum}" if self.open_minimum else f">= {self.minimum}"
        if self.maximum is None:
            return low
        high = f"< {self.maximum}" if self.open_maximum else f"<= {self.maximum}"
        return f"{low} and {high}"


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]

    def check(self, value: object) -> str:
        if value not in self.choices:
            raise RuleViolation(f"must be one of {list(self.choices)}")
        return str(value)


@dataclass(frozen=True)
class Flag:
    def check(self, value: object) -> bool:
        if not isinstance(value, (bool, np.bool_)):
            raise RuleViolation("must be true or false")
        return bool(value)


@dataclass(frozen=True)
class IntList:
    """A non-empty list of layer sizes."""

    minimum: int = 1

    def check(self, value: object) -> list[int]:
        rule = f"must be a non-empty list of integers >= {self.minimum}"
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or not value:
            raise RuleViolation(rule)
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < self.minimum:
                raise RuleViolation(rule)
            out.append(int(v))
        return out


Rule = IntRange | FloatRange | OneOf | Flag | IntList
#: A probability that may be 0 but not 1 (dropout).
UNIT = FloatRange(0.0, 1.0, open_maximum=True)

#: Settings of the optimisation loop, shared by every trained model type.
TRAINING_RULES: dict[str, Rule] = {
    "lr": FloatRange(0.0, open_minimum=True),
    "batch_size": IntRange(1),
    "weight_decay": FloatRange(0.0),
    "max_grad_norm": FloatRange(0.0),  # 0 disables clipping
}
