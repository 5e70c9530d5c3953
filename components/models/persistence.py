"""Save a trained model as a self-describing directory, and load it back.

Layout of ``path`` (written to a temporary sibling and renamed into place, so a
failed save never leaves half a model)::

    config.json         format, model type, effective hparams, schema, feature encodings
    weights.pt          state_dict (parameters and data-table buffers)
    user_index.json     IdIndex of users  (dense index <-> caller's id)
    item_index.json     IdIndex of items
    history.npz         each training user's items in time order (seen items, sequences)
    item_features.npz   genre multi-hot, year bucket and first-seen time (ns, -1: never;
                        absent without timestamps) per item, for filters and ranking

Everything but the weights is JSON or plain numpy, so other tools can read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuberec.components.datasets.atomic import atomic_path
from kuberec.components.datasets.canonical import IdIndex
from kuberec.components.models.base import Recommender
from kuberec.components.models.encoded import DataSchema, EncodedData, UserHistory
from kuberec.components.models.features import FeatureEncodings
from kuberec.components.models.registry import HParams, create_model, resolve_hparams
from kuberec.errors import ConfigError, DataError

FORMAT = "kuberec-model/1"


@dataclass(frozen=True)
class LoadedModel:
    """A model with what serving needs around it: id mappings, histories, item features."""

    model: Recommender
    model_type: str
    hparams: HParams
    schema: DataSchema
    encodings: FeatureEncodings
    user_index: IdIndex
    item_index: IdIndex
    history: UserHistory
    item_genres: np.ndarray
    item_year: np.ndarray
    item_first_seen: np.ndarray | None = None  # older models and untimed data have none


def save_model(
    model: Recommender,
    model_type: str,
    hparams: dict[str, Any],
    data: EncodedData,
    path: Path,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` trained on ``data`` to the directory ``path``."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise ConfigError(
            f"{path} already exists and is not empty; pass overwrite=True or "
            "choose another directory"
        )
    config = {
        "format": FORMAT,
        "model_type": model_type,
        "hparams": resolve_hparams(model_type, hparams),
        "schema": data.schema.to_dict(),
        "encodings": data.encodings.to_dict(),
        "torch_version": torch.__version__,
    }
    with atomic_path(path) as staged:
        staged.mkdir()
        (staged / "config.json").write_text(json.dumps(config, indent=2))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        torch.save(state, staged / "weights.pt")
        data.user_index.save(staged / "user_index.json")
        data.item_index.save(staged / "item_index.json")
        data.history.save(staged / "history.npz")
        first_seen = data.item_first_seen()
        extra = {} if first_seen is None else {"first_seen": first_seen}
        np.savez(
            staged / "item_features.npz",
            genres=data.item_genres.astype(np.uint8),
            year=data.item_year,
            **extra,
        )
    return path


def load_model(path: Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild a model saved by :func:`save_model`, ready to score (eval mode)."""
    path = Path(path)
    config = _read_config(path)
    schema = DataSchema.from_dict(config["schema"])
    model = create_model(config["model_type"], schema, config["hparams"])
    state = torch.load(path / "weights.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    with np.load(path / "item_features.npz") as features:
        genres, year = features["genres"].astype(np.float32), features["year"]
        first_seen = features.get("first_seen")
    return LoadedModel(
        model=model.to(device).eval(),
        model_type=config["model_type"],
        hparams=config["hparams"],
        schema=schema,
        encodings=FeatureEncodings.from_dict(config["encodings"]),
        user_index=IdIndex.load(path / "user_index.json"),
        item_index=IdIndex.load(path / "item_index.json"),
        history=UserHistory.load(path / "history.npz"),
        item_genres=genres,
        item_year=year,
        item_first_seen=first_seen,
    )


def _read_config(path: Path) -> dict[str, Any]:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise DataError(f"{path}: no config.json; this is not a model saved by save_model")
    config = json.loads(config_path.read_text())
    if config.get("format") != FORMAT:
        raise DataError(
            f"{path}: model format {config.get('format')!r} is not {FORMAT!r}; "
            "retrain it with this version of kuberec"
        )
    return config
