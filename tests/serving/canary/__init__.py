"""Specifications of serving/canary: the router, the split, analysis and rollouts."""
