"""Canary rollouts: sticky traffic split, analysis, router and the local rollout manager.

``split`` and ``analysis`` are pure (the operator's reconcile loop calls them on
every platform); ``metrics`` reads Prometheus text; ``router`` and ``local``
run the local platform's processes; ``replay`` produces the online signal.
"""
