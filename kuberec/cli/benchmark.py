"""``kuberec benchmark``: benchmarks that print their figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from kuberec.cli.options import add_data_dir, console


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``benchmark quality``."""
    bench = commands.add_parser("benchmark", help="benchmarks that print their figures")
    bench_commands = bench.add_subparsers(title="benchmarks", metavar="BENCHMARK")
    quality = bench_commands.add_parser(
        "quality", help="every model on ml-100k beside published rows"
    )
    quality.add_argument(
        "--protocols", default="stratified,stratified-item,leave-one-out-sampled,temporal",
        help="comma-separated; leave-one-out-sampled runs the sequence models and auto only; "
        "stratified-item is the split the published rows were measured on",
    )  # fmt: skip
    quality.add_argument("--seeds", default="42,43,44")
    quality.add_argument(
        "--games",
        type=Path,
        help="Amazon Games Video.txt: adds its leave-one-out full-ranking table",
    )
    quality.add_argument("--models", help="comma-separated model types (default: all)")
    quality.add_argument("--png", type=Path, default=Path("benchmarks/quality.png"))
    add_data_dir(quality)
    quality.set_defaults(handler=_benchmark_quality)


def _benchmark_quality(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.movielens import load_movielens
    from kuberec.components.train.quality import run_benchmark

    dataset = load_movielens("ml-100k", args.data_dir)
    games = None
    if args.games:
        from kuberec.components.datasets.amazon_games import read_games

        games = read_games(args.games)
    with console.status("quality benchmark") as status:
        report = run_benchmark(
            dataset,
            games=games,
            protocols=[p for p in args.protocols.split(",") if p],
            seeds=[int(s) for s in args.seeds.split(",")],
            models=args.models.split(",") if args.models else None,
            png=args.png,
            progress=status.update,
        )
    print(report)  # Markdown tables: never wrapped to the terminal's width
    return 0
