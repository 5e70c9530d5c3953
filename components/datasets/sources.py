"""Resolve a job's ``spec.data`` to a canonical dataset, whatever the source."""

from __future__ import annotations

from pathlib import Path

from kuberec.api.spec import DataSpec
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.generic import load_files
from kuberec.components.datasets.movielens import load_movielens
from kuberec.components.datasets.remote import fetch, is_remote
from kuberec.components.datasets.synthetic import SyntheticSpec, generate


def load_source(data: DataSpec, *, data_dir: Path | None = None, base: Path = Path()) -> Dataset:
    """The dataset a job names; relative file URIs resolve against ``base``, the job's folder."""
    if data.movielens:
        return load_movielens(data.movielens, data_dir)
    if data.synthetic:
        s = data.synthetic
        return generate(SyntheticSpec(s.users, s.items, s.interactions, seed=s.seed))
    assert data.interactions is not None  # the spec guarantees exactly one source

    def resolve(uri: str) -> Path:
        if is_remote(uri):
            return fetch(uri)
        path = Path(uri.removeprefix("file://"))
        return path if path.is_absolute() else base / path

    return load_files(
        resolve(data.interactions.uri),
        items=resolve(data.items.uri) if data.items else None,
        users=resolve(data.users.uri) if data.users else None,
        columns=data.interactions.columns,
    )
