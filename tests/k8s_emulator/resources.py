"""The resource types the emulator serves, and the discovery documents built from them.

Built-in kinds are a fixed table; custom kinds appear when a CRD is created, exactly as
on a real cluster, so a test that forgets to load its CRD fails the way production would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    has_generation: bool = False
    schema: dict[str, Any] | None = None
    preserve_unknown: bool = True
    custom: bool = False
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Group and plural identify the stored objects across versions."""
        return (self.group, self.plural)

    def discovery_entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = [
            {
                "name": self.plural,
                "singularName": self.singular or self.kind.lower(),
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": VERBS,
                **({"shortNames": list(self.short_names)} if self.short_names else {}),
                **({"categories": list(self.categories)} if self.categories else {}),
            }
        ]
        if self.status_subresource:
            entries.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        return entries


def _core(plural: str, kind: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", plural, kind, namespaced, **kw)


BUILTIN: tuple[ResourceType, ...] = (
    _core(
        "namespaces", "Namespace", namespaced=False, short_names=("ns",), status_subresource=True
    ),
    _core("configmaps", "ConfigMap", short_names=("cm",)),
    _core("secrets", "Secret"),
    _core("services", "Service", short_names=("svc",), status_subresource=True),
    _core("serviceaccounts", "ServiceAccount", short_names=("sa",)),
    _core("events", "Event", short_names=("ev",)),
    _core("pods", "Pod", short_names=("po",), status_subresource=True),
    _core("endpoints", "Endpoints", short_names=("ep",)),
    _core(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        short_names=("pvc",),
        status_subresource=True,
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        short_names=("deploy",),
        status_subresource=True,
        has_generation=True,
    ),
    ResourceType("batch", "v1", "jobs", "Job", True, status_subresource=True, has_generation=True),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",)),
    ResourceType(
        "gateway.networking.k8s.io",
        "v1",
        "httproutes",
        "HTTPRoute",
        True,
        status_subresource=True,
        has_generation=True,
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        status_subresource=True,
        has_generation=True,
    ),
)


@dataclass
class Registry:
    """Served resource types by (group, version, plural), plus group ordering."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    @classmethod
    def with_builtins(cls) -> Registry:
        registry = cls()
        for rt in BUILTIN:
            registry.add(rt)
        return registry

    def add(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def remove_group_plural(self, group: str, plural: str) -> None:
        for key in [k for k in self.types if k[0] == group and k[2] == plural]:
            del self.types[key]

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def versions_of(self, group: str) -> list[str]:
        return sorted({v for g, v, _ in self.types if g == group})

    def groups(self) -> list[str]:
        return sorted({g for g, _, _ in self.types if g})

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for (g, v, _), rt in self.types.items() if g == group and v == version]

    # Discovery documents -------------------------------------------------------------

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = []
        for group in self.groups():
            versions = [
                {"groupVersion": f"{group}/{v}", "version": v} for v in self.versions_of(group)
            ]
            groups.append({"name": group, "versions": versions, "preferredVersion": versions[-1]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in self.versions_of(group)]
        if not versions:
            return None
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": versions,
            "preferredVersion": versions[-1],
        }

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        rts = self.in_group_version(group, version)
        if not rts:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [e for rt in rts for e in rt.discovery_entries()],
        }


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD as resource types (schema kept for validation)."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    result = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        subresources = version.get("subresources") or spec.get("subresources") or {}
        result.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular", names["kind"].lower()),
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status_subresource="status" in subresources,
                has_generation=True,
                schema=schema,
                preserve_unknown=bool(
                    schema is None or schema.get("x-kubernetes-preserve-unknown-fields")
                ),
                custom=True,
            )
        )
    return result
