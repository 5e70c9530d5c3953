"""Per-version traffic of a canary window, from Prometheus instant queries over HTTP.

The serving pods export kuberec's metrics labelled ``model_version``
(``serving/metrics.py``: ``kuberec_requests_total``,
``kuberec_request_latency_seconds``, ``kuberec_feedback_events_total``), and
Prometheus scrapes them through the job's Service. An analysis interval is
``increase(...[<seconds since windowStartedAt>])`` per version, the same
definition the local platform computes from two scrapes, so both platforms
feed the analysis the same numbers.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from kuberec.errors import KuberecError
from kuberec.serving.canary.analysis import VersionMetrics

REQUESTS = "kuberec_requests_total"
LATENCY = "kuberec_request_latency_seconds_bucket"
FEEDBACK = "kuberec_feedback_events_total"
ENDPOINT = "/recommend"


class PrometheusUnavailable(KuberecError):
    """Prometheus did not answer (or answered an error); the canary analysis waits."""


def _quote(value: str) -> str:
    return json.dumps(value)  # PromQL string literals accept JSON's escapes


def queries(namespace: str, versions: list[str], window_s: int) -> dict[str, str]:
    """The five PromQL queries of one window, each grouped by ``model_version``."""
    pattern = "|".join(_regex_escape(v) for v in versions)
    scope = f"namespace={_quote(namespace)}, model_version=~{_quote(pattern)}"
    window = f"[{max(int(window_s), 1)}s]"
    by = "sum by (model_version)"
    return {
        "requests": f'{by} (increase({REQUESTS}{{{scope}, endpoint="{ENDPOINT}"}}{window}))',
        "errors": f'{by} (increase({REQUESTS}{{{scope}, endpoint="{ENDPOINT}", '
                  f'status=~"5.."}}{window}))',
        "p95": "histogram_quantile(0.95, sum by (model_version, le) "
               f'(increase({LATENCY}{{{scope}, endpoint="{ENDPOINT}"}}{window})))',
        "impressions": f'{by} (increase({FEEDBACK}{{{scope}, event="impression"}}{window}))',
        "clicks": f'{by} (increase({FEEDBACK}{{{scope}, event="click"}}{window}))',
    }  # fmt: skip


class Prometheus:
    """A tiny client of ``/api/v1/query`` (instant vectors only: all the analysis needs)."""

    def __init__(self, url: str, *, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> dict[str, float]:
        """``model_version`` -> value of an instant-vector query (NaN samples dropped)."""
        if not self.url:
            raise PrometheusUnavailable("KUBEREC_PROMETHEUS_URL is not set")
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(address, timeout=self.timeout_s) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered {exc.code}") from exc
        except (OSError, ValueError) as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} is unreachable: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusUnavailable(
                f"Prometheus query failed: {body.get('errorType')}: {body.get('error')}"
            )
        return _vector(body.get("data", {}))

    def window(self, namespace: str, versions: dict[str, str], window_s: float
               ) -> dict[str, VersionMetrics]:  # fmt: skip
        """``{"stable": v1, "canary": v2}`` -> per-track metrics over the last ``window_s``."""
        wanted = [v for v in versions.values() if v]
        if not wanted or window_s < 1:
            return {}
        answers = {
            name: self.query(q)
            for name, q in queries(namespace, wanted, math.ceil(window_s)).items()
        }
        result = {}
        for track, version in versions.items():
            if not version:
                continue
            p95 = answers["p95"].get(version)
            result[track] = VersionMetrics(
                requests=round(answers["requests"].get(version, 0.0)),
                errors=round(answers["errors"].get(version, 0.0)),
                latency_p95_ms=None if p95 is None else round(p95 * 1000.0, 3),
                impressions=round(answers["impressions"].get(version, 0.0)),
                clicks=round(answers["clicks"].get(version, 0.0)),
            )
        return result


def _vector(data: dict[str, Any]) -> dict[str, float]:
    if data.get("resultType") != "vector":
        raise PrometheusUnavailable(f"expected an instant vector, got {data.get('resultType')}")
    values: dict[str, float] = {}
    for sample in data.get("result", []):
        version = sample.get("metric", {}).get("model_version")
        value = float(sample["value"][1])
        if version is not None and not math.isnan(value) and not math.isinf(value):
            values[version] = value
    return values


def _regex_escape(text: str) -> str:
    """RE2 escaping for a literal inside ``=~`` (the version tags hold ``:`` and ``.``)."""
    return "".join("\\" + c if c in r".^$*+?()[]{}|\-" else c for c in text)
