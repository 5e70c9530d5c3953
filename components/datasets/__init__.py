"""Datasets in one canonical in-memory form: MovieLens releases, generic files, synthetic data."""

from __future__ import annotations

from kuberec.components.datasets.canonical import Dataset, IdIndex

__all__ = ["Dataset", "IdIndex"]
