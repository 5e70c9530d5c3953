"""``kuberec compile``: the pipeline as deterministic KFP IR YAML, with the job as defaults."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from kfp import compiler

from kuberec.api.spec import RecommenderJob
from kuberec.pipelines.context import RunContext, job_json
from kuberec.pipelines.pipeline import pipeline_with_env


def compile_pipeline(
    job: RecommenderJob,
    out: Path,
    context: RunContext | None = None,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Write IR YAML whose parameter defaults are this job (and context, when given), with
    ``env`` set on every step's container (the operator's shared Feast stores).

    The same job compiles to the same bytes: nothing time- or host-dependent is
    embedded, so the file can be committed and diffed (GitOps).
    """
    params = {"job": job_json(job)}
    if context is not None:
        params["context"] = context.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "pipeline.yaml"
        pipeline = pipeline_with_env(env or {})
        compiler.Compiler().compile(pipeline, str(staged), pipeline_parameters=params)
        out.write_text(staged.read_text())
    return out
