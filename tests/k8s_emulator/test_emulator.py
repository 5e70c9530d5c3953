"""The Kubernetes API emulator behaves like the real API server, seen through real clients.

Every test talks HTTP through the official `kubernetes` client (and one through kopf), so
what passes here is what the operator can rely on in its own tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError

from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401  (pytest fixtures)
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
)
from tests.support.jobs import job_document

GROUP, VERSION, PLURAL = "kuberec.io", "v1alpha1", "recommenderjobs"

# A small RecommenderJob-shaped CRD exercising every schema feature the emulator enforces.
TEST_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "kind": "RecommenderJob",
            "plural": PLURAL,
            "singular": "recommenderjob",
            "shortNames": ["rj"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["dataset", "training"],
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.dataset == oldSelf.dataset",
                                        "message": "dataset is immutable",
                                    },
                                ],
                                "properties": {
                                    "dataset": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                                    "platform": {
                                        "type": "string",
                                        "enum": ["kubernetes", "local"],
                                        "default": "kubernetes",
                                    },
                                    "training": {
                                        "type": "object",
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "!has(self.gpus) || self.gpus <= self.workers",  # noqa: E501
                                                "message": "gpus must not exceed workers",
                                            }
                                        ],
                                        "properties": {
                                            "workers": {
                                                "type": "integer",
                                                "minimum": 1,
                                                "maximum": 64,
                                            },
                                            "gpus": {"type": "integer", "minimum": 0},
                                        },
                                    },
                                    "metrics": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": {"type": "string"},
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "size(self) == 0 || self[0] != 'none'",
                                                "message": "the first metric cannot be 'none'",
                                            },
                                            {
                                                "rule": "self.all(m, m.startsWith('ndcg') || "
                                                "m.startsWith('recall'))",
                                                "message": "metrics must be ndcg@k or recall@k",
                                            },
                                        ],
                                    },
                                    "note": {"type": "string", "nullable": True},
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            },
                        },
                    }
                },
            }
        ],
    },
}


def job(name: str = "movies", **spec: Any) -> dict[str, Any]:
    return job_document(name, {"dataset": "ml-100k", "training": {"workers": 2}, **spec})


@pytest.fixture
def crd(k8s_emulator: KubeEmulator) -> dict[str, Any]:  # noqa: F811
    return k8s_emulator.load_crd(TEST_CRD)


@pytest.fixture
def core(k8s_client: Any) -> client.CoreV1Api:  # noqa: F811
    return client.CoreV1Api(k8s_client)


@pytest.fixture
def custom(k8s_client: Any, crd: dict[str, Any]) -> client.CustomObjectsApi:  # noqa: F811
    return client.CustomObjectsApi(k8s_client)


def create_job(api: client.CustomObjectsApi, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, body
    )
    return result


def get_job(api: client.CustomObjectsApi, name: str = "movies") -> dict[str, Any]:
    result: dict[str, Any] = api.get_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, name
    )
    return result


def api_error(call: Callable[[], Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)


# -- discovery and kubeconfig ------------------------------------------------------------


def test_kubeconfig_loads_with_load_kube_config(k8s_kubeconfig: Path) -> None:  # noqa: F811
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(k8s_kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        assert client.VersionApi(api).get_code().major == "1"


def test_discovery_lists_the_groups_kuberec_uses(k8s_client: Any) -> None:  # noqa: F811
    groups = {g.name for g in client.ApisApi(k8s_client).get_api_versions().groups}
    assert {
        "apps",
        "coordination.k8s.io",
        "gateway.networking.k8s.io",
        "apiextensions.k8s.io",
    } <= groups
    core_resources = client.CoreV1Api(k8s_client).get_api_resources().resources
    assert {"configmaps", "services", "events", "secrets", "serviceaccounts"} <= {
        r.name for r in core_resources
    }


def test_creating_a_crd_serves_its_kind(k8s_client: Any, crd: dict[str, Any]) -> None:  # noqa: F811
    resources = client.CustomObjectsApi(k8s_client).get_api_resources(GROUP, VERSION).resources
    assert {r.name for r in resources} == {PLURAL, f"{PLURAL}/status"}
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"


def test_custom_kind_is_not_served_before_its_crd(k8s_client: Any) -> None:  # noqa: F811
    api = client.CustomObjectsApi(k8s_client)
    code, _ = api_error(lambda: create_job(api, job()))
    assert code == 404


def test_deleting_a_crd_removes_its_objects_and_kind(
    k8s_client: Any,  # noqa: F811
    custom: client.CustomObjectsApi,
) -> None:
    create_job(custom, job())
    client.ApiextensionsV1Api(k8s_client).delete_custom_resource_definition(f"{PLURAL}.{GROUP}")
    code, _ = api_error(lambda: get_job(custom))
    assert code == 404


# -- CRUD ----------------------------------------------------------------------------------


def test_create_assigns_uid_timestamp_and_resource_version(core: client.CoreV1Api) -> None:
    made = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert made.metadata.uid and made.metadata.creation_timestamp
    assert int(made.metadata.resource_version) > 0


def test_every_write_increases_the_resource_version(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    second = core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)


def test_generate_name_makes_a_unique_name(core: client.CoreV1Api) -> None:
    body = {"metadata": {"generateName": "run-"}}
    names = {core.create_namespaced_config_map("default", body).metadata.name for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("run-") for n in names)


def test_creating_an_existing_name_is_409_already_exists(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    code, status = api_error(
        lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    )
    assert (code, status["reason"]) == (409, "AlreadyExists")


def test_getting_a_missing_object_is_404_not_found(core: client.CoreV1Api) -> None:
    code, status = api_error(lambda: core.read_namespaced_config_map("nope", "default"))
    assert (code, status["reason"], status["message"]) == (
        404,
        "NotFound",
        'configmaps "nope" not found',
    )


def test_creating_in_a_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    code, status = api_error(
        lambda: core.create_namespaced_config_map("ghost", {"metadata": {"name": "a"}})
    )
    assert (code, status["message"]) == (404, 'namespaces "ghost" not found')


def test_invalid_object_name_is_422(core: client.CoreV1Api) -> None:
    code, status = api_error(
        lambda: core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    )
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "metadata.name"


def test_replace_with_a_stale_resource_version_is_409_conflict(core: client.CoreV1Api) -> None:
    stale = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "new"}})
    stale.data = {"k": "lost update"}
    code, status = api_error(lambda: core.replace_namespaced_config_map("a", "default", stale))
    assert (code, status["reason"]) == (409, "Conflict")
    assert core.read_namespaced_config_map("a", "default").data == {"k": "new"}


def test_patch_carrying_a_stale_resource_version_is_409_conflict(
    custom: client.CustomObjectsApi,
) -> None:
    made = create_job(custom, job())
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "movies", {"metadata": {"labels": {"x": "1"}}}
    )
    stale = {
        "metadata": {"resourceVersion": made["metadata"]["resourceVersion"]},
        "spec": {"training": {"workers": 3}},
    }
    code, _ = api_error(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "movies", stale
        )
    )
    assert code == 409


def test_replacing_a_custom_resource_requires_a_resource_version(
    custom: client.CustomObjectsApi,
) -> None:
    create_job(custom, job())
    code, status = api_error(
        lambda: custom.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "movies", job()
        )
    )
    assert code == 422 and "metadata.resourceVersion" in status["message"]


def test_json_patch_applies_operations_in_order(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"x": "1"}})
    patched = core.patch_namespaced_config_map(
        "a",
        "default",
        [
            {"op": "add", "path": "/data/y", "value": "2"},
            {"op": "remove", "path": "/data/x"},
        ],
    )
    assert patched.data == {"y": "2"}


def test_merge_patch_null_removes_a_key(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a"}, "data": {"x": "1", "y": "2"}}
    )
    patched = core.patch_namespaced_config_map("a", "default", {"data": {"x": None}})
    assert patched.data == {"y": "2"}


def test_list_filters_by_label_selector(core: client.CoreV1Api) -> None:
    for name, labels in [
        ("a", {"app": "rec", "tier": "web"}),
        ("b", {"app": "rec"}),
        ("c", {"app": "other"}),
    ]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(selector: str) -> list[str]:
        items = core.list_namespaced_config_map("default", label_selector=selector).items
        return [i.metadata.name for i in items]

    assert names("app=rec") == ["a", "b"]
    assert names("app=rec,tier") == ["a"]
    assert names("app in (rec, other),!tier") == ["b", "c"]
    assert names("app!=rec") == ["c"]


def test_cluster_wide_list_spans_namespaces(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    k8s_emulator.create_namespace("team-a")
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.create_namespaced_config_map("team-a", {"metadata": {"name": "b"}})
    items = core.list_config_map_for_all_namespaces().items
    assert {(i.metadata.namespace, i.metadata.name) for i in items} == {
        ("default", "a"),
        ("team-a", "b"),
    }


# -- watch ---------------------------------------------------------------------------------


def collect_watch(
    list_call: Callable[..., Any], stop_after: int, **kwargs: Any
) -> tuple[list[tuple[str, str]], threading.Thread]:
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()

    def run() -> None:
        for event in stream.stream(list_call, "default", timeout_seconds=5, **kwargs):
            seen.append((event["type"], event["object"].metadata.name))
            if len(seen) >= stop_after:
                stream.stop()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return seen, thread


def test_watch_streams_added_modified_deleted(core: client.CoreV1Api) -> None:
    start = core.list_namespaced_config_map("default").metadata.resource_version
    seen, thread = collect_watch(core.list_namespaced_config_map, 3, resource_version=start)
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("a", "default")
    thread.join(timeout=10)
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]


def test_watch_from_a_resource_version_replays_only_later_events(
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    since = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    seen, thread = collect_watch(core.list_namespaced_config_map, 1, resource_version=since)
    thread.join(timeout=10)
    assert seen == [("ADDED", "after")]


def test_watch_without_resource_version_starts_with_current_objects(
    core: client.CoreV1Api,
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "present"}})
    seen, thread = collect_watch(core.list_namespaced_config_map, 1)
    thread.join(timeout=10)
    assert seen == [("ADDED", "present")]


def test_watch_from_a_compacted_resource_version_is_410_gone(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    old = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    k8s_emulator.compact()
    stream = watch.Watch()
    with pytest.raises(ApiException) as caught:
        for _ in stream.stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=old.metadata.resource_version,
            timeout_seconds=2,
        ):
            pass
    assert caught.value.status == 410


# -- generation and the status subresource -------------------------------------------------


def test_spec_change_bumps_generation(custom: client.CustomObjectsApi) -> None:
    assert create_job(custom, job())["metadata"]["generation"] == 1
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "movies", {"spec": {"training": {"workers": 4}}}
    )
    assert patched["metadata"]["generation"] == 2


def test_status_write_does_not_bump_generation(custom: client.CustomObjectsApi) -> None:
    create_job(custom, job())
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "movies", {"status": {"phase": "Training"}}
    )
    assert patched["status"] == {"phase": "Training"}
    assert patched["metadata"]["generation"] == 1


def test_metadata_change_does_not_bump_generation(custom: client.CustomObjectsApi) -> None:
    create_job(custom, job())
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "movies", {"metadata": {"labels": {"a": "b"}}}
    )
    assert patched["metadata"]["generation"] == 1


def test_main_resource_write_ignores_status(custom: client.CustomObjectsApi) -> None:
    create_job(custom, job())
    patched = custom.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "movies", {"status": {"phase": "Forged"}}
    )
    assert "status" not in patched


def test_status_write_ignores_spec(custom: client.CustomObjectsApi) -> None:
    create_job(custom, job())
    patched = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        "default",
        PLURAL,
        "movies",
        {"spec": {"training": {"workers": 9}}, "status": {"phase": "Ready"}},
    )
    assert patched["spec"]["training"]["workers"] == 2
    assert patched["status"]["phase"] == "Ready"


def test_deployment_status_is_a_subresource(k8s_client: Any) -> None:  # noqa: F811
    apps = client.AppsV1Api(k8s_client)
    deployment = {
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    apps.create_namespaced_deployment("default", deployment)
    apps.patch_namespaced_deployment_status("web", "default", {"status": {"readyReplicas": 1}})
    read = apps.read_namespaced_deployment("web", "default")
    assert (read.status.ready_replicas, read.metadata.generation) == (1, 1)


# -- finalizers, deletion and garbage collection -------------------------------------------


def test_delete_with_a_finalizer_only_marks_for_deletion(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a", "finalizers": ["kuberec.io/cleanup"]}}
    )
    core.delete_namespaced_config_map("a", "default")
    marked = core.read_namespaced_config_map("a", "default")
    assert marked.metadata.deletion_timestamp is not None


def test_removing_the_last_finalizer_deletes_the_object(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "a", "finalizers": ["kuberec.io/cleanup"]}}
    )
    core.delete_namespaced_config_map("a", "default")
    core.patch_namespaced_config_map("a", "default", {"metadata": {"finalizers": None}})
    code, _ = api_error(lambda: core.read_namespaced_config_map("a", "default"))
    assert code == 404


def test_deleting_an_owner_deletes_its_dependents(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    owner = create_job(custom, job())
    reference = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RecommenderJob",
        "name": "movies",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "owned", "ownerReferences": [reference]}}
    )
    core.create_namespaced_config_map("default", {"metadata": {"name": "free"}})
    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "movies")
    names = [i.metadata.name for i in core.list_namespaced_config_map("default").items]
    assert names == ["free"]


def test_orphan_propagation_keeps_dependents(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    owner = create_job(custom, job())
    reference = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RecommenderJob",
        "name": "movies",
        "uid": owner["metadata"]["uid"],
    }
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "owned", "ownerReferences": [reference]}}
    )
    custom.delete_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "movies", propagation_policy="Orphan"
    )
    kept = core.read_namespaced_config_map("owned", "default")
    assert kept.metadata.owner_references is None


# -- schema validation -----------------------------------------------------------------------


def test_minimum_violation_is_422_naming_the_field(custom: client.CustomObjectsApi) -> None:
    code, status = api_error(lambda: create_job(custom, job(name="x", training={"workers": 0})))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'RecommenderJob.kuberec.io "x" is invalid: spec.training.workers: Invalid value: 0: '
        "spec.training.workers in body should be greater than or equal to 1"
    )


def test_maximum_violation_is_rejected(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(training={"workers": 65})))
    assert "should be less than or equal to 64" in status["message"]


def test_missing_required_field_is_rejected(custom: client.CustomObjectsApi) -> None:
    body = job()
    del body["spec"]["dataset"]
    _, status = api_error(lambda: create_job(custom, body))
    assert status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.dataset"}
    ]


def test_value_outside_enum_is_rejected(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(platform="mainframe")))
    assert (
        'spec.platform: Unsupported value: "mainframe": supported values: '
        '"kubernetes", "local"' in status["message"]
    )


def test_wrong_type_is_rejected(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(training={"workers": "two"})))
    assert 'spec.training.workers in body must be of type integer: "string"' in status["message"]


def test_pattern_mismatch_is_rejected(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(dataset="ML 100K")))
    assert "spec.dataset in body should match '^[a-z0-9-]+$'" in status["message"]


def test_too_few_items_is_rejected(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(metrics=[])))
    assert "spec.metrics in body should have at least 1 items" in status["message"]


def test_several_errors_are_reported_together(custom: client.CustomObjectsApi) -> None:
    _, status = api_error(lambda: create_job(custom, job(platform="x", training={"workers": 0})))
    assert len(status["details"]["causes"]) == 2
    assert status["message"].count(": [") == 1


def test_unknown_fields_are_pruned(custom: client.CustomObjectsApi) -> None:
    made = create_job(custom, job(typo=True, extra={"anything": {"goes": 1}}))
    assert "typo" not in made["spec"]
    assert made["spec"]["extra"] == {"anything": {"goes": 1}}


def test_unknown_fields_are_rejected_with_strict_field_validation(
    custom: client.CustomObjectsApi,
) -> None:
    code, status = api_error(
        lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, job(typo=True), field_validation="Strict"
        )
    )
    assert code == 400 and 'unknown field "spec.typo"' in status["message"]


def test_defaults_are_applied(custom: client.CustomObjectsApi) -> None:
    assert create_job(custom, job())["spec"]["platform"] == "kubernetes"


def test_nullable_field_keeps_null_and_other_nulls_are_dropped(
    custom: client.CustomObjectsApi,
) -> None:
    made = create_job(custom, job(note=None, training={"workers": 2, "gpus": None}))
    assert made["spec"]["note"] is None
    assert "gpus" not in made["spec"]["training"]


# -- CEL rules -------------------------------------------------------------------------------


def test_cel_rule_failure_is_422_with_its_message(custom: client.CustomObjectsApi) -> None:
    code, status = api_error(
        lambda: create_job(custom, job(name="x", training={"workers": 1, "gpus": 2}))
    )
    assert code == 422
    assert status["message"] == (
        'RecommenderJob.kuberec.io "x" is invalid: spec.training: Invalid value: "object": '
        "gpus must not exceed workers"
    )


def test_cel_rule_with_has_passes_when_field_absent(custom: client.CustomObjectsApi) -> None:
    assert create_job(custom, job(training={"workers": 1}))["spec"]["training"] == {"workers": 1}


def test_cel_rules_index_lists_and_quantify_over_them(custom: client.CustomObjectsApi) -> None:
    _, first = api_error(lambda: create_job(custom, job(metrics=["none"])))
    _, every = api_error(lambda: create_job(custom, job(metrics=["ndcg@10", "mrr"])))
    assert "the first metric cannot be 'none'" in first["message"]
    assert "metrics must be ndcg@k or recall@k" in every["message"]
    assert create_job(custom, job(metrics=["ndcg@10", "recall@20"]))["spec"]["metrics"]


def test_cel_transition_rule_compares_with_old_self(custom: client.CustomObjectsApi) -> None:
    create_job(custom, job())
    code, status = api_error(
        lambda: custom.patch_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "movies", {"spec": {"dataset": "ml-1m"}}
        )
    )
    assert code == 422 and "dataset is immutable" in status["message"]


# -- fault injection -------------------------------------------------------------------------


def test_injected_conflicts_fail_the_next_matching_requests_only(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    k8s_emulator.fail_next(2, status=409, verb="patch", resource="configmaps")
    codes = [
        api_error(lambda: core.patch_namespaced_config_map("a", "default", {}))[0] for _ in range(2)
    ]
    assert codes == [409, 409]
    assert core.read_namespaced_config_map("a", "default").metadata.name == "a"
    assert core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}}).data


def test_injected_server_error_is_500(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    k8s_emulator.fail_next(1, status=500)
    code, status = api_error(lambda: core.list_namespaced_config_map("default"))
    assert (code, status["reason"]) == (500, "InternalError")


def test_unreachable_server_refuses_then_returns_with_its_state(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "kept"}})
    with k8s_emulator.unreachable(), pytest.raises(MaxRetryError):
        core.list_namespaced_config_map("default", _request_timeout=2)
    names = [i.metadata.name for i in core.list_namespaced_config_map("default").items]
    assert names == ["kept"]


def test_requests_are_recorded_for_assertions(
    core: client.CoreV1Api,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    assert [r.path for r in k8s_emulator.requests_for("create", "configmaps")] == [
        "/api/v1/namespaces/default/configmaps"
    ]


# -- kopf --------------------------------------------------------------------------------------

OPERATOR = """
import kopf

