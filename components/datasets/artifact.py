"""A canonical Dataset as a folder of Parquet files: the Dataset artifact between pipeline steps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa

from kuberec.components.datasets.canonical import Dataset
from kuberec.errors import DataError

FRAMES = ("interactions", "items", "users")


def save_dataset(dataset: Dataset, folder: Path) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in FRAMES:
        frame: pd.DataFrame = getattr(dataset, name)
        try:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
        except (pa.ArrowException, ValueError) as exc:
            raise DataError(f"{dataset.name}: cannot store {name} as Parquet: {exc}") from exc
    meta = {
        "name": dataset.name,
        "has_ratings": dataset.has_ratings,
        "has_timestamps": dataset.has_timestamps,
        "meta": dataset.meta,
    }
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))


def load_dataset(folder: Path) -> Dataset:
    folder = Path(folder)
    if not (folder / "dataset.json").exists():
        raise DataError(f"{folder} is not a saved dataset (dataset.json is missing)")
    meta = json.loads((folder / "dataset.json").read_text())
    frames = {name: pd.read_parquet(folder / f"{name}.parquet") for name in FRAMES}
    frames["items"]["genres"] = frames["items"]["genres"].map(list)
    return Dataset(
        meta["name"], **frames, has_ratings=meta["has_ratings"],
        has_timestamps=meta["has_timestamps"], meta=meta["meta"],
    )  # fmt: skip
