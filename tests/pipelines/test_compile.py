"""The KFP pipeline compiles to deterministic IR YAML with the job as parameter defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from kuberec.api.spec import load_job
from kuberec.cli import main
from kuberec.pipelines.compile import compile_pipeline
from tests.support.paths import ROOT

EXAMPLE = ROOT / "examples" / "movielens-100k.yaml"


def test_the_pipeline_has_the_five_steps_in_order(tmp_path: Path) -> None:
    ir = yaml.safe_load(compile_pipeline(load_job(EXAMPLE), tmp_path / "p.yaml").read_text())
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"ingest", "features", "train", "evaluate", "package"}
    assert tasks["train"]["dependentTasks"] == ["features", "ingest"]
    assert set(tasks["package"]["dependentTasks"]) == {"evaluate", "ingest", "train"}


def test_compiling_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    job = load_job(EXAMPLE)
    first = compile_pipeline(job, tmp_path / "a.yaml").read_bytes()
    assert compile_pipeline(job, tmp_path / "b.yaml").read_bytes() == first


def test_the_job_is_the_default_of_the_job_parameter(tmp_path: Path) -> None:
    ir = yaml.safe_load(compile_pipeline(load_job(EXAMPLE), tmp_path / "p.yaml").read_text())
    default = ir["root"]["inputDefinitions"]["parameters"]["job"]["defaultValue"]
    assert '"movielens":"ml-100k"' in default


def test_artifacts_are_typed_for_the_kfp_ui(tmp_path: Path) -> None:
    ir = yaml.safe_load(compile_pipeline(load_job(EXAMPLE), tmp_path / "p.yaml").read_text())
    outputs = ir["components"]["comp-evaluate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["report"]["artifactType"]["schemaTitle"] == "system.Markdown"


def _executor_env(ir: dict) -> dict[str, list[dict[str, str]] | None]:
    return {
        name: e["container"].get("env") for name, e in ir["deploymentSpec"]["executors"].items()
    }


def test_the_given_environment_is_set_on_every_steps_container(tmp_path: Path) -> None:
    env = {"KUBEREC_FEAST_REDIS": "redis:6379", "KUBEREC_FEAST_REGISTRY": "postgresql://pg/f"}
    out = compile_pipeline(load_job(EXAMPLE), tmp_path / "p.yaml", env=env)
    steps = _executor_env(yaml.safe_load(out.read_text()))
    assert len(steps) == 5
    assert all({e["name"]: e["value"] for e in s or []} == env for s in steps.values())


def test_without_an_environment_no_step_sets_one(tmp_path: Path) -> None:
    out = compile_pipeline(load_job(EXAMPLE), tmp_path / "p.yaml")
    assert set(_executor_env(yaml.safe_load(out.read_text())).values()) == {None}


def test_kuberec_compile_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "pipeline.yaml"
    assert main(["compile", "-f", str(EXAMPLE), "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["pipelineInfo"]["name"] == "kuberec-recommender"


def test_kuberec_compile_refuses_an_invalid_job(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text() + "  training: {workers: 0}\n")
    assert main(["compile", "-f", str(bad), "-o", str(tmp_path / "p.yaml")]) == 2
    assert "spec.training.workers" in capsys.readouterr().err
