"""Every example RecommenderJob is valid, also as rendered by the GitOps overlay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kuberec.api.spec import RecommenderJob, load_job
from tests.support.paths import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_example_job_is_valid(path: Path) -> None:
    assert load_job(path).kind == "RecommenderJob"


def test_the_production_overlay_renders_a_valid_gpu_job() -> None:
    rendered = subprocess.run(
        [str(KUBECTL), "kustomize", str(ROOT / "examples" / "gitops" / "overlays" / "production")],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    job = RecommenderJob.model_validate(yaml.safe_load(rendered))
    assert job.metadata.namespace == "recs-prod"
    assert job.spec.training.use_gpu and job.spec.training.workers == 4
    assert job.spec.features.profile == "production"
