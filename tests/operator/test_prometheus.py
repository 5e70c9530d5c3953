"""Per-version canary traffic from Prometheus instant queries (an HTTP stand-in answers)."""

from __future__ import annotations

import pytest

from kuberec.operator.kubernetes.prometheus import Prometheus, PrometheusUnavailable, queries
from kuberec.serving.canary.analysis import VersionMetrics
from tests.support.operator_harness import PrometheusStandIn, Traffic


def test_the_queries_select_kuberec_series_by_namespace_and_version() -> None:
    made = queries("recs", ["movies:v1", "movies:v2.1"], 90)
    assert made["requests"] == (
        'sum by (model_version) (increase(kuberec_requests_total{namespace="recs", '
        'model_version=~"movies:v1|movies:v2\\\\.1", endpoint="/recommend"}[90s]))'
    )
    assert 'status=~"5.."' in made["errors"]
    assert made["p95"].startswith("histogram_quantile(0.95, sum by (model_version, le)")
    assert "kuberec_request_latency_seconds_bucket" in made["p95"]
    assert 'event="impression"' in made["impressions"] and 'event="click"' in made["clicks"]


def test_a_window_gives_the_analysis_its_numbers_per_track(prometheus: PrometheusStandIn) -> None:
    prometheus.traffic = {
        "movies:v1": Traffic(requests=200.4, errors=1, p95_s=0.0421, impressions=150, clicks=15),
        "movies:v2": Traffic(requests=99.6, errors=3, p95_s=0.2, impressions=80, clicks=4),
        "other:v9": Traffic(requests=1000),
    }
    window = Prometheus(prometheus.url).window(
        "default", {"stable": "movies:v1", "canary": "movies:v2"}, 61.2
    )
    assert window == {
        "stable": VersionMetrics(requests=200, errors=1, latency_p95_ms=42.1, impressions=150,
                                 clicks=15),
        "canary": VersionMetrics(requests=100, errors=3, latency_p95_ms=200.0, impressions=80,
                                 clicks=4),
    }  # fmt: skip
    assert all("[62s]" in q for q in prometheus.queries)


def test_a_version_without_series_measures_zero(prometheus: PrometheusStandIn) -> None:
    window = Prometheus(prometheus.url).window("default", {"canary": "movies:v2"}, 30)
    assert window == {"canary": VersionMetrics()}


def test_prometheus_down_is_a_typed_transient_error(prometheus: PrometheusStandIn) -> None:
    prometheus.unavailable = True
    with pytest.raises(PrometheusUnavailable, match="503"):
        Prometheus(prometheus.url).window("default", {"canary": "v2"}, 30)


def test_an_unreachable_prometheus_is_the_same_error() -> None:
    with pytest.raises(PrometheusUnavailable, match="unreachable"):
        Prometheus("http://127.0.0.1:9", timeout_s=1).query("up")
