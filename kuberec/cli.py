"""The ``kuberec`` command. Every subcommand is a thin shell over a library function.

Errors a user can fix (``KuberecError``) print as one line on stderr and exit
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console
from rich.table import Table

from kuberec import __version__
from kuberec.errors import ConfigError, KuberecError

if TYPE_CHECKING:
    from kuberec.components.datasets.canonical import Dataset
    from kuberec.components.features.store import StoreSettings

console = Console()
err_console = Console(stderr=True)
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_format, args.verbose)
    if not args.verbose:
        # Library deprecation chatter (Feast, ibis, pandas) is for their developers, not ours.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KuberecError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kuberec", description="Recommendation-as-a-service on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"kuberec {__version__}")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run a RecommenderJob on this machine (embedded default)")
    run.add_argument("job", type=Path, help="RecommenderJob YAML file")
    _add_data_dir(run)
    run.add_argument("--workdir", type=Path, help="job directory (default .kuberec/<job name>)")
    run.set_defaults(handler=_run)

    data = commands.add_parser("data", help="datasets: summaries and synthetic data")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    summary = data_commands.add_parser("summary", help="load a dataset and print its figures")
    _add_dataset_options(summary)
    summary.set_defaults(handler=_data_summary)
    synthetic = data_commands.add_parser("synthetic", help="write a seeded synthetic dataset")
    synthetic.add_argument("--users", type=int, required=True)
    synthetic.add_argument("--items", type=int, required=True)
    synthetic.add_argument("--interactions", type=int, required=True)
    synthetic.add_argument("--categories", type=int, default=20)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--out", type=Path, required=True, help="output folder (Parquet)")
    synthetic.add_argument("--overwrite", action="store_true")
    synthetic.set_defaults(handler=_data_synthetic)

    features = commands.add_parser("features", help="the Feast feature store of a job")
    feature_commands = features.add_subparsers(title="features commands", metavar="COMMAND")
    ingest = feature_commands.add_parser("ingest", help="write the Parquet sources from a dataset")
    _add_dataset_options(ingest)
    _add_store_options(ingest)
    ingest.add_argument("--no-text-embeddings", action="store_true")
    ingest.add_argument("--recent-days", type=int, default=30)
    ingest.set_defaults(handler=_features_ingest)
    apply = feature_commands.add_parser("apply", help="register entities, views and services")
    _add_store_options(apply)
    apply.set_defaults(handler=_features_apply)
    materialize = feature_commands.add_parser("materialize", help="load the online store")
    _add_store_options(materialize)
    materialize.add_argument("--full", action="store_true", help="from the start, not incremental")
    materialize.set_defaults(handler=_features_materialize)
    frame = feature_commands.add_parser(
        "training-frame", help="point-in-time features for labelled interactions"
    )
    _add_store_options(frame)
    frame.add_argument("--labels", type=Path, required=True, help="user_id,item_id,timestamp file")
    frame.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    frame.set_defaults(handler=_features_training_frame)
    online = feature_commands.add_parser("online", help="online feature lookup")
    _add_store_options(online)
    online.add_argument("--entity", choices=["user", "item"], default="user")
    online.add_argument("ids", nargs="+", help="entity ids")
    online.set_defaults(handler=_features_online)
    return parser


# --- options shared by several commands ------------------------------------------------------


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="folder holding MovieLens releases (ml-100k/ ...), used instead of downloading; "
        "default $KUBEREC_DATA_DIR",
    )


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
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
    _add_data_dir(parser)


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, required=True, help="the job's feature data folder")
    parser.add_argument("--profile", choices=["default", "production"], default="default")
    parser.add_argument(
        "--project", help="Feast project name (default: the store's, else kuberec)"
    )


# --- handlers -----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.sources import load_source
    from kuberec.components.features.store import StoreSettings
    from kuberec.operator.spec import load_job
    from kuberec.pipelines.features_step import run_features

    job = load_job(args.job)
    workdir = args.workdir or Path(".kuberec") / job.metadata.name
    features = job.spec.features
    with console.status(f"[bold]{job.metadata.name}[/]: loading data"):
        dataset = load_source(job.spec.data, data_dir=args.data_dir, base=args.job.parent)
    settings = StoreSettings(
        workdir / "data", profile=features.profile, project=job.metadata.name
    )
    with console.status(f"[bold]{job.metadata.name}[/]: ingest, apply, materialize"):
        summary = run_features(
            dataset,
            settings,
            text_embeddings=features.text_embeddings,
            recent_days=features.recent_days,
        )
    table = Table(title=f"RecommenderJob {job.metadata.name}: features ready", show_header=False)
    for key, value in summary.dataset.items():
        table.add_row(key, str(value))
    for view, rows in summary.rows.items():
        table.add_row(f"rows {view}", f"{rows:,}")
    table.add_row("materialized", ", ".join(summary.materialized) or "nothing new (up to date)")
    table.add_row("watermark", summary.watermark)
    table.add_row("feature store", summary.store)
    table.add_row("seconds", json.dumps(summary.seconds))
    console.print(table)
    return 0


def _data_summary(args: argparse.Namespace) -> int:
    dataset = _load_dataset(args)
    console.print_json(json.dumps(dataset.summary()))
    return 0


def _data_synthetic(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.synthetic import SyntheticSpec, write_parquet

    spec = SyntheticSpec(
        args.users, args.items, args.interactions, n_categories=args.categories, seed=args.seed
    )
    with console.status("generating"):
        out = write_parquet(spec, args.out, overwrite=args.overwrite)
    console.print(f"wrote {args.interactions:,} interactions to {out}")
    return 0


def _features_ingest(args: argparse.Namespace) -> int:
    from kuberec.components.features.ingest import ingest

    dataset = _load_dataset(args)
    settings = _store_settings(args)
    with console.status("ingesting"):
        result = ingest(
            dataset,
            settings.sources_dir,
            text_embeddings=not args.no_text_embeddings,
            recent_days=args.recent_days,
        )
    console.print_json(json.dumps({"sources": str(result.sources_dir), "rows": result.rows}))
    return 0


def _features_apply(args: argparse.Namespace) -> int:
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    views = operations.apply(open_store(_store_settings(args)))
    console.print(f"applied feature views: {', '.join(views)}")
    return 0


def _features_materialize(args: argparse.Namespace) -> int:
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    result = operations.materialize(open_store(_store_settings(args)), full=args.full)
    done = ", ".join(result.views) if result.views else "nothing new (up to date)"
    console.print(f"materialized up to {result.end.isoformat()}: {done}")
    return 0


def _features_training_frame(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.generic import load_files
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    labels = load_files(args.labels).interactions
    frame = operations.training_frame(open_store(_store_settings(args)), labels)
    _write_frame(frame, args.out)
    console.print(f"wrote {len(frame):,} rows x {frame.shape[1]} columns to {args.out}")
    return 0


def _features_online(args: argparse.Namespace) -> int:
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    frame = operations.online_features(open_store(_store_settings(args)), args.entity, args.ids)
    for record in frame.to_dict(orient="records"):
        shown = {key: _json_value(value) for key, value in record.items()}
        console.print_json(json.dumps(shown, default=str), indent=None)
    return 0


# --- helpers ------------------------------------------------------------------------------------


def _load_dataset(args: argparse.Namespace) -> Dataset:
    from kuberec.components.datasets.generic import load_files
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.datasets.synthetic import read_parquet

    if args.dataset:
        return load_movielens(args.dataset, args.data_dir)
    if args.synthetic:
        return read_parquet(args.synthetic)
    columns = dict(_key_value(item, "--column") for item in args.column)
    return load_files(args.interactions, items=args.items, users=args.users, columns=columns)


def _store_settings(args: argparse.Namespace) -> StoreSettings:
    from kuberec.components.features.store import StoreSettings

    return StoreSettings(args.store, profile=args.profile, project=args.project)


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ConfigError(f"{flag} {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()


def _write_frame(frame: pd.DataFrame, path: Path) -> None:
    from kuberec.components.datasets.atomic import atomic_path

    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet"}:
        raise ConfigError(f"{path}: choose a .csv or .parquet output file")
    with atomic_path(path) as tmp:
        if suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)


def _json_value(value: object) -> object:
    """NaN and numpy values as JSON; long vectors shortened for the terminal."""
    if hasattr(value, "tolist"):
        value = value.tolist()  # type: ignore[union-attr]
    if isinstance(value, list) and len(value) > 8 and all(isinstance(v, float) for v in value):
        return [round(v, 4) for v in value[:4]] + [f"... {len(value)} values"]
    return value


def _configure_logging(fmt: str, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING
    if fmt == "json":
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(console=err_console, show_path=False)
    logging.basicConfig(level=level, handlers=[handler], force=True)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(payload)


if __name__ == "__main__":
    raise SystemExit(main())
