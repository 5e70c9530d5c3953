"""Specifications of components/datasets: readers, the canonical form, synthetic data."""
