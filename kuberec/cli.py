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
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from kuberec import __version__, cli_operator, cli_serving
from kuberec.errors import ConfigError, KuberecError

if TYPE_CHECKING:
    from kuberec.api.spec import DataSpec, RankingSpec
    from kuberec.components.datasets.canonical import Dataset
    from kuberec.components.features.store import StoreSettings
    from kuberec.components.train.auto import Selection

console = Console()
err_console = Console(stderr=True)
Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_format, args.verbose)
    if not args.verbose:
        _hide_library_warnings()
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except KuberecError as exc:
        print_error(exc)
        return 2


def print_error(exc: BaseException) -> None:
    """One line on stderr, the message as plain text: brackets in paths or patterns stay as given.

    Rich markup in a message would be interpreted (``[/]`` even raises), and a
    multi-line message (a YAML parser's) would not be one line.
    """
    message = " ".join(str(exc).split())
    err_console.print(Text.assemble(("error:", "bold red"), " ", message),
                      highlight=False, soft_wrap=True)  # fmt: skip


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
    run.add_argument("--no-serve", action="store_true",
                     help="stop at the packaged model; start no servers")  # fmt: skip
    run.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait (1 h)")
    run.add_argument("--wait", action="store_true",
                     help="if another `kuberec run` holds the job directory, wait for it "
                          "(up to --timeout) instead of exiting")  # fmt: skip
    run.add_argument("--replay-rate", type=float, default=20.0,
                     help="requests/s from the holdout during a canary (0: none)")  # fmt: skip
    run.set_defaults(handler=_run)

    for name, handler, text in (
        ("status", _status, "show a local job's status (phase, models, gate, URL)"),
        ("stop", _stop, "stop a local job's servers"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("job", help="RecommenderJob YAML file, or the job's name")
        command.add_argument("--workdir", type=Path, help="job directory (default .kuberec/<name>)")
        command.set_defaults(handler=handler)

    compile_ = commands.add_parser("compile", help="compile a job's KFP pipeline to IR YAML")
    compile_.add_argument("-f", "--file", type=Path, required=True, help="RecommenderJob YAML")
    compile_.add_argument("-o", "--out", type=Path, required=True, help="pipeline.yaml to write")
    compile_.set_defaults(handler=_compile)

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
    train.add_argument("--budget-seconds", type=float,
                       help="auto: seconds the candidates may take together (default 300)")
    train.add_argument("--candidates", help="auto: comma-separated model types to try "
                       "(default ease_t,ease,sparse_ease,item_knn,popularity)")
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a hyperparameter or training setting, e.g. --set dim=128 --set workers=2",
    )  # fmt: skip
    train.add_argument("--no-text-embeddings", action="store_true")
    train.add_argument("--out", type=Path, required=True, help="the run directory to write")
    _add_data_dir(train)
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
    evaluate.add_argument("--png", type=Path,
                          help="where the accuracy-diversity plot goes when diversity has "
                               "several values (default: RUN_DIR/ranking-curve.png)")
    _add_data_dir(evaluate)
    evaluate.set_defaults(handler=_evaluate)

    bench = commands.add_parser("benchmark", help="benchmarks that print their figures")
    bench_commands = bench.add_subparsers(title="benchmarks", metavar="BENCHMARK")
    quality = bench_commands.add_parser(
        "quality", help="every model on ml-100k beside published rows"
    )
    quality.add_argument(
        "--protocols", default="stratified,leave-one-out-sampled,temporal",
        help="comma-separated; leave-one-out-sampled runs the sequence models and auto only",
    )  # fmt: skip
    quality.add_argument("--seeds", default="42,43,44")
    quality.add_argument("--games", type=Path,
                         help="Amazon Games Video.txt: adds its leave-one-out full-ranking table")
    quality.add_argument("--models", help="comma-separated model types (default: all)")
    quality.add_argument("--png", type=Path, default=Path("benchmarks/quality.png"))
    _add_data_dir(quality)
    quality.set_defaults(handler=_benchmark_quality)

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
    cli_serving.add_commands(commands)
    cli_operator.add_commands(commands)
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
    from kuberec.api.spec import load_job

    job = load_job(args.job)  # before the heavy imports: a bad job file is reported at once

    from kuberec.operator.local.loop import run_until_settled
    from kuberec.operator.local.platform import LocalPlatform
    from kuberec.run_summary import describe_pass, summary_table

    workdir = (args.workdir or Path(".kuberec") / job.metadata.name).resolve()
    platform = LocalPlatform(
        workdir, data_dir=args.data_dir, base=args.job.parent, serve=not args.no_serve,
        replay_rate=args.replay_rate,
    )  # fmt: skip
    with console.status(f"[bold]{job.metadata.name}[/]: reconciling") as spinner:
        status = run_until_settled(
            job, platform, workdir, timeout_s=args.timeout,
            on_pass=lambda result: spinner.update(describe_pass(job, result)),
            wait_s=args.timeout if args.wait else 0.0,
        )  # fmt: skip
    console.print(summary_table(job.metadata.name, status, workdir))
    if status.phase == "Failed":
        message = status.pipeline_run.message if status.pipeline_run else "the job failed"
        raise KuberecError(f"{job.metadata.name}: {message}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kuberec.operator.local.store import load_status
    from kuberec.run_summary import summary_table

    name, workdir = _local_job(args)
    status = load_status(workdir)
    if status is None:
        raise ConfigError(f"{workdir} holds no status; run `kuberec run` for this job first")
    console.print(summary_table(name, status, workdir))
    return 0


def _stop(args: argparse.Namespace) -> int:
    from kuberec.serving.canary.local import LocalRollout

    name, workdir = _local_job(args)
    LocalRollout(workdir / "serving").stop()
    console.print(f"stopped the servers of {name}")
    return 0


def _local_job(args: argparse.Namespace) -> tuple[str, Path]:
    """(job name, job directory) from a job file or a bare name."""
    from kuberec.api.spec import load_job
    from kuberec.operator.local.job_dir import check_owner

    is_file = args.job.endswith((".yaml", ".yml"))
    name = load_job(Path(args.job)).metadata.name if is_file else args.job
    workdir = (args.workdir or Path(".kuberec") / name).resolve()
    if not workdir.is_dir():
        raise ConfigError(f"no job directory {workdir}; pass --workdir")
    check_owner(workdir, name)
    return name, workdir


def _compile(args: argparse.Namespace) -> int:
    from kuberec.api.spec import load_job
    from kuberec.pipelines.compile import compile_pipeline

    job = load_job(args.file)
    out = compile_pipeline(job, args.out)
    console.print(f"wrote {out} (KFP v2 IR YAML for {job.metadata.name})")
    return 0


def _train(args: argparse.Namespace) -> int:
    from kuberec.api.spec import DataSpec, FileSpec, JobSpec, load_job
    from kuberec.components.datasets.sources import load_source
    from kuberec.components.train.job_training import job_training
    from kuberec.components.train.run import describe, train_run

    overrides = dict(_typed_key_value(item) for item in args.set)
    if args.file:
        spec, base = load_job(args.file).spec, args.file.parent
    else:
        columns = dict(_key_value(item, "--column") for item in args.column)
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
    parser.add_argument("-f", "--file", type=Path,
                        help="re-rank as this job's spec.serving.ranking says")
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
    _write_frame(frame, args.out)
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


def _typed_key_value(text: str) -> tuple[str, object]:
    """``--set key=value`` with YAML typing: 0.01 is a float, 64 an int, [64, 32] a list."""
    import yaml

    key, value = _key_value(text, "--set")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc})") from exc


def _absolute(data: DataSpec, base: Path) -> DataSpec:
    """File URIs made absolute, so a run directory can be evaluated from anywhere."""
    updates = {}
    for name in ("interactions", "items", "users"):
        spec = getattr(data, name)
        if spec is not None and "://" not in spec.uri and not Path(spec.uri).is_absolute():
            updates[name] = spec.model_copy(update={"uri": str((base / spec.uri).resolve())})
    return data.model_copy(update=updates)


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


def _hide_library_warnings() -> None:
    """Library deprecation chatter (Feast, ibis, pandas) is for their developers, not users.

    Feast resets warning filters when imported, so the display hook is wrapped
    instead of relying on filters alone.
    """
    hidden = (DeprecationWarning, FutureWarning, UserWarning)
    for category in hidden:
        warnings.filterwarnings("ignore", category=category)
    show = warnings.showwarning

    def showwarning(message, category, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not issubclass(category, hidden):
            show(message, category, *args, **kwargs)

    warnings.showwarning = showwarning


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