@kopf.on.create("kuberec.io", "v1alpha1", "recommenderjobs")
def created(spec, patch, **_):
    patch.status["phase"] = "Accepted"
"""


@pytest.fixture
def kopf_operator(
    k8s_kubeconfig: Path,  # noqa: F811
    tmp_path: Path,
    crd: dict[str, Any],
) -> Iterator[subprocess.Popen[str]]:
    script = tmp_path / "operator.py"
    script.write_text(OPERATOR)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kopf",
            "run",
            "--standalone",
            "--namespace",
            "default",
            str(script),
        ],
        env={**os.environ, "KUBECONFIG": str(k8s_kubeconfig)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.slow
def test_kopf_operator_reconciles_a_custom_resource(
    k8s_emulator: KubeEmulator,  # noqa: F811
    kopf_operator: subprocess.Popen[str],
) -> None:
    k8s_emulator.apply(job() | {"metadata": {"name": "movies", "namespace": "default"}})
    deadline = time.monotonic() + 60
    phase = None
    while time.monotonic() < deadline and phase is None and kopf_operator.poll() is None:
        stored = k8s_emulator.get(f"{GROUP}/{VERSION}", "RecommenderJob", "movies") or {}
        phase = stored.get("status", {}).get("phase")
        time.sleep(0.2)
    assert phase == "Accepted"
