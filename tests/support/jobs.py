"""RecommenderJob documents as product teams write them, built in one place for every test.

A test states only the name, the spec and any metadata it is about; the header
(``apiVersion``, ``kind``) comes from here. ``job_document`` is the dict that
``kubectl apply`` and ``RecommenderJob.model_validate`` take, ``recommender_job``
the validated object, ``write_job`` a document saved as a job file, and
``job_yaml`` the file's text for tests that pin how hand-written YAML reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from kuberec.api.spec import RecommenderJob

API_VERSION = "kuberec.io/v1alpha1"
KIND = "RecommenderJob"
JOBS = (API_VERSION, KIND)


def job_document(name: str, spec: Mapping[str, Any], **metadata: Any) -> dict[str, Any]:
    """A job as a dict: ``metadata`` adds fields beside the name (namespace, uid, generation)."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, **metadata},
        "spec": dict(spec),
    }


def recommender_job(name: str, spec: Mapping[str, Any], **metadata: Any) -> RecommenderJob:
    return RecommenderJob.model_validate(job_document(name, spec, **metadata))


def write_job(path: Path, document: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(document)))
    return path


def job_yaml(name: str, spec: str = "") -> str:
    """A job file's text: the header, then ``spec`` exactly as written (``spec:`` and below)."""
    return f"apiVersion: {API_VERSION}\nkind: {KIND}\nmetadata: {{name: {name}}}\n{spec}"
