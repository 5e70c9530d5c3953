"""Commands of a run directory: ``train``, ``recommend`` and ``evaluate``.

The job's training arguments are built by ``components/train/job_training.py``, as
for the pipeline's train step; this module only parses and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from kuberec.cli.options import (
    add_data_dir,
    console,
    err_console,
    key_value,
    typed_key_value,
    write_frame,
)
from kuberec.errors import ConfigError

if TYPE_CHECKING:
    from kuberec.api.spec import DataSpec, RankingSpec
    from kuberec.components.train.auto import Selection


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``train``, ``recommend``, ``evaluate``."""
    train = commands.add_parser("train", help="train a model on Ray and write a run directory")
    train_source = train.add_mutually_exclusive_group(required=True)
    train_source.add_argument("-f", "--file", type=Path, help="take the settings from a job")
    train_source.add_argument("--interactions", type=Path, help="CSV or Parquet interactions")
    train_source.add_argument("--dataset", help="a MovieLens release, e.g. ml-100k")
    train.add_argument("--items", type=Path, help="items: item_id + title, genres, text")
    train.add_argument("--users", type=Path, help="users: user_id + attributes")
    train.add_argument("--column", action="append", default=[], metavar="CANONICAL=YOURS")
    train.add_argument(
        "--model", help="model type (default: auto, the best of the candidates on validation)"
    )
    train.add_argument(
        "--budget-seconds",
        type=float,
        help="auto: seconds the candidates may take together (default 300)",
    )
    train.add_argument(
        "--candidates",
        help="auto: comma-separated model types to try "
        "(default ease_t,ease,sparse_ease,item_knn,popularity)",
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a hyperparameter or training setting, e.g. --set dim=128 --set workers=2",
    )  # fmt: skip
    train.add_argument("--no-text-embeddings", action="store_true")
    train.add_argument("--out", type=Path, required=True, help="the run directory to write")
    add_data_dir(train)
    train.set_defaults(handler=_train)

    rec = commands.add_parser("recommend", help="top-K per user from a run directory")
    rec.add_argument("run_dir", type=Path)
    rec.add_argument("--users", type=Path, help="file with a user_id column (default: all)")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--out", type=Path, required=True, help=".csv or .parquet")
    _add_ranking(rec)
    rec.set_defaults(handler=_recommend)

    evaluate = commands.add_parser("evaluate", help="score a run's recipe under a protocol")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--protocol", required=True)
    evaluate.add_argument("--k", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=42)
    _add_ranking(evaluate, curve=True)
    evaluate.add_argument(
        "--png",
        type=Path,
        help="where the accuracy-diversity plot goes when diversity has "
        "several values (default: RUN_DIR/ranking-curve.png)",
    )
    add_data_dir(evaluate)
    evaluate.set_defaults(handler=_evaluate)


def _train(args: argparse.Namespace) -> int:
    from kuberec.api.spec import DataSpec, FileSpec, JobSpec, load_job
    from kuberec.components.datasets.sources import load_source
    from kuberec.components.train.job_training import job_training
    from kuberec.components.train.run import describe, train_run

    overrides = dict(typed_key_value(item) for item in args.set)
    if args.file:
        spec, base = load_job(args.file).spec, args.file.parent
    else:
        columns = dict(key_value(item, "--column") for item in args.column)
        if args.dataset:
            data_spec = DataSpec(movielens=args.dataset)
        else:
            data_spec = DataSpec(
                interactions=FileSpec(uri=str(args.interactions.resolve()), columns=columns),
                items=FileSpec(uri=str(args.items.resolve())) if args.items else None,
                users=FileSpec(uri=str(args.users.resolve())) if args.users else None,
            )
        spec, base = JobSpec(data=data_spec), Path()
    run = job_training(spec, model_type=args.model, overrides=overrides, auto=_auto(args))
    auto_settings = run.auto()
    data_spec = spec.data
    dataset = load_source(data_spec, data_dir=args.data_dir, base=base)
    embeddings = None
    if not args.no_text_embeddings and (dataset.items["title"] != "").any():
        from kuberec.components.features.embeddings import embed_items

        with console.status("embedding item text"):
            embeddings = embed_items(dataset.items)
    source = {"spec": _absolute(data_spec, base).model_dump(exclude_none=True)}
    summary = train_run(
        dataset, args.out, model_type=run.model_type, hparams=run.hparams,
        settings=run.settings, source=source, text_embeddings=embeddings, auto=auto_settings,
        progress=console.print,
    )  # fmt: skip
    if summary.selection is not None:
        console.print(_selection_table(summary.selection))
    console.print_json(describe(summary))
    return 0


