"""The KFP v2 pipeline: ingest -> features -> train -> evaluate -> package.

Each component is a thin shell over ``kuberec.pipelines.steps``; KFP ships a
component's source as text into the container (``base_image`` holds kuberec),
so the bodies only import and call. This module deliberately has no
``from __future__ import annotations``: KFP reads the real annotation objects
(``Output[Dataset]``, ``NamedTuple``) to type the artifacts.
"""

import os
from collections.abc import Mapping
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from kuberec import __version__

PIPELINE_NAME = "kuberec-recommender"
IMAGE = os.environ.get("KUBEREC_IMAGE", f"ghcr.io/kuberec/kuberec:{__version__}")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(job: str, context: str, dataset: Output[Dataset]) -> NamedTuple(
    "IngestOutputs", [("digest", str), ("interactions", int)]
):
    """Load the job's interactions, items and users into one canonical Dataset artifact."""
    from collections import namedtuple

    from kuberec.pipelines.steps import ingest_step

    info = ingest_step(job, context, dataset.path)
    dataset.metadata.update(info)
    return namedtuple("IngestOutputs", ["digest", "interactions"])(
        info["digest"], int(info["interactions"])
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def features(job: str, context: str, dataset: Input[Dataset], training_frame: Output[Dataset]):
    """Feast: sources, apply, materialize, and the point-in-time training frame."""
    from kuberec.pipelines.steps import features_step

    info = features_step(job, context, dataset.path, training_frame.path)
    training_frame.metadata.update(
        {k: v for k, v in info.items() if isinstance(v, (int, float, str))}
    )


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(
    job: str,
    context: str,
    dataset: Input[Dataset],
    model: Output[Model],
    validation: Output[Metrics],
    curves: Output[HTML],
) -> str:
    """Train the recommender (Ray Train, or closed form) into a run directory."""
    import base64
    import json
    from pathlib import Path

    from kuberec.pipelines.steps import train_step

    info = train_step(job, context, dataset.path, model.path)
    model.metadata.update({"model_type": info["model_type"], "best_epoch": info["best_epoch"]})
    for name, value in info["validation"].items():
        validation.log_metric(name, float(value))
    for candidate in info.get("selection", {}).get("candidates", []):  # model.type auto
        for name, value in candidate["validation"].items():
            validation.log_metric(f"auto_{candidate['model_type']}_{name}", float(value))
        if candidate["fit_seconds"] is not None:
            validation.log_metric(
                f"auto_{candidate['model_type']}_fit_seconds", float(candidate["fit_seconds"])
            )
    png = Path(model.path) / "curves.png"
    image = base64.b64encode(png.read_bytes()).decode() if png.exists() else ""
    Path(curves.path).write_text(f'<img src="data:image/png;base64,{image}"/>')
    return json.dumps(info)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    job: str,
    context: str,
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
) -> str:
    """Challenger vs champion on the same holdout, and the gate's decision with its reasons."""
    import json

    from kuberec.pipelines.steps import evaluate_step

    result = evaluate_step(job, context, dataset.path, model.path, report.path)
    for name, value in result["challenger"].items():
        metrics.log_metric(name, float(value))
    metrics.log_metric("accepted", float(result["decision"]["accepted"]))
    return json.dumps(result)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def package(
    job: str,
    context: str,
    model: Input[Model],
    train_info: str,
    evaluation: str,
    digest: str,
    interactions: int,
    bento: Output[Model],
) -> str:
    """The challenger as a BentoML model with lineage, exported to the artifact store."""
    import json

    from kuberec.pipelines.steps import package_step

    result = package_step(job, context, model.path, train_info, evaluation, digest, interactions)
    bento.uri = result["model"]["uri"]
    bento.metadata.update({"tag": result["model"]["version"], **result["decision"]})
    return json.dumps(result)


def pipeline_with_env(env: Mapping[str, str]):
    """The pipeline with ``env`` set on every step's container (KFP's task environment).

    On Kubernetes the operator passes the shared Feast stores (``KUBEREC_FEAST_REDIS``,
    ``KUBEREC_FEAST_REGISTRY``) so the features step fills the stores the serving pods
    read; locally the environment is empty and the steps inherit the process's own.
    """
    settings = sorted(env.items())

    def _env(task):
        for name, value in settings:
            task.set_env_variable(name, value)
        return task

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="RecommenderJob: Feast features, Ray training, gated evaluation, BentoML model",
    )
    def recommender_pipeline(job: str, context: str) -> str:
        loaded = _env(ingest(job=job, context=context).set_display_name("ingest"))
        feats = _env(features(job=job, context=context, dataset=loaded.outputs["dataset"]))
        trained = _env(
            train(job=job, context=context, dataset=loaded.outputs["dataset"]).after(feats)
        )
        evaluated = _env(
            evaluate(
                job=job,
                context=context,
                dataset=loaded.outputs["dataset"],
                model=trained.outputs["model"],
            )
        )
        packaged = _env(
            package(
                job=job,
                context=context,
                model=trained.outputs["model"],
                train_info=trained.outputs["Output"],
                evaluation=evaluated.outputs["Output"],
                digest=loaded.outputs["digest"],
                interactions=loaded.outputs["interactions"],
            )
        )
        return packaged.outputs["Output"]

    return recommender_pipeline


recommender_pipeline = pipeline_with_env({})
