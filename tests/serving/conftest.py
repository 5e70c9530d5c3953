"""The trained run the serving tests serve: EASE-T on ml-100k, fitted once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberec.components.datasets.canonical import Dataset
from kuberec.components.train.run import train_run
from kuberec.components.train.settings import TrainSettings


@pytest.fixture(scope="session")
def ease_t_run(ml100k: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory the tests only read (load, serve, package), so one is enough."""
    out = tmp_path_factory.mktemp("serving") / "ease_t"
    train_run(
        ml100k,
        out,
        model_type="ease_t",
        settings=TrainSettings(backend="local"),
        source={"spec": {"movielens": "ml-100k"}},
    )
    return out
