"""The RecommenderJob operator: one reconcile loop, two platforms (Kubernetes, local).

- :mod:`.spec`, :mod:`.status`: the typed RecommenderJob (the contract); :mod:`.crd` its CRD.
- :mod:`.reconcile`, :mod:`.rollout`: the pure core, (job, observations) -> (actions, status).
- :mod:`.reconcile_pass`: one pass (observe, reconcile, write ahead, act, store), both platforms.
- :mod:`.local_platform`, :mod:`.local_store`, :mod:`.loop`: ``kuberec run`` on one machine.
- :mod:`.kubernetes_platform`, :mod:`.kopf_handlers`, :mod:`.manifests`, :mod:`.prometheus`,
  :mod:`.kfp_client` (KFP submission), :mod:`.ray_cluster` (KubeRay): ``kuberec operator run``
  on a cluster.
"""
