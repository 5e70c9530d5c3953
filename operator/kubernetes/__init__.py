"""The Kubernetes platform: ``kuberec operator run`` on a cluster.

- :mod:`.kopf_handlers`: every event of a RecommenderJob runs one reconcile pass.
- :mod:`.platform`: observe and execute with the KFP API, Deployments, Services, HTTPRoutes.
- :mod:`.status_writer`: the status subresource; :mod:`.settings`: the cluster's settings.
- :mod:`.manifests`, :mod:`.prometheus`, :mod:`.data`, :mod:`.metrics`: what the platform
  applies, reads and exports; :mod:`.kfp_client` (KFP submission), :mod:`.ray_cluster` (KubeRay).
"""
