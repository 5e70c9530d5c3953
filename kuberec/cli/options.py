"""What several command groups share: the consoles, common options and their readers."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from kuberec.errors import ConfigError

if TYPE_CHECKING:
    from kuberec.components.datasets.canonical import Dataset
    from kuberec.components.features.store import StoreSettings

console = Console()
err_console = Console(stderr=True)
Handler = Callable[[argparse.Namespace], int]


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding MovieLens releases (ml-100k/ ...), used instead of downloading; "
        "default $KUBEREC_DATA_DIR",
    )


def add_dataset_options(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="a MovieLens release, e.g. ml-100k")
    source.add_argument("--interactions", type=Path, help="CSV or Parquet interactions file")
    source.add_argument("--synthetic", type=Path, help="folder written by `kuberec data synthetic`")
    parser.add_argument("--items", type=Path, help="items file (with --interactions)")
    parser.add_argument("--users", type=Path, help="users file (with --interactions)")
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="CANONICAL=YOURS",
        help="map a column, e.g. --column user_id=customer (repeatable)",
    )
    add_data_dir(parser)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, required=True, help="the job's feature data folder")
    parser.add_argument("--profile", choices=["default", "production"], default="default")
    parser.add_argument("--project", help="Feast project name (default: the store's, else kuberec)")


def load_dataset(args: argparse.Namespace) -> Dataset:
    from kuberec.components.datasets.generic import load_files
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.datasets.synthetic import read_parquet

    if args.dataset:
        return load_movielens(args.dataset, args.data_dir)
    if args.synthetic:
        return read_parquet(args.synthetic)
    columns = dict(key_value(item, "--column") for item in args.column)
    return load_files(args.interactions, items=args.items, users=args.users, columns=columns)


def store_settings(args: argparse.Namespace) -> StoreSettings:
    from kuberec.components.features.store import StoreSettings

    return StoreSettings(args.store, profile=args.profile, project=args.project)


def typed_key_value(text: str) -> tuple[str, object]:
    """``--set key=value`` with YAML typing: 0.01 is a float, 64 an int, [64, 32] a list."""
    import yaml

    key, value = key_value(text, "--set")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc


def key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    from kuberec.components.datasets.atomic import atomic_path

    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise ConfigError(f"{path}: choose a .csv or .parquet output file")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def json_value(value: object) -> object:
    """NaN and numpy values as JSON; long vectors shortened for the terminal."""
    if hasattr(value, "tolist"):
        value = value.tolist()  # type: ignore[union-attr]
    if isinstance(value, list) and len(value) > 8 and all(isinstance(v, float) for v in value):
        return [round(v, 4) for v in value[:4]] + [f"... {len(value)} values"]
    return value
