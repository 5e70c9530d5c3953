"""Model types by name: defaults, validation and construction in one place.

The CLI, the pipeline and the Ray trainer all go through :func:`resolve_hparams`
and :func:`build_model`, so a job file is validated the same way everywhere and a
run records the complete, effective hyperparameters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kuberec.components.models.base import Recommender
from kuberec.components.models.dcn import DCNv2
from kuberec.components.models.ease import EASE
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.gru4rec import GRU4Rec
from kuberec.components.models.hparams import (
    TRAINING_RULES,
    Flag,
    FloatRange,
    HParam,
    IntList,
    IntRange,
    OneOf,
    Rule,
    RuleViolation,
)
from kuberec.components.models.item_knn import ItemKNN
from kuberec.components.models.mf import MatrixFactorization
from kuberec.components.models.ncf import NeuMF
from kuberec.components.models.popularity import Popularity
from kuberec.components.models.sasrec import SASRec
from kuberec.components.models.sparse_ease import SparseEASE
from kuberec.components.models.two_tower import TwoTower
from kuberec.components.models.vae import MultVAE
from kuberec.errors import ConfigError

if TYPE_CHECKING:
    from kuberec.components.models.encoded import EncodedData

#: Validated hyperparameters (values are plain JSON types: int, float, bool, str, list[int]).
HParams = dict[str, Any]
CrossCheck = Callable[[HParams], None]


@dataclass(frozen=True)
class ModelType:
    """A model type: its class, defaults, rules and the keys its constructor takes."""

    name: str
    cls: type[Recommender]
    description: str
    defaults: Mapping[str, HParam]
    rules: Mapping[str, Rule]
    model_keys: tuple[str, ...]
    cross_check: CrossCheck | None = field(default=None)

    @property
    def trainable(self) -> bool:
        return self.cls.family != "none"


def _training(lr: float, batch_size: int) -> dict[str, HParam]:
    return {"lr": lr, "batch_size": batch_size, "weight_decay": 0.0, "max_grad_norm": 0.0}


def _heads_divide_dim(hp: HParams) -> None:
    if int(hp["dim"]) % int(hp["n_heads"]):
        raise ConfigError(
            f"sasrec hyperparameter 'n_heads': must divide dim ({hp['dim']}), got {hp['n_heads']}"
        )


_UNIT = FloatRange(0.0, 1.0, open_maximum=True)
_SEQUENCE_RULES: dict[str, Rule] = {
    "dim": IntRange(1), "dropout": _UNIT, "history_length": IntRange(1),
    "loss": OneOf(("ce", "bce", "gbce", "sampled_ce")),
    "n_negatives": IntRange(1), "gbce_t": FloatRange(0.0, 1.0),
}
#: What gbce / sampled_ce draw (gSASRec's 256 negatives, calibration t = 0.75).
_SEQUENCE_DEFAULTS: dict[str, HParam] = {"n_negatives": 256, "gbce_t": 0.75}
_SEQUENCE_KEYS = ("dim", "dropout", "history_length", "loss", "n_negatives", "gbce_t")

_EASE_RULES: dict[str, Rule] = {
    "lam": FloatRange(0.0, open_minimum=True), "time_mix": FloatRange(0.0, 1.0),
    "time_tau": FloatRange(0.0, open_minimum=True), "max_items": IntRange(1),
}
_EASE_KEYS = ("lam", "time_mix", "time_tau", "max_items")

MODEL_TYPES: dict[str, ModelType] = {
    m.name: m
    for m in (
        ModelType(
            "popularity", Popularity, "most interacted items, the same for every user",
            defaults={}, rules={}, model_keys=(),
        ),
        ModelType(
            "item_knn", ItemKNN, "cosine item-item neighbours of the user's history",
            defaults={"neighbours": 50, "shrink": 0.0},
            rules={"neighbours": IntRange(1), "shrink": FloatRange(0.0)},
            model_keys=("neighbours", "shrink"),
        ),
        ModelType(
            "ease", EASE, "closed-form linear item-item autoencoder (EASE)",
            defaults={"lam": 800.0, "time_mix": 0.0, "time_tau": 60.0, "max_items": 20_000},
            rules=_EASE_RULES, model_keys=_EASE_KEYS,
        ),
        ModelType(
            "ease_t", EASE, "EASE over co-occurrence mixed with a time-proximity kernel",
            defaults={"lam": 150.0, "time_mix": 0.7, "time_tau": 60.0, "max_items": 20_000},
            rules=_EASE_RULES, model_keys=_EASE_KEYS,
        ),
        ModelType(
            "sparse_ease", SparseEASE,
            "EASE restricted to each item's top co-occurring items (fsSLIM-style): any catalogue",
            defaults={"lam": 800.0, "neighbours": 200},
            rules={"lam": FloatRange(0.0, open_minimum=True), "neighbours": IntRange(1)},
            model_keys=("lam", "neighbours"),
        ),
        ModelType(
            "mf", MatrixFactorization, "matrix factorisation with BPR loss",
            defaults={"dim": 64, "reg": 0.01, **_training(0.01, 1024)},
            rules={"dim": IntRange(1), "reg": FloatRange(0.0), **TRAINING_RULES},
            model_keys=("dim", "reg"),
        ),
        ModelType(
            "ncf", NeuMF, "neural CF (GMF + MLP), BCE on sampled negatives",
            defaults={"dim": 32, "mlp_layers": [64, 32, 16], "dropout": 0.0, "n_negatives": 4,
                      **_training(0.005, 256)},
            rules={"dim": IntRange(1), "mlp_layers": IntList(1), "dropout": _UNIT,
                   "n_negatives": IntRange(1), **TRAINING_RULES},
            model_keys=("dim", "mlp_layers", "dropout"),
        ),
        ModelType(
            "two_tower", TwoTower, "user/item towers, in-batch softmax with logQ correction",
            defaults={"dim": 64, "temperature": 0.1, "history_length": 20, "logq": True,
                      "dropout": 0.0, "id_dropout": 0.0, **_training(0.003, 512)},
            rules={"dim": IntRange(1), "temperature": FloatRange(0.0, open_minimum=True),
                   "history_length": IntRange(1), "logq": Flag(), "dropout": _UNIT,
                   "id_dropout": _UNIT, **TRAINING_RULES},
            model_keys=("dim", "temperature", "history_length", "logq", "dropout",
                        "id_dropout"),
        ),
        ModelType(
            "sasrec", SASRec, "self-attentive sequential recommendation",
            defaults={"dim": 64, "n_layers": 2, "n_heads": 2, "dropout": 0.2,
                      "history_length": 50, "loss": "ce", **_SEQUENCE_DEFAULTS,
                      **_training(0.003, 128)},
            rules={**_SEQUENCE_RULES, "n_layers": IntRange(1), "n_heads": IntRange(1),
                   **TRAINING_RULES},
            model_keys=(*_SEQUENCE_KEYS, "n_layers", "n_heads"),
            cross_check=_heads_divide_dim,
        ),
        ModelType(
            "gru4rec", GRU4Rec, "recurrent (GRU) sequential recommendation",
            defaults={"dim": 64, "n_layers": 1, "dropout": 0.1, "history_length": 50,
                      "loss": "ce", **_SEQUENCE_DEFAULTS, **_training(0.005, 128)},
            rules={**_SEQUENCE_RULES, "n_layers": IntRange(1), **TRAINING_RULES},
            model_keys=(*_SEQUENCE_KEYS, "n_layers"),
        ),
        ModelType(
            "multvae", MultVAE, "variational autoencoder of each user's item set (Mult-VAE)",
            defaults={"dim": 200, "hidden": 600, "dropout": 0.5, "beta_cap": 0.2,
                      "anneal_steps": 2000, **_training(0.001, 64)},
            rules={"dim": IntRange(1), "hidden": IntRange(1), "dropout": _UNIT,
                   "beta_cap": FloatRange(0.0), "anneal_steps": IntRange(1), **TRAINING_RULES},
            model_keys=("dim", "hidden", "dropout", "beta_cap", "anneal_steps"),
        ),
        ModelType(
            "dcn", DCNv2, "DCN-v2 CTR ranker over user, item and context features",
            defaults={"embed_dim": 16, "cross_layers": 3, "mlp_layers": [128, 64],
                      "dropout": 0.1, "context_dropout": 0.1, "n_negatives": 4,
                      **_training(0.005, 256)},
            rules={"embed_dim": IntRange(1), "cross_layers": IntRange(0),
                   "mlp_layers": IntList(1), "dropout": _UNIT,
                   "context_dropout": FloatRange(0.0, 1.0), "n_negatives": IntRange(1),
                   **TRAINING_RULES},
            model_keys=("embed_dim", "cross_layers", "mlp_layers", "dropout", "context_dropout"),
        ),
    )
}


def model_type(name: str) -> ModelType:
    """The registered type called ``name``, or a ConfigError listing the valid names."""
    found = MODEL_TYPES.get(name)
    if found is None:
        raise ConfigError(f"unknown model type {name!r}; valid: {sorted(MODEL_TYPES)}")
    return found


def resolve_hparams(name: str, hparams: Mapping[str, object] | None = None) -> HParams:
    """Defaults overridden by ``hparams``, every value checked against its rule."""
    spec = model_type(name)
    given = dict(hparams or {})
    unknown = sorted(set(given) - set(spec.rules))
    if unknown:
        raise ConfigError(
            f"unknown hyperparameter(s) {unknown} for model type {name!r}; "
            f"valid: {sorted(spec.rules)}"
        )
    resolved: HParams = {}
    for key, rule in spec.rules.items():
        value = given.get(key, spec.defaults[key])
        try:
            resolved[key] = rule.check(value)
        except RuleViolation as exc:
            raise ConfigError(f"{name} hyperparameter {key!r}: {exc}, got {value!r}") from None
    if spec.cross_check is not None:
        spec.cross_check(resolved)
    return resolved


def create_model(name: str, schema: DataSchema, hparams: Mapping[str, object]) -> Recommender:
    """A model with the shapes of ``schema`` and empty data tables (what loading fills)."""
    spec = model_type(name)
    resolved = resolve_hparams(name, hparams)
    return spec.cls(schema, **{k: resolved[k] for k in spec.model_keys})  # type: ignore[arg-type]


def build_model(
    name: str, data: EncodedData, hparams: Mapping[str, object] | None = None
) -> Recommender:
    """A model ready to train (or, for baselines, to score) on ``data``."""
    model = create_model(name, data.schema, hparams or {})
    model.attach(data)
    return model
