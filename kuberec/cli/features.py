"""``kuberec features``: the Feast feature store of a job."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kuberec.cli.options import (
    add_dataset_options,
    add_store_options,
    console,
    json_value,
    load_dataset,
    store_settings,
    write_frame,
)


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``features ingest|apply|materialize|training-frame|online``."""
    features = commands.add_parser("features", help="the Feast feature store of a job")
    feature_commands = features.add_subparsers(title="features commands", metavar="COMMAND")
    ingest = feature_commands.add_parser("ingest", help="write the Parquet sources from a dataset")
    add_dataset_options(ingest)
    add_store_options(ingest)
    ingest.add_argument("--no-text-embeddings", action="store_true")
    ingest.add_argument("--recent-days", type=int, default=30)
    ingest.set_defaults(handler=_features_ingest)
    apply = feature_commands.add_parser("apply", help="register entities, views and services")
    add_store_options(apply)
    apply.set_defaults(handler=_features_apply)
    materialize = feature_commands.add_parser("materialize", help="load the online store")
    add_store_options(materialize)
    materialize.add_argument("--full", action="store_true", help="from the start, not incremental")
    materialize.set_defaults(handler=_features_materialize)
    frame = feature_commands.add_parser(
        "training-frame", help="point-in-time features for labelled interactions"
    )
    add_store_options(frame)
    frame.add_argument("--labels", type=Path, required=True, help="user_id,item_id,timestamp file")
    frame.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    frame.set_defaults(handler=_features_training_frame)
    online = feature_commands.add_parser("online", help="online feature lookup")
    add_store_options(online)
    online.add_argument("--entity", choices=["user", "item"], default="user")
    online.add_argument("ids", nargs="+", help="entity ids")
    online.set_defaults(handler=_features_online)


def _features_ingest(args: argparse.Namespace) -> int:
    from kuberec.components.features.ingest import ingest

    dataset = load_dataset(args)
    settings = store_settings(args)
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

    views = operations.apply(open_store(store_settings(args)))
    console.print(f"applied feature views: {', '.join(views)}")
    return 0


def _features_materialize(args: argparse.Namespace) -> int:
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    result = operations.materialize(open_store(store_settings(args)), full=args.full)
    done = ", ".join(result.views) if result.views else "nothing new (up to date)"
    console.print(f"materialized up to {result.end.isoformat()}: {done}")
    return 0


def _features_training_frame(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.generic import load_files
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    labels = load_files(args.labels).interactions
    frame = operations.training_frame(open_store(store_settings(args)), labels)
    write_frame(frame, args.out)
    console.print(f"wrote {len(frame):,} rows x {frame.shape[1]} columns to {args.out}")
    return 0


def _features_online(args: argparse.Namespace) -> int:
    from kuberec.components.features import operations
    from kuberec.components.features.store import open_store

    frame = operations.online_features(open_store(store_settings(args)), args.entity, args.ids)
    for record in frame.to_dict(orient="records"):
        shown = {key: json_value(value) for key, value in record.items()}
        console.print_json(json.dumps(shown, default=str), indent=None)
    return 0
