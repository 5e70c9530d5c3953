"""The RecommenderJob operator: one reconcile loop, two platforms (Kubernetes, local).

Built by the Pipeline and Operator issues; nothing here yet.
"""
