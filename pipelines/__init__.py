"""The KFP v2 training pipeline: ingest -> features -> train -> evaluate -> package.

- :mod:`.pipeline`: the components and the pipeline; :mod:`.steps`: what each step does.
- :mod:`.compile`: deterministic IR YAML; :mod:`.local_run`: ``kfp.local`` execution.
- :mod:`.kfp_client`: cluster submission; :mod:`.ray_cluster`: GPU placement (KubeRay).
"""
