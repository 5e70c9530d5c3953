"""The operator's cluster settings, read once from the environment the Helm chart sets.

The chart's ConfigMap (``templates/configmap.yaml``) feeds these variables to
the operator container; one frozen object carries them so every module reads
the same values and tests can build one without touching ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from kuberec.errors import ConfigError

DEFAULT_SERVING_IMAGE = "ghcr.io/kuberec/serving:0.1.0"


@dataclass(frozen=True)
class ClusterSettings:
    kfp_endpoint: str = ""
    prometheus_url: str = ""
    artifact_store: str = ""  # s3://..., gs://..., file:///... (run results, exported models)
    feast_registry: str = ""
    feast_redis: str = ""  # host:port of the Redis online store the pipeline and pods share
    serving_image: str = DEFAULT_SERVING_IMAGE
    gateway: str = ""  # "namespace/name" of the parent Gateway; "" = replica-ratio weighting
    kfp_namespace: str | None = None  # multi-user KFP: the profile namespace
    poll_s: float = 5.0  # the timer: follow runs, analyse canaries
    data_poll_s: float = 60.0  # how long a data fingerprint is trusted before it is read again
    resync_s: float = 60.0  # a settled job (Serving, Rejected, ...) is re-checked this often

    @property
    def gateway_ref(self) -> tuple[str, str] | None:
        """``(namespace, name)`` of the Gateway, or None when none is configured."""
        if not self.gateway:
            return None
        namespace, _, name = self.gateway.rpartition("/")
        return (namespace or "default"), name

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ClusterSettings:
        env = os.environ if env is None else env
        try:
            poll_s = float(env.get("KUBEREC_POLL_INTERVAL", "5"))
            data_poll_s = float(env.get("KUBEREC_DATA_POLL_INTERVAL", "60"))
            resync_s = float(env.get("KUBEREC_RESYNC_INTERVAL", "60"))
        except ValueError as exc:
            raise ConfigError(f"KUBEREC_*_INTERVAL: not a number of seconds ({exc})") from exc
        if poll_s <= 0:
            raise ConfigError(f"KUBEREC_POLL_INTERVAL must be > 0 seconds, got {poll_s}")
        return cls(
            kfp_endpoint=env.get("KUBEREC_KFP_ENDPOINT", ""),
            prometheus_url=env.get("KUBEREC_PROMETHEUS_URL", ""),
            artifact_store=env.get("KUBEREC_ARTIFACT_STORE", ""),
            feast_registry=env.get("KUBEREC_FEAST_REGISTRY", ""),
            feast_redis=env.get("KUBEREC_FEAST_REDIS", ""),
            serving_image=env.get("KUBEREC_SERVING_IMAGE") or DEFAULT_SERVING_IMAGE,
            gateway=env.get("KUBEREC_GATEWAY", ""),
            kfp_namespace=env.get("KUBEREC_KFP_NAMESPACE") or None,
            poll_s=poll_s,
            data_poll_s=data_poll_s,
            resync_s=resync_s,
        )
