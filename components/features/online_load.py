"""Loading a feature view's newest values into the online store, a batch at a time.

Feast's own ``materialize`` hands the whole window to its offline store: with
DuckDB that is a window function over every snapshot row, which on a
million-item catalogue (4M item and 3.2M user snapshots) held 22.7 GB and
spilled 40 GB to disk before it wrote anything (benchmarks/RESULTS.md, issue 12).
The sources are Parquet files in both profiles, so the newest row per entity is
found here from two columns (key and timestamp) and the rows are written with
``FeatureStore.write_to_online_store`` in slices: memory is bounded by the
slice, not the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from feast import FeatureStore, FeatureView, FileSource
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kuberec.errors import FeatureStoreError

BATCH_ROWS = 50_000


def load_view(
    store: FeatureStore,
    view: FeatureView,
    start: datetime,
    end: datetime,
    *,
    batch_rows: int = BATCH_ROWS,
) -> int:
    """Write each entity's newest row in ``[start, end)``; returns the entities written."""
    if batch_rows < 1:
        raise FeatureStoreError(f"batch_rows must be at least 1, got {batch_rows}")
    source = file_source(view)
    latest = newest_rows(source.path, join_key(view), source.timestamp_field, start, end)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"online store: {view.name}", total=latest.num_rows)
        for batch in _slices(latest, batch_rows):
            store.write_to_online_store(view.name, df=batch, transform_on_write=False)
            bar.advance(task, len(batch))
    store.registry.apply_materialization(view, store.project, start, end)
    return latest.num_rows


def newest_rows(
    path: str, key: str, timestamp_field: str, start: datetime, end: datetime
) -> pa.Table:
    """The newest row per ``key`` with ``start <= timestamp < end``, Feast's window rule."""
    index = pq.read_table(path, columns=[key, timestamp_field])
    stamps = index.column(timestamp_field)
    in_window = pc.and_(
        pc.greater_equal(stamps, _scalar(start, stamps.type)),
        pc.less(stamps, _scalar(end, stamps.type)),
    )
    rows = np.flatnonzero(in_window.to_numpy(zero_copy_only=False))
    if rows.size == 0:
        return pq.read_schema(path).empty_table()
    keys = index.column(key).take(rows).to_pandas()
    times = stamps.take(rows).to_pandas()
    # Stable sort by time, then the last row of each key is its newest snapshot.
    order = pd.DataFrame({"key": keys, "time": times, "row": rows}).sort_values(
        "time", kind="stable"
    )
    newest = np.sort(order.drop_duplicates("key", keep="last")["row"].to_numpy())
    del index, keys, times, order
    return pq.read_table(path).take(newest)


def _slices(table: pa.Table, rows: int) -> Iterator[pd.DataFrame]:
    for offset in range(0, table.num_rows, rows):
        yield table.slice(offset, rows).to_pandas()


def _scalar(moment: datetime, kind: pa.DataType) -> pa.Scalar:
    stamp = pd.Timestamp(moment)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return pa.scalar(stamp, type=kind)


def file_source(view: FeatureView) -> FileSource:
    """The view's Parquet source (a push source's batch source), or a typed error."""
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise FeatureStoreError(
            f"feature view {view.name!r} reads {type(source).__name__}; kuberec's views read "
            "Parquet files: re-run `kuberec features ingest` and `kuberec features apply`"
        )
    return source


def join_key(view: FeatureView) -> str:
    """The view's one join key: kuberec's views each have one entity."""
    keys = [column.name for column in view.entity_columns]
    if len(keys) != 1:
        raise FeatureStoreError(f"feature view {view.name!r} has join keys {keys}; expected one")
    return keys[0]
