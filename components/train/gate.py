"""The gate: does a challenger replace the champion? A pure decision with its reasons."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Gate:
    metric: str  # e.g. "ndcg@10": the metric the improvement is measured on
    min_metrics: Mapping[str, float] = field(default_factory=dict)  # absolute floors
    min_improvement: float = 0.0  # relative to the champion on `metric`; 0.0: at least as good


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reasons: list[str]
    metric: str
    challenger: float
    champion: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    gate: Gate, challenger: Mapping[str, float], champion: Mapping[str, float] | None
) -> Decision:
    """Accept only if every floor holds and the challenger beats the champion by the margin."""
    reasons: list[str] = []
    accepted = True
    for name, floor in sorted(gate.min_metrics.items()):
        value = challenger.get(name)
        if value is None:
            accepted = False
            reasons.append(f"{name} was not measured (gate needs it >= {floor})")
        elif value < floor:
            accepted = False
            reasons.append(f"{name} {value:.4f} is below the minimum {floor}")
        else:
            reasons.append(f"{name} {value:.4f} >= minimum {floor}")
    value = challenger[gate.metric]
    baseline = None if champion is None else champion.get(gate.metric)
    if baseline is None:
        reasons.append(f"no champion to beat; {gate.metric} {value:.4f}")
    else:
        needed = baseline * (1 + gate.min_improvement)
        if value >= needed:
            worse = ""
            if value < baseline:  # only with a negative min_improvement
                worse = ": worse than the champion, allowed by gates.allowRegression"
            reasons.append(
                f"{gate.metric} {value:.4f} vs champion {baseline:.4f} "
                f"({_change(value, baseline)}; needed >= {needed:.4f}){worse}"
            )
        else:
            accepted = False
            reasons.append(
                f"{gate.metric} {value:.4f} does not beat the champion's {baseline:.4f} "
                f"by {gate.min_improvement:.1%} ({_change(value, baseline)}; "
                f"needed >= {needed:.4f})"
            )
    return Decision(accepted, reasons, gate.metric, value, baseline)


def _change(value: float, baseline: float) -> str:
    if baseline == 0:
        return "champion scored 0"
    return f"{(value - baseline) / baseline:+.1%}"
