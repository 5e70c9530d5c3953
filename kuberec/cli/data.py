"""``kuberec data``: dataset summaries, synthetic data and feedback sink compaction."""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

from kuberec.cli.options import add_dataset_options, console, load_dataset


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``data summary``, ``data synthetic``, ``data compact-feedback``."""
    data = commands.add_parser("data", help="datasets: summaries and synthetic data")
    data_commands = data.add_subparsers(title="data commands", metavar="COMMAND")
    summary = data_commands.add_parser("summary", help="load a dataset and print its figures")
    add_dataset_options(summary)
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
    compact = data_commands.add_parser(
        "compact-feedback", help="rewrite each closed day of a feedback sink as one file"
    )
    compact.add_argument("sink", help="the job's spec.feedback.sink (a path or fsspec URI)")
    compact.add_argument(
        "--today",
        type=date.fromisoformat,
        default=None,
        help="first day left alone, YYYY-MM-DD (default: today, UTC)",
    )
    compact.set_defaults(handler=_data_compact_feedback)


def _data_summary(args: argparse.Namespace) -> int:
    dataset = load_dataset(args)
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


def _data_compact_feedback(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.feedback_compaction import compact_sink

    result = compact_sink(args.sink, today=args.today)
    for day, files in result.days.items():
        console.print(f"{day}: {files} files -> 1 ({result.rows[day]:,} rows)")
    console.print(f"{len(result.days)} days compacted, {result.removed} files removed")
    return 0
