"""The CRD: generated from the typed spec, committed under helm/, a valid Kubernetes object."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from kuberec.operator.crd import crd_manifest, crd_yaml, openapi_schema
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.fixtures import k8s_emulator, load_chart_crds  # noqa: F401
from tests.support.paths import ROOT

CHART_CRD = ROOT / "helm" / "kuberec" / "crds" / "recommenderjob.yaml"


def _find(schema: dict, path: str) -> dict:
    for part in path.split("."):
        schema = schema["properties"][part]
    return schema


def test_the_chart_crd_equals_the_generated_one() -> None:
    assert CHART_CRD.read_text() == crd_yaml(), "regenerate with: kuberec crd -o " + str(CHART_CRD)


def test_the_crd_validates_against_the_kubernetes_schema() -> None:
    kubernetes_validate.validate(crd_manifest(), "1.33.0", strict=True)


def test_the_schema_is_structural() -> None:
    text = yaml.safe_dump(openapi_schema())
    assert "$ref" not in text and "anyOf" not in text and "title:" not in text


def test_the_status_subresource_and_short_name_are_declared() -> None:
    version = crd_manifest()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert crd_manifest()["spec"]["names"]["shortNames"] == ["rj"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Phase", "Champion", "Challenger", "Traffic", "NDCG@10", "Age"]


def test_minimums_carry_over_from_the_spec() -> None:
    assert _find(openapi_schema(), "spec.training.workers")["minimum"] == 1
    assert _find(openapi_schema(), "spec.training.gpusPerWorker")["minimum"] == 0


def test_cel_rules_cover_what_the_schema_cannot_say() -> None:
    schema = openapi_schema()
    data = _find(schema, "spec.data")["x-kubernetes-validations"]
    assert any("set exactly one of" in rule["message"] for rule in data)
    canary = _find(schema, "spec.serving.canary")["x-kubernetes-validations"]
    assert any("strictly increasing" in rule["message"] for rule in canary)
    steps = _find(schema, "spec.serving.canary.steps")["items"]
    assert (steps["minimum"], steps["maximum"]) == (1, 100)


def test_free_form_hyperparameters_are_preserved() -> None:
    params = _find(openapi_schema(), "spec.model.hyperparameters")
    assert params["x-kubernetes-preserve-unknown-fields"] is True


def test_the_model_type_enum_is_the_registrys() -> None:
    from kuberec.components.models.registry import MODEL_TYPES

    model_type = _find(openapi_schema(), "spec.model.type")
    assert model_type["enum"] == ["auto", *sorted(MODEL_TYPES)]
    assert model_type["default"] == "auto"


def _apply_job(emulator: Any, **spec: Any) -> dict:
    from tests.support.operator_harness import job_manifest

    return emulator.apply(job_manifest("gated", **spec))


def test_the_api_server_refuses_an_unknown_model_type(k8s_emulator: Any) -> None:  # noqa: F811
    load_chart_crds(k8s_emulator)
    with pytest.raises(ApiError, match=r"spec.model.type: Unsupported value: \"deepfm\""):
        _apply_job(k8s_emulator, model={"type": "deepfm"})
    assert _apply_job(k8s_emulator, model={"type": "ease"})["spec"]["model"]["type"] == "ease"


@pytest.mark.parametrize(
    ("gates", "accepted"),
    [
        ({"minImprovement": -0.05}, False),
        ({"minImprovement": -0.05, "allowRegression": True}, True),
        ({"minImprovement": 0}, True),
        ({}, True),
    ],
    ids=["negative", "negative-allowed", "integer-zero", "default"],
)
def test_the_api_server_refuses_a_negative_min_improvement_unless_allowed(
    k8s_emulator: Any,  # noqa: F811
    gates: dict[str, Any],
    accepted: bool,
) -> None:
    load_chart_crds(k8s_emulator)
    evaluation = {"gates": gates}
    if accepted:
        assert _apply_job(k8s_emulator, evaluation=evaluation)
    else:
        with pytest.raises(ApiError, match="set allowRegression: true to allow it"):
            _apply_job(k8s_emulator, evaluation=evaluation)


def test_an_evaluation_without_gates_is_accepted_by_the_api_server(
    k8s_emulator: Any,  # noqa: F811
) -> None:
    """The gate-metric rule holds when gates (which has no schema default) is absent."""
    load_chart_crds(k8s_emulator)
    assert _apply_job(k8s_emulator, evaluation={"protocol": "stratified"})
