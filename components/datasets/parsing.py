"""Column parsing that names the file, line and column of the first bad value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kuberec.errors import DataError


def read_table(path: Path, **csv_options: object) -> pd.DataFrame:
    """CSV (any delimiter given in options) or Parquet, by file extension, all as given."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            frame = pd.read_parquet(path)
        else:
            options: dict[str, object] = {"dtype": str, "keep_default_na": False}
            options.update(csv_options)
            frame = pd.read_csv(path, **options)  # type: ignore[call-overload]
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot be read as a table ({exc})") from exc
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no rows")
    return frame


def require_columns(frame: pd.DataFrame, columns: list[str], path: Path, hint: str = "") -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}"
            + (f". {hint}" if hint else "")
        )


def parse_numeric(series: pd.Series, path: Path, column: str, first_line: int) -> pd.Series:
    """Numbers, or a DataError at the first value that is not one.

    ``first_line`` is the 1-based line number of the series' first row in the
    file (2 for a CSV with a header), so the message points at the exact line.
    """
    if pd.api.types.is_numeric_dtype(series):
        values = series
    else:
        values = pd.to_numeric(series.astype(str).str.strip(), errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        raw = series.iloc[position]
        shown = "an empty value" if _blank(series.iloc[[position]]).iloc[0] else repr(raw)
        raise DataError(
            f"{path}, line {first_line + position}, column {column!r}: {shown} is not a number"
        )
    return values


def require_values(series: pd.Series, path: Path, column: str, first_line: int) -> pd.Series:
    """The column unchanged, or a DataError at its first empty value (an id must be given).

    An empty id would otherwise become an entity ``""`` and turn a column of
    integer ids into text.
    """
    blank = _blank(series).to_numpy()
    if blank.any():
        line = first_line + int(np.flatnonzero(blank)[0])
        raise DataError(
            f"{path}, line {line}, column {column!r}: an empty value; every row needs one "
            "(remove the row or fill it in)"
        )
    return series


def parse_timestamps(series: pd.Series, path: Path, column: str, first_line: int) -> pd.Series:
    """UTC timestamps from Unix seconds or ISO-8601 text, naming the first unparseable one."""
    text = series.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    is_number = numeric.notna()
    parsed = pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
    if is_number.any():
        parsed[is_number] = pd.to_datetime(numeric[is_number].astype("int64"), unit="s", utc=True)
    if (~is_number).any():
        parsed[~is_number] = pd.to_datetime(
            text[~is_number], errors="coerce", utc=True, format="ISO8601"
        )
    if parsed.isna().any():
        position = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(
            f"{path}, line {first_line + position}, column {column!r}: "
            f"{series.iloc[position]!r} is not a timestamp (use Unix seconds or ISO-8601, "
            "e.g. 2024-05-01T12:00:00Z)"
        )
    return parsed


def _blank(series: pd.Series) -> pd.Series:
    return series.isna() | (series.astype(str).str.strip() == "")
