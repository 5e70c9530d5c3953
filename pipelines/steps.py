"""The five pipeline steps as plain functions; the KFP components in ``pipeline.py`` call them.

Keeping the work here (not inside the component functions, whose source KFP
ships as text) makes each step importable, testable and identical in
``kfp.local`` and on a cluster. Every step records start, success or failure
(with the reason) to ``context.events`` when the local platform asks for it.
"""

from __future__ import annotations

import json
import resource
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec

from kuberec import __version__
from kuberec.api.spec import RecommenderJob
from kuberec.components.datasets.artifact import load_dataset, save_dataset
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.datasets.feedback import with_feedback
from kuberec.components.datasets.sources import load_source
from kuberec.components.evaluation import Split, split
from kuberec.components.models import load_model
from kuberec.components.package import (
    dataset_digest,
    export_model,
    model_dir,
    package_run,
    resolve_model,
)
from kuberec.components.train.compare import compare
from kuberec.components.train.gate import Gate, decide
from kuberec.components.train.run_dir import METRICS, MODEL
from kuberec.pipelines.context import RunContext, parse_job

STEPS = ("ingest", "features", "train", "evaluate", "package")


@contextmanager
def recorded(step: str, context: RunContext) -> Iterator[dict[str, object]]:
    """Append ``started``/``succeeded``/``failed`` events; a failure keeps its reason.

    What the step puts in the yielded dict travels with its ``succeeded`` event.
    """
    _event(context, step, "started")
    started = time.perf_counter()
    extra: dict[str, object] = {}
    try:
        yield extra
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        _event(context, step, "failed", reason=reason, traceback=traceback.format_exc())
        raise
    _event(
        context,
        step,
        "succeeded",
        seconds=round(time.perf_counter() - started, 2),
        peak_rss_mb=peak_rss_mb(),
        **extra,
    )


def peak_rss_mb() -> float:
    """The largest resident set of this process or any child it waited for, in MiB.

    Each step runs in a process of its own (kfp.local and on a cluster), so this is
    the step's peak memory: what decides whether a step fits the machine.
    """
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, children) / 1024, 1)  # Linux reports KiB


def ingest_step(job_text: str, context_text: str, out_dir: str) -> dict[str, Any]:
    """Load the job's data and store it canonically; returns the lineage of the data."""
    job, context = parse_job(job_text), RunContext.from_json(context_text)
    with recorded("ingest", context):
        base = Path(context.base or ".")
        dataset = load_source(
            job.spec.data,
            data_dir=Path(context.data_dir) if context.data_dir else None,
            base=base,
        )
        dataset = with_feedback(dataset, job.spec, base)  # spec.data.feedback
        save_dataset(dataset, Path(out_dir))
        return {"digest": dataset_digest(dataset), **_json_safe(dataset.summary())}


def features_step(job_text: str, context_text: str, dataset_dir: str, frame_path: str) -> dict:
    """Feast: ingest sources, apply, materialize, and the point-in-time training frame."""
    from kuberec.components.features import operations
    from kuberec.components.features.store import StoreSettings, open_store
    from kuberec.pipelines.features_step import run_features

    job, context = parse_job(job_text), RunContext.from_json(context_text)
    with recorded("features", context):
        dataset = load_dataset(Path(dataset_dir))
        features = job.spec.features
        settings = StoreSettings(
            Path(context.feature_store_dir), profile=features.profile, project=job.metadata.name
        )
        summary = run_features(
            dataset, settings,
            text_embeddings=features.text_embeddings, recent_days=features.recent_days,
        )  # fmt: skip
        train = _split(job, dataset).train
        labels = train[["user_id", "item_id", "timestamp"]]
        frame = operations.training_frame(open_store(settings), labels, features.feature_service)
        Path(frame_path).parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(frame_path, index=False)
        return {
            "rows": summary.rows, "materialized": summary.materialized,
            "watermark": summary.watermark, "training_frame_rows": len(frame),
            "training_frame_columns": len(frame.columns), "seconds": summary.seconds,
        }  # fmt: skip


def train_step(job_text: str, context_text: str, dataset_dir: str, run_dir: str) -> dict:
    """Train the job's model on the evaluation protocol's training part (Ray, or closed form)."""
    from kuberec.api.names import AUTO_MODEL
    from kuberec.components.train.auto import require_no_hparams, select
    from kuberec.components.train.job_training import job_training
    from kuberec.components.train.run import train_run

    job, context = parse_job(job_text), RunContext.from_json(context_text)
    with recorded("train", context):
        dataset = load_dataset(Path(dataset_dir))
        parts = _split(job, dataset)
        train_set = dataset.with_interactions(parts.train)
        run = job_training(
            job.spec, ray_address=context.ray_address or job.spec.training.ray_address
        )
        model_type, hparams, settings = run.model_type, run.hparams, run.settings
        embeddings = _embeddings(job, dataset)
        selection = None
        if model_type == AUTO_MODEL:  # chosen on validation carved from the training part
            require_no_hparams(hparams)
            selection = select(
                train_set,
                run.auto(),
                settings,
                protocol=job.spec.evaluation.protocol,
                text_embeddings=embeddings,
            )
            model_type = selection.chosen
        tuned: dict[str, Any] = {}
        if job.spec.model.tuning.trials > 0:
            from kuberec.components.train.tune import tune_hparams

            outcome = tune_hparams(
                model_type, train_set, budget=job.spec.model.tuning.trials, settings=settings,
                storage_path=Path(run_dir).parent / "tune", base_hparams=hparams,
                run_name=f"tune-{context.run_key}", text_embeddings=embeddings,
            )  # fmt: skip
            hparams = {**hparams, **outcome.best_hparams}
            tuned = {"trials": len(outcome.trials), "best_score": outcome.best_score}
        summary = train_run(
            train_set, Path(run_dir), model_type=model_type, hparams=hparams, settings=settings,
            source={"spec": job.spec.data.model_dump(mode="json", exclude_none=True),
                    "protocol": job.spec.evaluation.protocol, "part": "train"},
            text_embeddings=embeddings, overwrite=True, selection=selection,
        )  # fmt: skip
        return {
            "model_type": summary.model_type,
            "best_epoch": summary.best_epoch,
            "validation": summary.validation,
            "seconds": summary.seconds,
            "tuning": tuned,
            **({"selection": selection.to_dict()} if selection else {}),
        }


