"""The recommender as composable torch modules: towers, interaction models, ranking.

The four parts of a recommender are visible here: the user representation
(:mod:`.user_tower`), the item representation (:mod:`.item_tower`: ids,
attributes, text embeddings), interaction models (:mod:`.mf`, :mod:`.ncf`,
:mod:`.two_tower`, :mod:`.sasrec`, :mod:`.gru4rec`, :mod:`.dcn`, baselines
:mod:`.popularity`, :mod:`.item_knn`) and the recommendation step that turns
scores into a list (:mod:`.recommend`). Data enters through :mod:`.encoded`,
model types are chosen by name in :mod:`.registry`, trained by
:mod:`.local_fit` (whose epoch step Ray Train reuses) and saved by
:mod:`.persistence`.
"""

from __future__ import annotations

from kuberec.components.models.base import Batch, Recommender
from kuberec.components.models.encoded import DataSchema, EncodedData, UserHistory
from kuberec.components.models.errors import TrainingError
from kuberec.components.models.local_fit import (
    EpochRecord,
    fit,
    make_optimizer,
    resolve_device,
    train_epoch,
)
from kuberec.components.models.persistence import LoadedModel, load_model, save_model
from kuberec.components.models.recommend import (
    TopK,
    genre_mask,
    recommend,
    score_users,
    top_k,
)
from kuberec.components.models.registry import (
    MODEL_TYPES,
    build_model,
    create_model,
    model_type,
    resolve_hparams,
)
from kuberec.components.models.samplers import make_sampler, shard_rows

__all__ = [
    "MODEL_TYPES",
    "Batch",
    "DataSchema",
    "EncodedData",
    "EpochRecord",
    "LoadedModel",
    "Recommender",
    "TopK",
    "TrainingError",
    "UserHistory",
    "build_model",
    "create_model",
    "fit",
    "genre_mask",
    "load_model",
    "make_optimizer",
    "make_sampler",
    "model_type",
    "recommend",
    "resolve_device",
    "resolve_hparams",
    "save_model",
    "score_users",
    "shard_rows",
    "top_k",
    "train_epoch",
]
