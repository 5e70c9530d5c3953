"""Per-version interval metrics from two Prometheus scrapes (router and BentoML service names)."""

from __future__ import annotations

import pytest

from kuberec.errors import ConfigError
from kuberec.serving.canary.metrics import ROUTER, SERVICE, Counters, interval, parse, quantile


def _service_text(requests: int, errors: int, fast: int, slow: int, impressions: int,
                  clicks: int, version: str = "recs:v2") -> str:  # fmt: skip
    total = fast + slow
    labels = f'endpoint="/recommend",model_version="{version}"'
    return f"""
# HELP kuberec_requests_total Requests by endpoint and HTTP status
# TYPE kuberec_requests_total counter
kuberec_requests_total{{endpoint="/recommend",status="200",model_version="{version}"}} {requests}
kuberec_requests_total{{endpoint="/recommend",status="503",model_version="{version}"}} {errors}
kuberec_requests_total{{endpoint="/feedback",status="200",model_version="{version}"}} 999
# HELP kuberec_request_latency_seconds Request latency by endpoint
# TYPE kuberec_request_latency_seconds histogram
kuberec_request_latency_seconds_bucket{{{labels},le="0.01"}} {fast}
kuberec_request_latency_seconds_bucket{{{labels},le="0.1"}} {fast}
kuberec_request_latency_seconds_bucket{{{labels},le="1.0"}} {total}
kuberec_request_latency_seconds_bucket{{{labels},le="+Inf"}} {total}
kuberec_request_latency_seconds_count{{endpoint="/recommend",model_version="{version}"}} {total}
kuberec_request_latency_seconds_sum{{endpoint="/recommend",model_version="{version}"}} 1.0
# HELP kuberec_feedback_events_total Feedback events by type
# TYPE kuberec_feedback_events_total counter
kuberec_feedback_events_total{{event="impression",model_version="{version}"}} {impressions}
kuberec_feedback_events_total{{event="click",model_version="{version}"}} {clicks}
"""


def test_the_services_counters_are_read_per_model_version() -> None:
    ((version, counters),) = parse(_service_text(90, 10, 100, 0, 500, 40), SERVICE).items()
    assert version == "recs:v2"
    assert (counters.requests, counters.errors) == (100, 10)  # 200s and 503s; /feedback apart
    assert (counters.impressions, counters.clicks) == (500, 40)


def test_an_interval_is_the_difference_of_two_scrapes() -> None:
    before = parse(_service_text(90, 10, 100, 0, 500, 40), SERVICE)
    after = parse(_service_text(170, 30, 100, 100, 1500, 90), SERVICE)
    m = interval(before, after)["recs:v2"]
    assert (m.requests, m.errors, m.impressions, m.clicks) == (100, 20, 1000, 50)
    # the interval's 100 requests all took 0.1..1 s: its p95 is in that bucket, not the 10 ms one
    assert m.latency_p95_ms == pytest.approx(955.0)


def test_a_restarted_server_counts_from_zero() -> None:
    before = parse(_service_text(900, 0, 900, 0, 0, 0), SERVICE)
    after = parse(_service_text(30, 0, 30, 0, 0, 0), SERVICE)
    assert interval(before, after)["recs:v2"].requests == 30


def test_the_p95_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    assert quantile(0.95, ((0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0))) == pytest.approx(0.19)
    assert quantile(0.95, ((0.1, 0.0), (float("inf"), 10.0))) == 0.1
    assert quantile(0.95, ()) is None
    assert Counters().metrics().latency_p95_ms is None


def test_the_routers_metrics_are_read_per_track() -> None:
    text = """
# TYPE kuberec_router_requests counter
kuberec_router_requests_total{track="canary",endpoint="/recommend"} 12
kuberec_router_requests_total{track="canary",endpoint="/feedback"} 100
kuberec_router_requests_total{track="stable",endpoint="/recommend"} 88
# TYPE kuberec_router_errors counter
kuberec_router_errors_total{track="canary",endpoint="/recommend"} 3
# TYPE kuberec_router_feedback counter
kuberec_router_feedback_total{track="canary",event="impression"} 90
kuberec_router_feedback_total{track="canary",event="click"} 10
"""
    found = parse(text, ROUTER)
    assert (found["canary"].requests, found["canary"].errors, found["canary"].clicks) == (12, 3, 10)
    assert found["stable"].requests == 88


def test_text_that_is_not_prometheus_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Prometheus"):
        parse("kuberec_requests_total{endpoint= 12 oops", SERVICE)
