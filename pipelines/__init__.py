"""The KFP v2 training pipeline: ingest -> features -> train -> evaluate -> package.

- :mod:`.pipeline`: the components and the pipeline; :mod:`.steps`: what each step does.
- :mod:`.compile`: deterministic IR YAML; :mod:`.local_run`: ``kfp.local`` execution.

Submission to a cluster's KFP and the KubeRay cluster are the Kubernetes platform's
(``operator/kubernetes/kfp_client.py``, ``operator/kubernetes/ray_cluster.py``).
"""
