"""A run's model as a BentoML model: the unit that is exported, imported and served.

The BentoML model's directory holds the run's ``model/`` folder unchanged (the
``kuberec-model/1`` format that ``models.load_model`` reads) plus the run's
``config.json`` and ``metrics.json``; its metadata carries the lineage the
serving side and the operator report: metrics, dataset digest, feature
service, pipeline run id and code version. Export and import go through
BentoML, which reaches ``s3://``/``gs://`` through fsspec.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kuberec import __version__
from kuberec.components.datasets.canonical import Dataset
from kuberec.components.train.run_dir import CONFIG, ITEMS, METRICS, MODEL
from kuberec.errors import ConfigError

#: Where the ``kuberec-model/1`` folder lives inside a BentoML model's directory.
MODEL_SUBDIR = "model"
LABEL = "kuberec.io/model"


@dataclass(frozen=True)
class PackagedModel:
    tag: str
    path: Path
    metadata: dict[str, Any]


def dataset_digest(dataset: Dataset) -> str:
    """A content digest of the interactions and items: equal data, equal digest."""
    digest = hashlib.sha256()
    for frame in (dataset.interactions, dataset.items):
        stable = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
        hashed = pd.util.hash_pandas_object(stable.astype(str), index=False).to_numpy()
        digest.update(hashed.tobytes())
    return "sha256:" + digest.hexdigest()


def package_run(run_dir: Path, name: str, metadata: dict[str, Any]) -> PackagedModel:
    """Save ``run_dir``'s model in the BentoML model store under ``name`` (a new version)."""
    import bentoml

    run_dir = Path(run_dir)
    if not (run_dir / MODEL / "config.json").exists():
        raise ConfigError(f"{run_dir} holds no trained model ({run_dir / MODEL} is missing)")
    meta = {"kuberec_version": __version__, **metadata}
    with bentoml.models.create(
        _bento_name(name), labels={LABEL: "true"}, metadata=_plain(meta), module="kuberec"
    ) as model:
        target = Path(model.path)
        shutil.copytree(run_dir / MODEL, target / MODEL_SUBDIR)
        for extra in (CONFIG, METRICS, ITEMS):
            if (run_dir / extra).exists():
                shutil.copy2(run_dir / extra, target / extra)
    stored = bentoml.models.get(model.tag)
    return PackagedModel(str(stored.tag), Path(stored.path), meta)


def export_model(tag: str, uri: str) -> str:
    """Write the model to ``uri`` (a path, ``file://``, ``s3://``, ``gs://``); returns the URI."""
    import bentoml

    if uri.startswith("file://"):
        Path(uri.removeprefix("file://")).parent.mkdir(parents=True, exist_ok=True)
    elif "://" not in uri:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    return str(bentoml.models.export_model(tag, uri))


def import_model(uri: str) -> PackagedModel:
    """Bring an exported model into the local store (a no-op when its tag is already there)."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    local = Path(uri.removeprefix("file://"))
    try:
        model = bentoml.models.import_model(uri)
    except FileNotFoundError as exc:
        if local.is_file():  # a file is missing inside the archive
            raise _unreadable(uri, exc) from None
        raise ConfigError(f"no exported model at {uri}") from exc
    except BentoMLException as exc:
        if "already exists" not in str(exc):
            raise ConfigError(f"cannot import the model at {uri}: {exc}") from exc
        model = bentoml.models.get(_tag_in_message(str(exc)))
    except (EOFError, OSError, ValueError, KeyError, TypeError, tarfile.TarError,
            lzma.LZMAError, zlib.error, yaml.YAMLError) as exc:  # fmt: skip
        raise _unreadable(uri, exc) from None
    return PackagedModel(str(model.tag), Path(model.path), dict(model.info.metadata))


def _unreadable(uri: str, exc: BaseException) -> ConfigError:
    """A random, truncated or foreign file where an exported model was expected."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
    return ConfigError(
        f"{uri} is not a readable exported model ({reason}); export it again "
        "(`bentoml models export`) or point at the run directory"
    )


def resolve_model(reference: str | Path) -> PackagedModel:
    """A run directory, a BentoML tag (``name[:version]``) or an artifact URI -> a model."""
    import bentoml
    from bentoml.exceptions import NotFound

    text = str(reference)
    path = Path(text.removeprefix("file://"))
    if path.is_dir() and (path / MODEL / "config.json").exists():
        return PackagedModel(text, path, {"run_dir": str(path.resolve())})
    if path.is_file():
        return import_model(str(path.resolve()))  # BentoML reads a relative path elsewhere
    if "://" in text:
        return import_model(text)
    try:
        model = bentoml.models.get(text)
    except (NotFound, ValueError) as exc:  # ValueError: not even shaped like a tag
        raise ConfigError(
            f"{text} is neither a run directory, an exported model file, nor a model in the "
            f"BentoML store ({_store_path()}); `bentoml models list` shows the stored ones"
        ) from exc
    return PackagedModel(str(model.tag), Path(model.path), dict(model.info.metadata))


def model_dir(packaged: PackagedModel) -> Path:
    """The ``kuberec-model/1`` folder that ``models.load_model`` reads."""
    root = packaged.path
    return root / MODEL if (root / MODEL / "config.json").exists() else root / MODEL_SUBDIR


def _bento_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name.lower()).strip("-.")
    if not cleaned:
        raise ConfigError(f"cannot name a BentoML model after {name!r}")
    return cleaned


def _plain(value: Any) -> Any:
    """BentoML metadata must be JSON-like scalars, lists and dicts."""
    if isinstance(value, dict):  # BentoML refuses None values: absent means unknown
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return str(value)


def _store_path() -> str:
    return str(Path(os.environ.get("BENTOML_HOME", "~/bentoml")).expanduser() / "models")


def _tag_in_message(message: str) -> str:
    for word in message.replace("'", " ").replace('"', " ").split():
        if ":" in word and not word.endswith(":"):
            return word.strip(".,")
    raise ConfigError(f"cannot read the model tag from BentoML's message: {message}")
