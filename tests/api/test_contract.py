"""The contract (kuberec/api/) stands alone, and the names it lists are the registries' names.

The contract cannot import the registries (they live above it, beside the models, datasets and
protocols), so what it lists by name is checked against them here; the release and protocol
registries also check themselves against the contract's names when imported.
"""

from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pandas as pd
import pytest

from kuberec.api import model_types
from kuberec.api.names import AUTO_CANDIDATES, AUTO_MODEL, METRICS, check_registry
from kuberec.api.spec import DataSpec, EvaluationSpec, ModelSpec


def test_loading_the_contract_imports_no_model_code() -> None:
    code = (
        "import sys, kuberec.api.spec; "
        "print(sorted(m for m in ('torch', 'ray', 'kuberec.components.models') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"


def test_the_model_type_enum_is_auto_and_the_registry() -> None:
    from kuberec.components.models.registry import MODEL_TYPES

    assert model_types.catalogue().names() == [AUTO_MODEL, *sorted(MODEL_TYPES)]
    assert ModelSpec.model_json_schema()["properties"]["type"]["enum"][1:] == sorted(MODEL_TYPES)


def test_auto_candidates_are_registered_model_types() -> None:
    from kuberec.components.models.registry import MODEL_TYPES

    assert set(AUTO_CANDIDATES) <= set(MODEL_TYPES)


def test_every_metric_a_job_names_is_computed_by_the_evaluation() -> None:
    from kuberec.components.evaluation.metrics import per_user_metrics

    recommended = pd.DataFrame({"user_id": [1, 1], "item_id": [10, 11], "score": [2.0, 1.0]})
    truth = pd.DataFrame({"user_id": [1], "item_id": [11]})
    computed = set(per_user_metrics(recommended, truth, 2).columns) - {"user_id", "n_relevant"}
    assert computed == set(METRICS)
    assert get_args(EvaluationSpec.model_fields["metric"].annotation) == METRICS


def test_every_movielens_release_a_job_names_is_downloadable() -> None:
    from kuberec.components.datasets.movielens import RELEASES

    releases = get_args(get_args(DataSpec.model_fields["movielens"].annotation)[0])
    assert set(releases) <= set(RELEASES)


def test_every_protocol_a_job_names_is_a_registered_protocol() -> None:
    from kuberec.components.evaluation.protocols import PROTOCOLS

    assert set(get_args(EvaluationSpec.model_fields["protocol"].annotation)) <= set(PROTOCOLS)


def test_a_registry_entry_the_contract_does_not_name_fails_naming_it() -> None:
    with pytest.raises(LookupError, match=r"entries \['ml-7'\] have no name"):
        check_registry({"ml-100k": 1, "ml-7": 2}, ("ml-100k",), "releases")


def test_a_name_the_registry_has_no_entry_for_fails_naming_it() -> None:
    with pytest.raises(LookupError, match=r"names \['temporal'\] no entry"):
        check_registry({"stratified": 1}, ("stratified", "temporal"), "protocols")
