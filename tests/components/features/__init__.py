"""Specifications of components/features: the Feast feature repo and its stores."""
