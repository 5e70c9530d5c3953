"""Canary analysis: one interval's verdict, a pure function of measured numbers.

The operator's reconcile loop (on Kubernetes and on the local platform) calls
:func:`analyse` once per analysis interval with what each version did in that
interval; :mod:`.steps` turns the verdict into the next traffic weight.
Nothing here reads a clock, a socket or a file, so every verdict can be
replayed from the values it records.

Rules, per interval:

* a check needs ``min_samples`` canary requests (impressions for the
  click-through check), and as many on the reference it compares with;
* any check that fails is a **Breach** (rollback), even while other checks
  still lack data: a canary that errors is stopped as soon as it is measured;
* otherwise a check without enough data makes the interval **Insufficient**,
  handled by ``on_insufficient_data``: ``Hold`` (same weight, fresh interval),
  ``Extend`` (same weight, the next interval adds to this one, at most
  ``max_extensions`` times, then rollback) or ``Fail`` (rollback);
* otherwise **Pass**: advance to the next step, promote after the last.

At 100 % the stable version gets no traffic; the ratio checks then compare
with the *baseline*, the stable version's last interval with enough samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from kuberec.errors import ConfigError

InsufficientAction = Literal["Hold", "Extend", "Fail"]


@dataclass(frozen=True)
class VersionMetrics:
    """What one version did in one analysis interval (deltas, not cumulative counters)."""

    requests: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None
    impressions: int = 0
    clicks: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def click_through(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VersionMetrics:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


@dataclass(frozen=True)
class Thresholds:
    """The analysis spec: ``spec.serving.canary.analysis`` (camelCase accepted by from_dict)."""

    max_error_rate: float = 0.01
    max_p95_latency_ms: float | None = 500.0
    #: canary p95 may be at most this multiple of the reference's p95 (None: no ratio check)
    max_p95_latency_ratio: float | None = None
    #: ...and a ratio breach also needs this many ms more, so 2 ms vs 5 ms is no breach
    latency_tolerance_ms: float = 10.0
    min_click_through_ratio: float | None = 0.9
    min_samples: int = 50
    on_insufficient_data: InsufficientAction = "Hold"

    def __post_init__(self) -> None:
        if self.on_insufficient_data not in ("Hold", "Extend", "Fail"):
            raise ConfigError(
                "onInsufficientData must be Hold, Extend or Fail, "
                f"got {self.on_insufficient_data!r}"
            )
        if self.min_samples < 0 or not 0 <= self.max_error_rate <= 1:
            raise ConfigError("minSamples must be >= 0 and maxErrorRate within 0..1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        """Snake or camel case keys (``maxErrorRate`` or ``max_error_rate``); unknown keys fail."""
        snake = {_snake(k): v for k, v in data.items()}
        unknown = set(snake) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown canary analysis setting(s): {sorted(unknown)}")
        return cls(**snake)


@dataclass(frozen=True)
class Reason:
    """One failed or unmeasurable check, with the numbers that decided it."""

    metric: str
    value: float | None
    threshold: float
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pass:
    values: dict[str, float] = field(default_factory=dict)
    kind: Literal["Pass"] = "Pass"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": dict(self.values)}


@dataclass(frozen=True)
class Breach:
    reasons: tuple[Reason, ...]
    values: dict[str, float] = field(default_factory=dict)
    kind: Literal["Breach"] = "Breach"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reasons": [r.to_dict() for r in self.reasons],
            "values": dict(self.values),
        }


@dataclass(frozen=True)
class Insufficient:
    action: InsufficientAction
    missing: tuple[Reason, ...] = ()
    values: dict[str, float] = field(default_factory=dict)
    kind: Literal["Insufficient"] = "Insufficient"

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "missing": [r.to_dict() for r in self.missing],
            "values": dict(self.values),
        }


Verdict = Pass | Breach | Insufficient


def analyse(
    canary: VersionMetrics,
    stable: VersionMetrics,
    thresholds: Thresholds,
    *,
    baseline: VersionMetrics | None = None,
) -> Verdict:
    """Compare one interval of the canary with the stable version (or the baseline)."""
    t = thresholds
    n = t.min_samples
    reference = stable if stable.requests >= max(n, 1) else baseline
    if reference is not None and reference.requests < max(n, 1):
        reference = None
    values = _values(canary, stable, reference if reference is not stable else None)
    breaches: list[Reason] = []
    missing: list[Reason] = []

    enough = canary.requests >= max(n, 1)
    if not enough:
        missing.append(_missing("requests", canary.requests, n, "canary requests"))
    else:
        rate = canary.error_rate or 0.0
        if rate > t.max_error_rate:
            breaches.append(Reason(
                "error_rate", rate, t.max_error_rate,
                f"canary error rate {rate:.1%} ({canary.errors}/{canary.requests}) "
                f"> max {t.max_error_rate:.1%}",
            ))  # fmt: skip
    if t.max_p95_latency_ms is not None or t.max_p95_latency_ratio is not None:
        p95 = canary.latency_p95_ms
        if enough and p95 is None:
            missing.append(_missing("latency_p95_ms", None, n, "canary latencies"))
        elif enough and p95 is not None:
            breaches.extend(_latency_checks(p95, reference, t, missing))
    if t.min_click_through_ratio is not None:
        breaches.extend(_click_through_check(canary, reference, stable, t, missing))
    if breaches:
        return Breach(tuple(breaches), values)
    if missing:
        return Insufficient(t.on_insufficient_data, tuple(missing), values)
    return Pass(values)


def _latency_checks(
    p95: float, reference: VersionMetrics | None, t: Thresholds, missing: list[Reason]
) -> list[Reason]:
    found = []
    if t.max_p95_latency_ms is not None and p95 > t.max_p95_latency_ms:
        found.append(Reason(
            "latency_p95_ms", p95, t.max_p95_latency_ms,
            f"canary p95 latency {p95:.0f} ms > max {t.max_p95_latency_ms:.0f} ms",
        ))  # fmt: skip
    if t.max_p95_latency_ratio is not None:
        ref = reference.latency_p95_ms if reference is not None else None
        if ref is None:
            missing.append(_missing("latency_p95_ratio", None, t.min_samples, "stable latencies"))
        elif p95 > t.max_p95_latency_ratio * ref and p95 - ref > t.latency_tolerance_ms:
            found.append(Reason(
                "latency_p95_ratio", p95 / ref if ref else float("inf"), t.max_p95_latency_ratio,
                f"canary p95 latency {p95:.0f} ms > {t.max_p95_latency_ratio:g} x stable "
                f"{ref:.0f} ms",
            ))  # fmt: skip
    return found


def _click_through_check(
    canary: VersionMetrics,
    reference: VersionMetrics | None,
    stable: VersionMetrics,
    t: Thresholds,
    missing: list[Reason],
) -> list[Reason]:
    assert t.min_click_through_ratio is not None
    n = max(t.min_samples, 1)
    if canary.impressions < n:
        missing.append(_missing("impressions", canary.impressions, n, "canary impressions"))
        return []
    ref = reference if reference is not None and reference.impressions >= n else None
    if ref is None:
        have = stable.impressions if reference is None else reference.impressions
        missing.append(_missing("impressions", have, n, "stable impressions"))
        return []
    canary_ctr, ref_ctr = canary.click_through or 0.0, ref.click_through or 0.0
    if ref_ctr == 0.0:
        return []  # nothing to fall below
    ratio = canary_ctr / ref_ctr
    if ratio >= t.min_click_through_ratio:
        return []
    return [Reason(
        "click_through_ratio", ratio, t.min_click_through_ratio,
        f"canary click-through {canary_ctr:.2%} is {ratio:.2f} x stable {ref_ctr:.2%} "
        f"< min {t.min_click_through_ratio:g} x",
    )]  # fmt: skip


def _missing(metric: str, have: float | None, need: int, what: str) -> Reason:
    shown = "none" if have is None else f"{have:g}"
    return Reason(metric, have, float(need), f"{what}: {shown} of {need} needed")


def _values(
    canary: VersionMetrics, stable: VersionMetrics, baseline: VersionMetrics | None
) -> dict[str, float]:
    """Flat ``{track_metric: value}``: ``status.rollout.decisions[].values``."""
    values: dict[str, float] = {}
    pairs = [("canary", canary), ("stable", stable)]
    if baseline is not None:
        pairs.append(("baseline", baseline))
    for track, m in pairs:
        for name, value in (
            ("requests", m.requests), ("errors", m.errors), ("error_rate", m.error_rate),
            ("latency_p95_ms", m.latency_p95_ms), ("impressions", m.impressions),
            ("clicks", m.clicks), ("click_through", m.click_through),
        ):  # fmt: skip
            if value is not None:
                values[f"{track}_{name}"] = round(float(value), 6)
    return values


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
