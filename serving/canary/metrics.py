"""Per-version counters from Prometheus text, and the per-interval numbers between two scrapes.

The same code reads a BentoML server's ``/metrics`` (kuberec counters labelled
``model_version``) and the canary router's ``/router/metrics`` (labelled
``track``); which metric names and labels mean *requests*, *errors*,
*latency*, *impressions* and *clicks* is a :class:`MetricNames`. Counters are
cumulative, so an interval is the difference of two scrapes, and the p95 comes
from the difference of the latency histograms' buckets (as PromQL's
``histogram_quantile`` over ``increase``), not from a process-lifetime summary.
"""

from __future__ import annotations

import math
import re
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kuberec.errors import ConfigError
from kuberec.serving.canary.analysis import VersionMetrics


@dataclass(frozen=True)
class Selector:
    """The samples of one metric family whose labels match; ``~regex`` values match by regex."""

    family: str
    labels: tuple[tuple[str, str], ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        for key, want in self.labels:
            have = labels.get(key, "")
            if want.startswith("~"):
                if not re.fullmatch(want[1:], have):
                    return False
            elif have != want:
                return False
        return True


@dataclass(frozen=True)
class MetricNames:
    """Which families count what, and the label that names the version."""

    requests: Selector
    errors: Selector
    latency: Selector  # a histogram, in seconds
    impressions: Selector
    clicks: Selector
    version_label: str = "model_version"


#: The canary router's own metrics (``router.py``), one series per track.
ROUTER = MetricNames(
    requests=Selector("kuberec_router_requests", (("endpoint", "/recommend"),)),
    errors=Selector("kuberec_router_errors", (("endpoint", "/recommend"),)),
    latency=Selector("kuberec_router_request_duration_seconds", (("endpoint", "/recommend"),)),
    impressions=Selector("kuberec_router_feedback", (("event", "impression"),)),
    clicks=Selector("kuberec_router_feedback", (("event", "click"),)),
    version_label="track",
)

#: The BentoML service's kuberec metrics (``serving/service.py``), one series per model version.
SERVICE = MetricNames(
    requests=Selector("kuberec_requests", (("endpoint", "/recommend"),)),
    errors=Selector("kuberec_requests", (("endpoint", "/recommend"), ("status", "~5.."))),
    latency=Selector("kuberec_request_latency_seconds", (("endpoint", "/recommend"),)),
    impressions=Selector("kuberec_feedback_events", (("event", "impression"),)),
    clicks=Selector("kuberec_feedback_events", (("event", "click"),)),
)


@dataclass(frozen=True)
class Counters:
    """One version's cumulative counters at one scrape."""

    requests: float = 0.0
    errors: float = 0.0
    impressions: float = 0.0
    clicks: float = 0.0
    #: cumulative latency histogram: (upper bound in seconds, observations <= bound)
    buckets: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Counters:
        """The inverse of :meth:`to_dict`, also after a JSON round trip (lists for tuples)."""
        buckets = tuple((float(le), float(n)) for le, n in data.get("buckets", ()))
        return cls(**{**data, "buckets": buckets})

    def since(self, earlier: Counters | None) -> Counters:
        """The increase since ``earlier``; a counter that went down restarted from zero."""
        if earlier is None:
            return self

        def inc(now: float, then: float) -> float:
            return now - then if now >= then else now

        old = dict(earlier.buckets)
        reset = self.requests < earlier.requests
        return Counters(
            requests=inc(self.requests, earlier.requests),
            errors=inc(self.errors, earlier.errors),
            impressions=inc(self.impressions, earlier.impressions),
            clicks=inc(self.clicks, earlier.clicks),
            buckets=tuple(
                (le, count if reset else inc(count, old.get(le, 0.0))) for le, count in self.buckets
            ),
        )

    def metrics(self) -> VersionMetrics:
        """These counters (an increase) as the analysis reads them."""
        p95 = quantile(0.95, self.buckets)
        return VersionMetrics(
            requests=round(self.requests),
            errors=round(self.errors),
            latency_p95_ms=None if p95 is None else round(p95 * 1000.0, 3),
            impressions=round(self.impressions),
            clicks=round(self.clicks),
        )


def parse(text: str, names: MetricNames) -> dict[str, Counters]:
    """Prometheus exposition text -> cumulative counters per version label value."""
    sums: dict[str, dict[str, float]] = {}
    buckets: dict[str, dict[float, float]] = {}
    wanted = {
        "requests": names.requests, "errors": names.errors,
        "impressions": names.impressions, "clicks": names.clicks,
    }  # fmt: skip
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as exc:
        raise ConfigError(f"cannot parse the Prometheus metrics: {exc}") from exc
    for family in families:
        for sample in family.samples:
            version = sample.labels.get(names.version_label)
            if version is None:
                continue
            for key, selector in wanted.items():
                if sample.name in (
                    selector.family,
                    selector.family + "_total",
                ) and selector.matches(sample.labels):
                    per = sums.setdefault(version, {})
                    per[key] = per.get(key, 0.0) + sample.value
            latency = names.latency
            if sample.name == latency.family + "_bucket" and latency.matches(sample.labels):
                le = float(sample.labels["le"])
                per_le = buckets.setdefault(version, {})
                per_le[le] = per_le.get(le, 0.0) + sample.value
    return {
        version: Counters(
            **sums.get(version, {}),
            buckets=tuple(sorted(buckets.get(version, {}).items())),
        )
        for version in set(sums) | set(buckets)
    }


def scrape(url: str, names: MetricNames, *, timeout: float = 5.0) -> dict[str, Counters]:
    """GET a ``/metrics`` URL and parse it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError as exc:
        raise ConfigError(f"cannot read metrics from {url}: {exc}") from exc
    return parse(text, names)


def interval(before: dict[str, Counters], after: dict[str, Counters]) -> dict[str, VersionMetrics]:
    """Per-version metrics of the interval between two scrapes."""
    return {version: now.since(before.get(version)).metrics() for version, now in after.items()}


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float | None:
    """PromQL ``histogram_quantile``: linear within the bucket that holds rank ``q``."""
    if not buckets:
        return None
    ordered = sorted(buckets)
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for le, count in ordered:
        if count >= rank:
            if math.isinf(le):
                return lower_bound  # above the largest finite bound: report that bound
            width = count - lower_count
            share = (rank - lower_count) / width if width > 0 else 1.0
            return lower_bound + (le - lower_bound) * share
        lower_bound, lower_count = le, count
    return ordered[-1][0]