def evaluate_step(
    job_text: str, context_text: str, dataset_dir: str, run_dir: str, report_path: str
) -> dict[str, Any]:
    """Challenger vs champion on the same holdout, the gate's decision, and a report."""
    from kuberec.pipelines.report import write_report

    job, context = parse_job(job_text), RunContext.from_json(context_text)
    with recorded("evaluate", context) as event:
        dataset = load_dataset(Path(dataset_dir))
        parts = _split(job, dataset)
        evaluation = job.spec.evaluation
        challenger = load_model(Path(run_dir) / MODEL)
        champion = None
        if context.champion_uri:
            champion = load_model(model_dir(resolve_model(context.champion_uri)))
        comparison = compare(challenger, champion, parts, evaluation.k, job.spec.serving.ranking)
        metric = f"{evaluation.metric}@{evaluation.k}"
        gate = Gate(metric, evaluation.gates.min_metrics, evaluation.gates.min_improvement)
        decision = decide(gate, comparison.challenger, comparison.champion)
        result = {
            "protocol": evaluation.protocol,
            "k": evaluation.k,
            **comparison.to_dict(),
            "decision": decision.to_dict(),
        }
        selection = _selection(Path(run_dir))
        if selection:
            result["selection"] = selection
        write_report(Path(report_path), job, result)
        event["report"] = str(report_path)
        return result


def package_step(
    job_text: str, context_text: str, run_dir: str, train_text: str, evaluation_text: str,
    digest: str, interactions: int,
) -> dict[str, Any]:  # fmt: skip
    """The challenger as a BentoML model with its lineage, exported to the artifact store."""
    job, context = parse_job(job_text), RunContext.from_json(context_text)
    with recorded("package", context):
        evaluation = json.loads(evaluation_text)
        training = json.loads(train_text)
        lineage = {
            "specHash": _spec_hash(job),
            "datasetDigest": digest,
            "interactions": interactions,
            "pipelineRun": context.run_id,
            "codeVersion": __version__,
            "trainedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        metadata = {
            "job": f"{job.metadata.namespace}/{job.metadata.name}",
            "model_type": training["model_type"],
            "metrics": evaluation["challenger"],
            "lineage": lineage,
            "feature_service": job.spec.features.feature_service,
            "decision": evaluation["decision"],
        }
        packaged = package_run(Path(run_dir), job.metadata.name, metadata)
        version = packaged.tag.split(":", 1)[1]
        root = f"{context.artifact_root.rstrip('/')}/{job.metadata.namespace}/{job.metadata.name}"
        uri = export_model(packaged.tag, f"{root}/models/{version}.bentomodel")
        result = {
            "runKey": context.run_key,
            "model": {
                "version": packaged.tag, "uri": uri, "modelType": training["model_type"],
                "metrics": evaluation["challenger"], "lineage": lineage,
                **({"selection": training["selection"]} if "selection" in training else {}),
            },
            "decision": evaluation["decision"],
            "championMetrics": evaluation["champion"],
        }  # fmt: skip
        _write_text(context.result_uri(job), json.dumps(result, indent=2))
        return result


def _selection(run_dir: Path) -> dict[str, Any] | None:
    """What ``model.type: auto`` tried, from the run's metrics.json (None: a named type)."""
    metrics = run_dir / METRICS
    return json.loads(metrics.read_text()).get("selection") if metrics.is_file() else None


def _split(job: RecommenderJob, dataset: Dataset) -> Split:
    evaluation = job.spec.evaluation
    return split(evaluation.protocol, dataset.interactions, seed=evaluation.seed)


def _embeddings(job: RecommenderJob, dataset: Dataset) -> Any:
    if not job.spec.features.text_embeddings or not (dataset.items["title"] != "").any():
        return None
    from kuberec.components.features.embeddings import embed_items

    return embed_items(dataset.items)


def _spec_hash(job: RecommenderJob) -> str:
    from kuberec.api.spec import spec_hash

    return spec_hash(job.spec)


def _event(context: RunContext, step: str, state: str, **extra: object) -> None:
    if not context.events:
        return
    record = {"time": datetime.now(UTC).isoformat(), "step": step, "state": state, **extra}
    with open(context.events, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _write_text(uri: str, text: str) -> None:
    if uri.startswith("file://") or "://" not in uri:
        Path(uri.removeprefix("file://")).parent.mkdir(parents=True, exist_ok=True)
    with fsspec.open(uri, "w") as handle:
        handle.write(text)


def _json_safe(values: dict[str, object]) -> dict[str, object]:
    return json.loads(json.dumps(values, default=str))
