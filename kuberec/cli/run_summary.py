"""What ``kuberec run`` shows: a one-line progress text per pass, and the final summary table."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from kuberec.api.spec import RecommenderJob
from kuberec.api.status import JobStatus
from kuberec.operator.reconcile_pass import ReconcilePass


def describe_pass(job: RecommenderJob, result: ReconcilePass) -> str:
    status = result.status
    text = f"[bold]{job.metadata.name}[/]: {status.phase}"
    run = status.pipeline_run
    if run is not None and status.run_in_flight:
        text += f" · pipeline run {run.key} · step {run.step or 'starting'}"
    if status.rollout is not None:
        text += f" · canary at {status.rollout.weight}%"
    return text


def summary_table(name: str, status: JobStatus, workdir: Path) -> Table:
    table = Table(title=f"RecommenderJob {name}: {status.phase}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    gate = status.gate
    if gate is not None:
        verdict = "[green]accepted[/]" if gate.accepted else "[red]rejected[/]"
        table.add_row("gate", f"{verdict}: " + "; ".join(gate.reasons))
    champion, challenger = status.champion, status.challenger
    names = sorted({*(champion.metrics if champion else {}),
                    *(challenger.metrics if challenger else {})})  # fmt: skip
    for metric in names:
        has = challenger is not None and metric in challenger.metrics
        ours = f"{challenger.metrics[metric]:.4f}" if has else ""  # type: ignore[union-attr]
        known = champion is not None and metric in champion.metrics
        theirs = f"{champion.metrics[metric]:.4f}" if known else ""  # type: ignore[union-attr]
        row = f"champion {theirs or '-'}" + (f" · challenger {ours}" if ours else "")
        table.add_row(metric.replace("At", "@"), row)
    if champion is not None:
        table.add_row("champion", f"{champion.version} ({champion.model_type})")
        table.add_row("model artifact", champion.uri)
    if challenger is not None:
        table.add_row("challenger", f"{challenger.version} ({challenger.model_type})")
    rollout = status.rollout or status.last_rollout
    if rollout is not None:
        steps = " → ".join(f"{d.weight}% {d.action}" for d in rollout.decisions) or "starting"
        table.add_row("canary", f"{rollout.outcome}: {steps}")
    run = status.pipeline_run
    if run is not None:
        detail = f" · {run.message}" if run.message else ""
        table.add_row("pipeline run", f"{run.key} · {run.state}{detail}")
        if run.log:
            table.add_row("log", run.log)
        report = _report(workdir, run.key)
        if report:
            table.add_row("report", str(report))
    if status.url:
        table.add_row("url", f"{status.url}  (POST /recommend; `kuberec stop {name}`)")
    table.add_row("status", str(workdir / "status.json"))
    return table


def _report(workdir: Path, key: str) -> Path | None:
    """The evaluate step's report of run ``key``, as its succeeded event recorded it."""
    from kuberec.operator.local.platform import read_events

    for event in read_events(workdir / "runs" / key / "events.jsonl"):
        if event["step"] == "evaluate" and event["state"] == "succeeded" and "report" in event:
            return Path(event["report"])
    return None
