"""Packaging: a trained run directory as a BentoML model, exported to an artifact URI."""

from kuberec.components.package.bento import (
    MODEL_SUBDIR,
    PackagedModel,
    dataset_digest,
    export_model,
    import_model,
    model_dir,
    package_run,
    resolve_model,
)

__all__ = [
    "MODEL_SUBDIR",
    "PackagedModel",
    "dataset_digest",
    "export_model",
    "import_model",
    "model_dir",
    "package_run",
    "resolve_model",
]
