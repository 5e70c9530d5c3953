"""One reconcile pass of the kopf handlers, in-process: backoff, write-ahead, resting jobs.

The same Operator object ``kuberec operator run`` builds, over HTTP to the API
emulator and the KFP stand-in; only kopf's event poster is replaced by a list
(it needs kopf's running event loop).
"""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from kubernetes import client

from kuberec.operator.kubernetes.kopf_handlers import Operator
from kuberec.operator.kubernetes.platform import KubernetesPlatform
from kuberec.operator.kubernetes.settings import ClusterSettings
from kuberec.operator.kubernetes.status_writer import StatusWriter
from tests.k8s_emulator import KubeEmulator
from tests.k8s_emulator.fixtures import (  # noqa: F401
    k8s_client,
    k8s_emulator,
    k8s_kubeconfig,
    load_chart_crds,
)
from tests.support.kfp_standin import KfpStandIn
from tests.support.operator_harness import JOBS, install_kuberay, job_manifest, runs_of


@pytest.fixture
def events() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def operator(k8s_client: client.ApiClient, kfp: KfpStandIn, tmp_path: Any,  # noqa: F811
             events: list[dict[str, Any]]) -> Operator:  # fmt: skip
    settings = ClusterSettings(kfp_endpoint=kfp.url, artifact_store=tmp_path.as_uri())
    return Operator(
        platform=KubernetesPlatform(settings, k8s_client),
        writer=StatusWriter(k8s_client, first_delay_s=0.01),
        post_event=lambda body, **event: events.append(event), resync_s=3600,
    )  # fmt: skip


@pytest.fixture
def body(k8s_emulator: KubeEmulator) -> kopf.Body:  # noqa: F811
    load_chart_crds(k8s_emulator)
    install_kuberay(k8s_emulator)
    return kopf.Body(k8s_emulator.apply(job_manifest("movies")))


def stored_status(emulator: KubeEmulator) -> dict[str, Any]:
    return dict((emulator.get(*JOBS, "movies") or {}).get("status") or {})


def test_the_run_key_is_in_status_before_the_run_is_submitted(
    operator: Operator,
    body: kopf.Body,
    k8s_emulator: KubeEmulator,  # noqa: F811
    kfp: KfpStandIn,
) -> None:
    kfp.unavailable = True  # the submission fails after the write-ahead
    operator.reconcile(body, "create")
    status = stored_status(k8s_emulator)
    assert status["phase"] == "Training"
    assert status["pipelineRun"]["state"] == "Pending", "never submitted: not Running"
    assert status["pipelineRun"]["message"].startswith("not submitted (KfpUnavailable: ")
    kfp.unavailable = False
    operator.backoff.succeeded(str(body.metadata.uid))
    operator.reconcile(body, "timer")  # relaunch by the recorded key: one run
    (run,) = runs_of(kfp, "movies")
    assert run["display_name"] == f"movies-{status['pipelineRun']['key']}"


def test_a_transient_failure_backs_off_the_timer_and_says_why(
    operator: Operator, body: kopf.Body, k8s_emulator: KubeEmulator, kfp: KfpStandIn,  # noqa: F811
    events: list[dict[str, Any]],
) -> None:  # fmt: skip
    kfp.unavailable = True
    operator.reconcile(body, "create")
    calls = len(kfp.requests)
    operator.reconcile(body, "timer")  # within the backoff: no attempt
    assert len(kfp.requests) == calls
    (available,) = [c for c in stored_status(k8s_emulator)["conditions"]
                    if c["type"] == "PlatformAvailable"]  # fmt: skip
    assert (available["status"], available["reason"]) == ("False", "KfpUnavailable")
    assert [e["reason"] for e in events if e["type"] == "Warning"] == ["KfpUnavailable"]
    assert operator.backoff.failures(str(body.metadata.uid)) == 1


def test_every_phase_transition_is_an_event(
    operator: Operator, body: kopf.Body, events: list[dict[str, Any]]
) -> None:
    operator.reconcile(body, "create")
    assert events == [{"type": "Normal", "reason": "RunLaunched",
                       "message": "Pending -> Training: initial training"}]  # fmt: skip


def test_a_settled_job_rests_between_resyncs(
    operator: Operator,
    body: kopf.Body,
    k8s_emulator: KubeEmulator,  # noqa: F811
) -> None:
    body = kopf.Body(k8s_emulator.apply(job_manifest("movies", suspend=True)))
    settled = operator.reconcile(body, "timer")  # the first pass always runs
    assert settled is not None and settled.phase == "Suspended"
    assert operator.reconcile(body, "timer") is None  # then it rests for resync_s
    assert operator.reconcile(body, "update") is not None  # a change never waits


def test_an_invalid_hyperparameter_fails_the_job_before_any_run(
    operator: Operator, k8s_emulator: KubeEmulator, kfp: KfpStandIn,  # noqa: F811
    events: list[dict[str, Any]],
) -> None:  # fmt: skip
    """The CRD cannot check the free-form map; the typed model does, before KFP sees it."""
    load_chart_crds(k8s_emulator)
    manifest = job_manifest("movies", model={"type": "ease", "hyperparameters": {"lam": -300}})
    operator.reconcile(kopf.Body(k8s_emulator.apply(manifest)), "create")
    status = stored_status(k8s_emulator)
    assert (status["phase"], status["history"][-1]["reason"]) == ("Failed", "InvalidSpec")
    assert "spec.model: ease hyperparameter 'lam'" in status["history"][-1]["message"]
    assert runs_of(kfp, "movies") == []
