"""A kubeconfig file pointing at the emulator, for `load_kube_config` and KUBECONFIG users."""

from __future__ import annotations

from pathlib import Path

import yaml

TOKEN = "kuberec-emulator-token"


def kubeconfig(server: str, namespace: str = "default") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [{"name": "emulator", "user": {"token": TOKEN}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(server, namespace), sort_keys=False))
    return path
