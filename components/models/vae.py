"""Mult-VAE: a variational autoencoder of each user's whole item set (Liang et al. 2018).

The encoder reads the user's L2-normalised multi-hot history (with input dropout),
the decoder gives a softmax over the catalogue, and training maximises the
multinomial likelihood of the user's items minus ``beta`` times the KL term, with
``beta`` annealed linearly from 0 to ``beta_cap`` over ``anneal_steps`` optimiser
steps (the paper's recipe; the step count travels in the ``state_dict``). Scoring
is the decoder's logits at the posterior mean: a user is represented only by
their history, so a new user with a history is scored without retraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender, multi_hot, require_history
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import TRAINING_RULES, UNIT, FloatRange, IntRange
from kuberec.components.models.model_type import ModelType, training_defaults


class MultVAE(Recommender):
    family = "user"

    def __init__(
        self,
        schema: DataSchema,
        *,
        dim: int,
        hidden: int,
        dropout: float,
        beta_cap: float,
        anneal_steps: int,
    ) -> None:
        super().__init__(schema)
        self.history_length = None  # the whole history
        self.input_dropout, self.beta_cap, self.anneal_steps = dropout, beta_cap, anneal_steps
        n = schema.n_items
        self.encoder = nn.Sequential(nn.Linear(n, hidden), nn.Tanh(), nn.Linear(hidden, 2 * dim))
        self.decoder = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, n))
        for layer in (*self.encoder, *self.decoder):
            if isinstance(layer, nn.Linear):
                nn.init.xavier_normal_(layer.weight)
                nn.init.normal_(layer.bias, std=0.001)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def _posterior(self, items: Tensor) -> tuple[Tensor, Tensor]:
        x = F.normalize(items, dim=1)
        x = F.dropout(x, self.input_dropout, training=self.training)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def loss(self, batch: Batch) -> Tensor:
        items = multi_hot(batch["history"], self.schema.n_items)
        mu, logvar = self._posterior(items)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        log_probs = F.log_softmax(self.decoder(z), dim=1)
        likelihood = -(log_probs * items).sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        beta = min(self.beta_cap, self.beta_cap * float(self.steps) / max(self.anneal_steps, 1))
        self.steps += 1
        return likelihood + beta * kl

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        items = multi_hot(require_history(history, type(self).__name__), self.schema.n_items)
        mu, _ = self._posterior(items)
        return self.decoder(mu)


MODEL_TYPES = (
    ModelType(
        "multvae",
        MultVAE,
        "variational autoencoder of each user's item set (Mult-VAE)",
        defaults={
            "dim": 200,
            "hidden": 600,
            "dropout": 0.5,
            "beta_cap": 0.2,
            "anneal_steps": 2000,
            **training_defaults(0.001, 64),
        },
        rules={
            "dim": IntRange(1),
            "hidden": IntRange(1),
            "dropout": UNIT,
            "beta_cap": FloatRange(0.0),
            "anneal_steps": IntRange(1),
            **TRAINING_RULES,
        },
        model_keys=("dim", "hidden", "dropout", "beta_cap", "anneal_steps"),
    ),
)
