"""Commands of a job on this machine: ``run``, ``status``, ``stop`` and ``compile``."""

from __future__ import annotations

import argparse
from pathlib import Path

from kuberec.cli.options import add_data_dir, console
from kuberec.errors import ConfigError, KuberecError


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``run``, ``status``, ``stop``, ``compile``."""
    run = commands.add_parser("run", help="run a RecommenderJob on this machine (embedded default)")
    run.add_argument("job", type=Path, help="RecommenderJob YAML file")
    add_data_dir(run)
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


def _run(args: argparse.Namespace) -> int:
    from kuberec.api.spec import load_job

    job = load_job(args.job)  # before the heavy imports: a bad job file is reported at once

    from kuberec.cli.run_summary import describe_pass, summary_table
    from kuberec.operator.local.loop import run_until_settled
    from kuberec.operator.local.platform import LocalPlatform

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
    from kuberec.cli.run_summary import summary_table
    from kuberec.operator.local.store import load_status

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