def _add_ranking(parser: argparse.ArgumentParser, *, curve: bool = False) -> None:
    """``-f JOB`` (its spec.serving.ranking) and ``--ranking KEY=VALUE`` over it."""
    parser.add_argument(
        "-f", "--file", type=Path, help="re-rank as this job's spec.serving.ranking says"
    )
    sweep = " (several comma-separated diversities: one evaluation each, and a plot)"
    parser.add_argument(
        "--ranking", action="append", default=[], metavar="KEY=VALUE",
        help="a re-ranking field over the job's (or the default's), e.g. --ranking "
             "diversity=0.2 --ranking maxPerCategory=3 --ranking pinned=50,181"
             + (sweep if curve else ""),
    )  # fmt: skip


def _ranking(args: argparse.Namespace, assignments: list[str]) -> RankingSpec:
    """The strategy of ``-f`` with ``assignments`` over it."""
    from kuberec.api.spec import RankingSpec, load_job
    from kuberec.components.models.ranking import parse_assignments

    base = load_job(args.file).spec.serving.ranking if args.file else RankingSpec()
    return base.override(parse_assignments(assignments)) if assignments else base


def _diversities(assignments: list[str]) -> tuple[list[str], list[float] | None]:
    """``diversity=0,0.5,1`` taken out of the assignments as a sweep."""
    rest, sweep = [], None
    for text in assignments:
        key, _, value = text.partition("=")
        if key.strip() == "diversity" and "," in value:
            try:
                sweep = [float(v) for v in value.split(",") if v.strip()]
            except ValueError:
                raise ConfigError(f"--ranking diversity: expected numbers, got {value!r}") from None
            bad = [v for v in sweep if not 0 <= v <= 1]
            if bad:
                raise ConfigError(f"--ranking diversity: must be in [0, 1], got {bad}")
        else:
            rest.append(text)
    return rest, sweep


def _auto(args: argparse.Namespace) -> dict[str, Any]:
    """The CLI's overrides of ``model.auto``."""
    values: dict[str, Any] = {}
    if args.budget_seconds is not None:
        values["budget_seconds"] = args.budget_seconds
    if args.candidates:
        values["candidates"] = tuple(c.strip() for c in args.candidates.split(",") if c.strip())
    return values


def _selection_table(selection: Selection) -> Table:
    from kuberec.components.train.auto import TABLE_COLUMNS, table

    grid = Table(title=f"model auto: chose {selection.chosen} (validation {selection.metric})")
    for column in TABLE_COLUMNS:
        grid.add_column(column)
    for row in table(selection.to_dict()):
        grid.add_row(*row)
    return grid


def _recommend(args: argparse.Namespace) -> int:
    from kuberec.components.datasets.generic import read_ids
    from kuberec.components.train.batch_recommend import recommend_users

    user_ids = read_ids(args.users, "user_id").tolist() if args.users else None
    frame, unknown = recommend_users(args.run_dir, user_ids, args.k,
                                     _ranking(args, args.ranking))  # fmt: skip
    write_frame(frame, args.out)
    console.print(f"wrote {len(frame):,} recommendations for {frame['user_id'].nunique():,} users "
                  f"to {args.out}")  # fmt: skip
    if unknown:
        shown = ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else "")
        skipped = (f"{len(unknown)} user(s) unknown to the model, skipped: ", "yellow")
        err_console.print(Text.assemble(skipped, shown), highlight=False)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from kuberec.components.train.evaluate_run import evaluate_run

    assignments, sweep = _diversities(args.ranking)
    ranking = _ranking(args, assignments)
    result = evaluate_run(
        args.run_dir, args.protocol, k=args.k, seed=args.seed, data_dir=args.data_dir,
        ranking=ranking, diversities=sweep, png=args.png,
    )  # fmt: skip
    table = Table(title=f"{args.run_dir}: {args.protocol} @ {args.k}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    console.print(table)
    if "ranking_curve" in result:
        curve = Table(title=f"accuracy-diversity curve (plot: {result['ranking_curve_png']})")
        for column in result["ranking_curve"][0]:
            curve.add_column(column, justify="right")
        for point in result["ranking_curve"]:
            curve.add_row(*(f"{v:.4f}" for v in point.values()))
        console.print(curve)
    return 0


def _absolute(data: DataSpec, base: Path) -> DataSpec:
    """File URIs made absolute, so a run directory can be evaluated from anywhere."""
    updates = {}
    for name in ("interactions", "items", "users"):
        spec = getattr(data, name)
        if spec is not None and "://" not in spec.uri and not Path(spec.uri).is_absolute():
            updates[name] = spec.model_copy(update={"uri": str((base / spec.uri).resolve())})
    return data.model_copy(update=updates)
