"""Canary analysis and the rollout state machine, on numbers alone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kuberec.errors import ConfigError
from kuberec.serving.canary.analysis import (
    Breach,
    Insufficient,
    Pass,
    Thresholds,
    VersionMetrics,
    analyse,
)
from kuberec.serving.canary.steps import (
    RolloutPolicy,
    RolloutState,
    evaluate_interval,
    next_step,
    start,
)

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
GOOD = VersionMetrics(requests=200, errors=0, latency_p95_ms=20.0, impressions=2000, clicks=300)
STABLE = VersionMetrics(requests=800, errors=1, latency_p95_ms=22.0, impressions=8000, clicks=1200)
THRESHOLDS = Thresholds(max_error_rate=0.02, max_p95_latency_ms=200.0, max_p95_latency_ratio=2.0,
                        min_click_through_ratio=0.8, min_samples=50)  # fmt: skip
POLICY = RolloutPolicy(steps=(10, 25, 50, 100), thresholds=THRESHOLDS)


def test_a_canary_as_good_as_stable_passes() -> None:
    verdict = analyse(GOOD, STABLE, THRESHOLDS)
    assert isinstance(verdict, Pass)
    assert verdict.values["canary_requests"] == 200
    assert verdict.values["stable_click_through"] == 0.15


def test_an_error_rate_above_the_maximum_is_a_breach_naming_the_rate() -> None:
    canary = VersionMetrics(requests=100, errors=10, latency_p95_ms=20, impressions=900, clicks=140)
    verdict = analyse(canary, STABLE, THRESHOLDS)
    assert isinstance(verdict, Breach)
    (reason,) = verdict.reasons
    assert (reason.metric, reason.value, reason.threshold) == ("error_rate", 0.1, 0.02)
    assert "10.0% (10/100)" in str(reason)


def test_a_p95_latency_above_the_absolute_maximum_is_a_breach() -> None:
    canary = VersionMetrics(requests=100, latency_p95_ms=450.0, impressions=1000, clicks=150)
    verdict = analyse(canary, STABLE, THRESHOLDS)
    assert isinstance(verdict, Breach)
    assert {r.metric for r in verdict.reasons} == {"latency_p95_ms", "latency_p95_ratio"}


def test_a_p95_latency_above_the_ratio_to_stable_is_a_breach() -> None:
    canary = VersionMetrics(requests=100, latency_p95_ms=90.0, impressions=1000, clicks=150)
    verdict = analyse(canary, STABLE, THRESHOLDS)
    assert isinstance(verdict, Breach)
    assert [r.metric for r in verdict.reasons] == ["latency_p95_ratio"]


def test_a_small_absolute_latency_difference_is_no_ratio_breach() -> None:
    stable = VersionMetrics(requests=100, latency_p95_ms=2.0, impressions=1000, clicks=150)
    canary = VersionMetrics(requests=100, latency_p95_ms=6.0, impressions=1000, clicks=150)
    assert isinstance(analyse(canary, stable, THRESHOLDS), Pass)


def test_a_click_through_below_the_ratio_to_stable_is_a_breach() -> None:
    canary = VersionMetrics(requests=100, latency_p95_ms=20.0, impressions=1000, clicks=60)
    verdict = analyse(canary, STABLE, THRESHOLDS)
    assert isinstance(verdict, Breach)
    (reason,) = verdict.reasons
    assert reason.metric == "click_through_ratio"
    assert reason.value == pytest.approx(0.4)


def test_too_few_canary_requests_is_insufficient_with_the_configured_action() -> None:
    few = VersionMetrics(requests=10, latency_p95_ms=20.0, impressions=100, clicks=15)
    for action in ("Hold", "Extend", "Fail"):
        verdict = analyse(few, STABLE, Thresholds(min_samples=50, on_insufficient_data=action))
        assert isinstance(verdict, Insufficient)
        assert verdict.action == action
        assert "canary requests: 10 of 50 needed" in [str(r) for r in verdict.missing]


def test_a_breach_wins_over_missing_data_elsewhere() -> None:
    # errors are measured (enough requests) while click-through lacks impressions
    canary = VersionMetrics(requests=60, errors=30, latency_p95_ms=20.0)
    assert isinstance(analyse(canary, STABLE, THRESHOLDS), Breach)


def test_without_feedback_the_click_through_check_is_insufficient_unless_disabled() -> None:
    canary = VersionMetrics(requests=100, latency_p95_ms=20.0)
    stable = VersionMetrics(requests=100, latency_p95_ms=20.0)
    assert isinstance(analyse(canary, stable, THRESHOLDS), Insufficient)
    no_ctr = Thresholds(min_click_through_ratio=None, min_samples=50)
    assert isinstance(analyse(canary, stable, no_ctr), Pass)


def test_at_full_weight_the_ratio_checks_use_the_baseline() -> None:
    idle_stable = VersionMetrics()
    worse = VersionMetrics(requests=100, latency_p95_ms=20.0, impressions=1000, clicks=50)
    assert isinstance(analyse(worse, idle_stable, THRESHOLDS), Insufficient)
    verdict = analyse(worse, idle_stable, THRESHOLDS, baseline=STABLE)
    assert isinstance(verdict, Breach)
    assert verdict.values["baseline_click_through"] == 0.15


@given(
    st.integers(0, 500), st.integers(0, 500), st.integers(0, 5000), st.integers(0, 5000),
    st.floats(0, 1000),
)  # fmt: skip
def test_every_verdict_is_one_of_the_three_and_serialises(
    requests: int, errors: int, impressions: int, clicks: int, p95: float
) -> None:
    canary = VersionMetrics(requests, min(errors, requests), p95, impressions,
                            min(clicks, impressions))  # fmt: skip
    verdict = analyse(canary, STABLE, THRESHOLDS)
    assert verdict.kind in ("Pass", "Breach", "Insufficient")
    assert verdict.to_dict()["kind"] == verdict.kind
    if requests < THRESHOLDS.min_samples:
        assert not isinstance(verdict, Pass)


def test_thresholds_accept_the_job_specs_camel_case_keys() -> None:
    spec = {"maxErrorRate": 0.05, "maxP95LatencyMs": 300, "minClickThroughRatio": 0.9,
            "minSamples": 20, "onInsufficientData": "Extend"}  # fmt: skip
    t = Thresholds.from_dict(spec)
    assert (t.max_error_rate, t.max_p95_latency_ms, t.min_samples) == (0.05, 300, 20)
    assert t.on_insufficient_data == "Extend"
    with pytest.raises(ConfigError, match="unknown"):
        Thresholds.from_dict({"maxErrors": 1})


# --- the state machine ------------------------------------------------------------------------


def _walk(policy: RolloutPolicy, intervals: list[VersionMetrics]) -> list[tuple[str, int]]:
    state, seen = start(policy), []
    for canary in intervals:
        state, decision = evaluate_interval(state, policy, canary, STABLE, now=NOW)
        seen.append((decision.action, state.weight))
        if state.phase != "Progressing":
            break
    return seen


def test_a_good_candidate_is_promoted_through_every_step() -> None:
    assert start(POLICY).weight == 10
    assert _walk(POLICY, [GOOD] * 6) == [
        ("advance", 25),
        ("advance", 50),
        ("advance", 100),
        ("promote", 100),
    ]


def test_the_last_step_at_full_weight_is_judged_against_the_baseline_and_promoted() -> None:
    state = RolloutState(step=3, weight=100, baseline=STABLE)
    state, decision = evaluate_interval(state, POLICY, GOOD, VersionMetrics(), now=NOW)
    assert (state.phase, decision.action, decision.verdict.kind) == ("Promoted", "promote", "Pass")


def test_a_breach_rolls_back_to_weight_zero() -> None:
    failing = VersionMetrics(requests=100, errors=50, latency_p95_ms=20.0)
    state, decision = evaluate_interval(RolloutState(step=1, weight=25), POLICY, failing, STABLE,
                                        now=NOW)  # fmt: skip
    assert (state.phase, state.weight, decision.action) == ("RolledBack", 0, "rollback")
    assert (decision.step, decision.weight, decision.next_weight) == (1, 25, 0)
    assert "error rate 50.0%" in decision.reasons[0]


def test_hold_keeps_the_weight_until_the_data_arrives() -> None:
    policy = RolloutPolicy(thresholds=Thresholds(min_samples=50, on_insufficient_data="Hold"))
    few = VersionMetrics(requests=5, latency_p95_ms=10.0, impressions=20, clicks=3)
    assert _walk(policy, [few] * 5 + [GOOD]) == [("hold", 10)] * 5 + [("advance", 25)]


def test_extend_keeps_the_weight_a_bounded_number_of_times_then_rolls_back() -> None:
    t = Thresholds(min_samples=50, on_insufficient_data="Extend")
    policy = RolloutPolicy(thresholds=t, max_extensions=2)
    few = VersionMetrics(requests=5, latency_p95_ms=10.0, impressions=20, clicks=3)
    assert _walk(policy, [few] * 5) == [("extend", 10), ("extend", 10), ("rollback", 0)]
    assert _walk(policy, [few, GOOD]) == [("extend", 10), ("advance", 25)]


def test_fail_rolls_back_on_the_first_insufficient_interval() -> None:
    policy = RolloutPolicy(thresholds=Thresholds(min_samples=50, on_insufficient_data="Fail"))
    few = VersionMetrics(requests=5, latency_p95_ms=10.0, impressions=20, clicks=3)
    assert _walk(policy, [few, GOOD]) == [("rollback", 0)]


def test_a_decision_record_is_the_shape_of_status_rollout_decisions() -> None:
    failing = VersionMetrics(requests=100, errors=50, latency_p95_ms=20.0)
    _, decision = evaluate_interval(start(POLICY), POLICY, failing, STABLE, now=NOW)
    record = decision.to_dict()
    assert set(record) == {"time", "step", "weight", "verdict", "action", "reasons", "values"}
    assert record["time"] == "2024-05-01T12:00:00+00:00"
    assert (record["verdict"], record["action"], record["weight"]) == ("Breach", "rollback", 10)
    assert record["values"]["canary_error_rate"] == 0.5
    assert all(isinstance(v, float) for v in record["values"].values())


def test_the_state_round_trips_through_a_dict() -> None:
    state, _ = evaluate_interval(start(POLICY), POLICY, GOOD, STABLE, now=NOW)
    assert RolloutState.from_dict(state.to_dict()) == state
    assert state.baseline == STABLE


def test_a_finished_rollout_takes_no_further_step() -> None:
    with pytest.raises(ConfigError, match="already RolledBack"):
        next_step(RolloutState(phase="RolledBack"), analyse(GOOD, STABLE, THRESHOLDS), POLICY,
                  now=NOW)  # fmt: skip


@pytest.mark.parametrize("steps", [(), (0, 50), (50, 25), (10, 10), (10, 101)])
def test_steps_must_be_increasing_percentages(steps: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="canary steps"):
        RolloutPolicy(steps=steps)


@given(st.lists(st.sampled_from(["pass", "breach", "few"]), min_size=1, max_size=12))
def test_the_weight_only_grows_until_a_rollback(outcomes: list[str]) -> None:
    samples = {"pass": GOOD, "breach": VersionMetrics(requests=100, errors=100),
               "few": VersionMetrics(requests=1)}  # fmt: skip
    state, weights = start(POLICY), [start(POLICY).weight]
    for outcome in outcomes:
        if state.phase != "Progressing":
            break
        state, _ = evaluate_interval(state, POLICY, samples[outcome], STABLE, now=NOW)
        weights.append(state.weight)
    if state.phase == "RolledBack":
        assert weights[-1] == 0
        weights = weights[:-1]
    assert weights == sorted(weights)
    assert set(weights) <= {10, 25, 50, 100}
