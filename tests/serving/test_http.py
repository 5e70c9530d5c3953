"""The HTTP contract of a real ``bentoml serve`` process on a loopback port.

One server for the module (starting BentoML costs seconds), serving an EASE-T
model packaged in the BentoML store, so the version it reports is a real tag.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kuberec.components.package import package_run
from kuberec.serving.server import (
    RANKING_ENV,
    free_port,
    start_server,
    stop_server,
    wait_ready,
)
from tests.support import raw_http

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tag(ease_t_run: Path) -> str:
    return package_run(ease_t_run, "ml100k-ease", {"dataset": "ml-100k"}).tag


@pytest.fixture(scope="module")
def server(tag: str) -> Iterator[subprocess.Popen[bytes]]:
    # the job's ranking, as `kuberec run` passes it: plain top-K, Star Wars (50) never shown
    process = start_server(
        tag, free_port(), env={RANKING_ENV: '{"diversity": 0, "excluded": [50]}'}
    )
    try:
        yield process
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def url(server: subprocess.Popen[bytes]) -> str:
    port = server.args[server.args.index("--port") + 1]
    wait_ready(f"http://127.0.0.1:{port}", timeout=120, process=server)
    return f"http://127.0.0.1:{port}"


def _post(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return response.status, response.read().decode()


def _error_fields(body: dict[str, Any]) -> list[str]:
    return [".".join(str(part) for part in d["loc"]) for d in body["detail"]]


def test_recommend_answers_ranked_explained_items_with_version_and_request_id(
    url: str, tag: str
) -> None:
    status, body = _post(url, "/recommend", {"user_id": 1, "k": 5})
    assert status == 200
    assert set(body) == {"items", "model_version", "request_id", "fallback"}
    assert body["model_version"] == tag
    assert uuid.UUID(body["request_id"])
    assert body["fallback"] is False
    assert len(body["items"]) == 5
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(item["explanation"].startswith("because you liked ") for item in body["items"])


def test_answers_are_valid_response_models_equal_to_the_engines(url: str, tag: str) -> None:
    """The hand-encoded JSON says what the response models say, and what the engine ranked."""
    from kuberec.components.models.ranking import parse_ranking
    from kuberec.serving.engine import Engine, Query
    from kuberec.serving.schemas import RecommendResponse, ScoreResponse

    engine = Engine.load(tag, ranking=parse_ranking({"diversity": 0, "excluded": [50]}, "job"))
    _, body = _post(url, "/recommend", {"user_id": 1, "k": 5})
    answer = RecommendResponse.model_validate(body)
    [(ranked, reasons)] = engine.recommend([Query(engine.user(1), k=5)])
    assert [i.item_id for i in answer.items] == [engine.item_id(i) for i in ranked.items]
    assert [i.score for i in answer.items] == ranked.scores.tolist()
    assert [i.explanation for i in answer.items] == reasons
    _, body = _post(url, "/score", {"user_id": 1, "item_ids": [1, "50", "nope"]})
    scored = ScoreResponse.model_validate(body)
    [(expected, _)] = engine.score([(Query(engine.user(1)), engine.items([1, 50])[0])])
    assert [s.score for s in scored.scores] == expected.tolist()
    assert scored.unknown_items == ["nope"] and scored.fallback is False


def test_a_lone_request_gets_the_answer_it_gets_inside_a_batch(url: str) -> None:
    """Lone requests skip the model thread; concurrent ones share a model call: same lists."""
    from concurrent.futures import ThreadPoolExecutor

    users = list(range(1, 25))
    alone = [_post(url, "/recommend", {"user_id": u, "k": 5})[1]["items"] for u in users]
    with ThreadPoolExecutor(12) as pool:
        together = list(
            pool.map(lambda u: _post(url, "/recommend", {"user_id": u, "k": 5})[1], users)
        )
    assert [body["items"] for body in together] == alone
    status, metrics = _get(url, "/metrics")
    batched = [
        line
        for line in metrics.splitlines()
        if line.startswith("kuberec_batch_size_bucket")
        and 'le="1.0"' in line
        and "/recommend" in line
    ]
    assert status == 200 and batched  # batch sizes are still observed


def test_string_and_number_user_ids_get_the_same_list(url: str) -> None:
    _, as_number = _post(url, "/recommend", {"user_id": 7, "k": 5})
    _, as_string = _post(url, "/recommend", {"user_id": "7", "k": 5})
    assert as_number["items"] == as_string["items"]


def test_a_cold_user_is_answered_by_the_popularity_fallback_and_flagged(url: str) -> None:
    status, body = _post(url, "/recommend", {"user_id": "someone-new", "k": 3})
    assert status == 200
    assert body["fallback"] is True
    assert len(body["items"]) == 3


def test_a_cold_user_with_recent_items_gets_a_personal_list(url: str) -> None:
    status, body = _post(
        url, "/recommend", {"user_id": "someone-new", "k": 3, "recent_items": ["50"]}
    )
    assert status == 200
    assert body["fallback"] is False
    assert 50 not in [item["item_id"] for item in body["items"]]
    assert body["items"][0]["explanation"] == "because you liked Star Wars (1977)"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/recommend", {"user_id": 1, "k": 0}, "k"),
        ("/recommend", {"user_id": 1, "k": True}, "k"),
        ("/recommend", {"user_id": 1, "k": "5"}, "k"),
        ("/recommend", {"user_id": 1, "exclude_seen": "yes"}, "exclude_seen"),
        ("/similar", {"item_id": 50, "k": True}, "k"),
        ("/recommend", {"k": 3}, "user_id"),
        ("/recommend", {"user_id": 1, "filters": {"genres": ["Polka"]}}, "filters.genres"),
        ("/recommend", {"user_id": 1, "exclude_sen": False}, "exclude_sen"),
        ("/recommend", {"user_id": 1, "ranking": {"diversity": 1.5}}, "ranking.diversity"),
        ("/recommend", {"user_id": 1, "ranking": {"pinned": ["nope"]}}, "ranking.pinned"),
        ("/score", {"user_id": 1, "item_ids": []}, "item_ids"),
        ("/feedback", {"request_id": "r", "user_id": 1, "item_id": 50, "event": "like"}, "event"),
    ],
)
def test_an_invalid_request_gets_422_naming_the_field(
    url: str, path: str, body: dict[str, Any], field: str
) -> None:
    status, answer = _post(url, path, body)
    assert status == 422
    assert field in _error_fields(answer)


def test_score_reports_unknown_items_without_failing(url: str) -> None:
    status, body = _post(url, "/score", {"user_id": 1, "item_ids": [1, "50", "nope"]})
    assert status == 200
    assert [s["item_id"] for s in body["scores"]] == [1, "50"]
    assert body["unknown_items"] == ["nope"]


def test_similar_returns_other_items_best_first(url: str) -> None:
    status, body = _post(url, "/similar", {"item_id": 50, "k": 4})
    assert status == 200
    ids = [item["item_id"] for item in body["items"]]
    assert len(ids) == 4
    assert 50 not in ids


def test_health_and_readiness_answer_once_the_model_is_loaded(url: str) -> None:
    assert _get(url, "/healthz")[0] == 200
    assert _get(url, "/readyz")[0] == 200


def test_metrics_carry_kuberec_counters_labelled_with_the_model_version(url: str, tag: str) -> None:
    _post(url, "/feedback", {"request_id": "r1", "user_id": 1, "item_id": 50, "event": "click"})
    _post(url, "/recommend", {"user_id": "metrics-cold-user", "k": 2})
    _, text = _get(url, "/metrics")
    version = f'model_version="{tag}"'
    lines = text.splitlines()
    assert any(
        line.startswith("kuberec_requests_total{")
        and version in line
        and 'endpoint="/recommend"' in line
        for line in lines
    )
    assert any(
        line.startswith("kuberec_feedback_events_total{")
        and version in line
        and 'event="click"' in line
        for line in lines
    )
    assert any(line.startswith("kuberec_fallbacks_total{") and version in line for line in lines)
    assert any(line.startswith("kuberec_request_latency_seconds_bucket{") for line in lines)


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(url: str) -> None:
    assert raw_http.declared_over_limit(url, "/recommend") == 413  # not one byte of 200 MB


def test_a_chunked_body_is_cut_off_at_the_limit(url: str) -> None:
    assert raw_http.chunked_over_limit(url, "/recommend") == 413


def test_deeply_nested_json_is_a_422(url: str) -> None:
    nested = b'{"user_id": 1, "filters": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    request = urllib.request.Request(url + "/recommend", nested,
                                     {"Content-Type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    assert raised.value.code == 422


def test_unknown_paths_are_counted_under_one_label(url: str) -> None:
    for n in range(100):
        with pytest.raises(urllib.error.HTTPError):
            _get(url, f"/no-such-path-{n}")
    _, text = _get(url, "/metrics")
    assert "no-such-path" not in text
    others = [
        line
        for line in text.splitlines()
        if line.startswith("kuberec_requests_total{") and 'endpoint="other"' in line
    ]
    assert sum(float(line.split()[-1]) for line in others) >= 100


def test_a_client_error_is_logged_as_one_line_without_a_traceback(
    url: str, server: subprocess.Popen[bytes]
) -> None:
    marker = f"no-such-field-{uuid.uuid4().hex[:8]}"
    assert _post(url, "/recommend", {"user_id": 1, marker: 1})[0] == 422
    assert _post(url, "/similar", {"item_id": "no-such-item"})[0] == 422
    log = Path(server.log_path)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while marker not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert next(line for line in text.splitlines() if marker in line).count("422") == 1
    assert "unknown item 'no-such-item'" in text
    assert "Traceback" not in text


def test_the_jobs_ranking_from_the_environment_is_applied(url: str) -> None:
    _, body = _post(url, "/recommend", {"user_id": "someone-new", "k": 10})
    assert body["fallback"] is True
    assert 50 not in [item["item_id"] for item in body["items"]]


def test_a_request_overrides_the_ranking_and_keeps_the_jobs_exclusions(url: str) -> None:
    _, plain = _post(url, "/recommend", {"user_id": 1, "k": 10})
    pin = plain["items"][9]["item_id"]
    status, body = _post(
        url,
        "/recommend",
        {
            "user_id": 1,
            "k": 5,
            "ranking": {"pinned": [pin], "maxPerCategory": 1, "excluded": []},
        },
    )
    assert status == 200
    ids = [item["item_id"] for item in body["items"]]
    assert ids[0] == pin and 50 not in ids and len(ids) == 5
