"""Write a RecommenderJob's status subresource, retrying what an API server may refuse briefly.

The whole status is replaced (a JSON patch ``add /status``), not merged: the
reconcile function returns the complete new status, and a merge patch could
not drop what it removed (a finished rollout, a promoted challenger). A 409,
429 or 5xx is retried with exponential backoff; after the last try the error
is raised as ``KubernetesUnavailable`` and the next pass tries again.
"""

from __future__ import annotations

import time
from typing import Any

from kuberec.api.spec import GROUP, VERSION, RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.operator.crd import PLURAL
from kuberec.operator.kubernetes.platform import KubernetesUnavailable, _translate

RETRIABLE = (409, 429, 500, 502, 503, 504)


def status_document(status: JobStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


class StatusWriter:
    def __init__(self, api_client: Any, *, attempts: int = 5, first_delay_s: float = 0.2,
                 max_delay_s: float = 5.0) -> None:  # fmt: skip
        self.api_client = api_client
        self.attempts = attempts
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.retries = 0  # how many writes were retried (tests and metrics read it)

    def write(self, job: RecommenderJob, status: JobStatus) -> dict[str, Any]:
        """Replace ``job``'s status; returns the stored object."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        body = [{"op": "add", "path": "/status", "value": status_document(status)}]
        delay = self.first_delay_s
        for attempt in range(1, self.attempts + 1):
            try:
                return self._patch(job, body)
            except ApiException as exc:
                if exc.status not in RETRIABLE or attempt == self.attempts:
                    raise _translate(exc) from exc
            except (HTTPError, OSError) as exc:
                if attempt == self.attempts:
                    raise KubernetesUnavailable(f"Kubernetes API is unreachable: {exc}") from exc
            self.retries += 1
            time.sleep(delay)
            delay = min(delay * 2, self.max_delay_s)
        raise AssertionError("unreachable")

    def _patch(self, job: RecommenderJob, body: list[dict[str, Any]]) -> dict[str, Any]:
        # The generated CustomObjectsApi only speaks merge patch for /status; JSON patch it is.
        path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/status"
        params = {"group": GROUP, "version": VERSION, "namespace": job.metadata.namespace,
                  "plural": PLURAL, "name": job.metadata.name}  # fmt: skip
        headers = {"Content-Type": "application/json-patch+json", "Accept": "application/json"}
        return self.api_client.call_api(  # type: ignore[no-any-return]
            path,
            "PATCH",
            path_params=params,
            header_params=headers,
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=True,
        )
