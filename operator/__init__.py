"""The RecommenderJob operator: one reconcile loop, two platforms (Kubernetes, local).

- :mod:`.spec`, :mod:`.status`: the typed RecommenderJob (the contract); :mod:`.crd` its CRD.
- :mod:`.reconcile`, :mod:`.rollout`: the pure core, (job, observations) -> (actions, status).
- :mod:`.reconcile_pass`: one pass (observe, reconcile, write ahead, act, store), both platforms.
- :mod:`.local`: ``kuberec run`` on one machine (the platform, ``status.json``, the loop).
- :mod:`.kubernetes`: ``kuberec operator run`` on a cluster (kopf handlers, the platform,
  manifests, Prometheus, KFP submission, KubeRay).
"""
