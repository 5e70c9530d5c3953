"""The Amazon Games file of the SASRec authors (``Video.txt``): ``user item`` lines in time order.

No timestamps ship with it, but each user's lines are in time order, so the
reader gives every line its position (seconds from the epoch) as a timestamp:
orders are real, gaps are not. That is what leave-one-out needs (the last item
per user is the test target). See ../shared/datasets/README.md for its protocol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.components.datasets.canonical import Dataset, empty_items
from kuberec.errors import DataError


def read_games(path: Path) -> Dataset:
    """``Video.txt`` as a Dataset: integer ids, no ratings, line order as time."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; expected Video.txt of the SASRec repository")
    raw = pd.read_csv(path, sep=" ", header=None, names=["user_id", "item_id"], dtype="int64")
    frame = raw.assign(
        rating=np.float32("nan"),
        timestamp=pd.to_datetime(np.arange(len(raw)), unit="s", utc=True),
    )
    return Dataset(
        "amazon-games",
        frame,
        empty_items(pd.unique(frame["item_id"]).tolist()),
        pd.DataFrame({"user_id": pd.unique(frame["user_id"])}),
        has_ratings=False,
        has_timestamps=True,
        meta={"source": str(path)},
    )
