"""The job's Feast repo in a serving process: the given folder, or rendered from the environment.

Locally ``kuberec run`` points ``KUBEREC_FEAST_REPO`` at the repo the pipeline
rendered (``<workdir>/data/feature_repo``). A serving pod on Kubernetes has no
such folder, so the operator gives it what the pipeline renders its repo from
(:func:`kuberec.components.features.store.render_repo`): the profile, the
project (the job's name) and the shared stores (``KUBEREC_FEAST_REDIS``,
``KUBEREC_FEAST_REGISTRY``), and the pod renders the same
``feature_store.yaml`` into ``KUBEREC_FEAST_REPO`` on its first use. Only the
``production`` profile can be shared this way: the default one keeps its
registry and online store in SQLite files inside the pipeline's pod.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from kuberec.errors import ConfigError

FEAST_REPO_ENV = "KUBEREC_FEAST_REPO"
PROJECT_ENV = "KUBEREC_FEAST_PROJECT"  # set: render the repo (a cluster pod), else read it
PROFILE_ENV = "KUBEREC_FEAST_PROFILE"
REPO_FOLDER = "feature_repo"


@cache
def feast_repo() -> Path | None:
    """The repo folder to open, rendered first when the environment asks; None: no Feast."""
    found = os.environ.get(FEAST_REPO_ENV, "").strip()
    if not found:
        return None
    repo = Path(found)
    project = os.environ.get(PROJECT_ENV, "").strip()
    if project and not (repo / "feature_store.yaml").exists():
        if repo.name != REPO_FOLDER:
            raise ConfigError(
                f"{FEAST_REPO_ENV} must end in /{REPO_FOLDER} to be rendered "
                f"from {PROJECT_ENV}; got {found}"
            )
        from kuberec.components.features.store import StoreSettings, render_repo

        profile = os.environ.get(PROFILE_ENV, "production").strip()
        render_repo(StoreSettings(repo.parent, profile=profile, project=project))
    return repo
