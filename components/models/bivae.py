"""BiVAE: a bilateral variational autoencoder of users and items (Truong et al., WSDM 2021).

Two encoders share one latent space: the user encoder reads a user's multi-hot row
over the items, the item encoder an item's multi-hot column over the users, and
each side is decoded against the other side's latest sample, ``sigmoid(theta .
beta)``, under a Poisson (or Bernoulli, Gaussian) likelihood with a standard-normal
prior. This is the best deep row of the Microsoft Recommenders MovieLens 100K table
(NDCG@10 0.475 on its per-item stratified split); the defaults are that benchmark's
cornac settings (``dim`` 100, one tanh layer of 200, Poisson, lr 0.001, batch 1024; it
trains 500 epochs, the ml-100k recipe's budget).

Cornac alternates full passes (all items, then all users); here each step takes a
batch of each side (``family = "bilateral"``, :class:`~.samplers.BilateralSampler`),
so one optimiser and the generic loop train both encoders and every parameter takes
part in every step. The other side's samples and the items' posterior means live in
buffers refreshed by each step, so a saved model scores without the training matrix:
a user is encoded from their history (new users too), items by their stored means.
Under DDP (buffers are not synchronised, ``local_fit``) each worker refreshes its own
copies for the units its shard visits; shards are redrawn every epoch, so every row is
refreshed on every worker within a few epochs, but a row can be that many epochs old.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kuberec.components.models.base import Batch, Recommender, multi_hot, require_history
from kuberec.components.models.encoded import DataSchema
from kuberec.components.models.hparams import TRAINING_RULES, FloatRange, IntRange, OneOf
from kuberec.components.models.model_type import ModelType, training_defaults

LIKELIHOODS = ("poisson", "bernoulli", "gaussian")
_EPS = 1e-10


class _Encoder(nn.Module):
    """Multi-hot row -> (posterior mean, standard deviation in (0, 1))."""

    def __init__(self, width: int, hidden: int, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(width, hidden), nn.Tanh())
        self.mu, self.std = nn.Linear(hidden, dim), nn.Linear(hidden, dim)

    def forward(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        hidden = self.body(rows)
        return self.mu(hidden), torch.sigmoid(self.std(hidden))


class BiVAE(Recommender):
    family = "bilateral"

    def __init__(
        self, schema: DataSchema, *, dim: int, hidden: int, likelihood: str, kl_weight: float
    ) -> None:
        super().__init__(schema)
        self.history_length = None  # the whole history
        self.likelihood, self.kl_weight = likelihood, kl_weight
        n_users, n_items = schema.n_users, schema.n_items
        self.user_encoder = _Encoder(n_items, hidden, dim)
        self.item_encoder = _Encoder(n_users, hidden, dim)
        # Cornac's starting samples: users uniform in +-1/sqrt(dim), items N(0, 0.01^2).
        bound = dim**-0.5
        self.register_buffer("theta", torch.empty(n_users, dim).uniform_(-bound, bound))
        self.register_buffer("beta", torch.randn(n_items, dim) * 0.01)
        self.register_buffer("beta_mean", torch.zeros(n_items, dim))

    def _side_loss(
        self, rows: Tensor, encoder: _Encoder, other: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(negative ELBO of these rows, their sample, their mean) decoded against ``other``."""
        mu, std = encoder(rows)
        sample = mu + torch.randn_like(mu) * std
        rate = torch.sigmoid(sample @ other.T)
        if self.likelihood == "poisson":
            ll = rows * torch.log(rate + _EPS) - rate
        elif self.likelihood == "bernoulli":
            ll = rows * torch.log(rate + _EPS) + (1 - rows) * torch.log(1 - rate + _EPS)
        else:
            ll = -((rows - rate) ** 2)
        kl = -0.5 * (1 + 2.0 * torch.log(std) - mu.pow(2) - std.pow(2))
        return (self.kl_weight * kl.sum(1) - ll.sum(1)).mean(), sample.detach(), mu.detach()

    def loss(self, batch: Batch) -> Tensor:
        n_users, n_items = self.schema.n_users, self.schema.n_items
        items, users = batch["items"], batch["users"]
        # The items decode against a copy of the users' samples: the users' rows of the
        # buffer are overwritten below, before the backward pass reads it.
        item_rows = multi_hot(batch["item_users"], n_users)
        item_loss, beta, beta_mean = self._side_loss(
            item_rows, self.item_encoder, self.theta.clone()
        )
        self.beta[items], self.beta_mean[items] = beta, beta_mean
        user_rows = multi_hot(batch["history"], n_items)
        user_loss, theta, _ = self._side_loss(user_rows, self.user_encoder, self.beta)
        self.theta[users] = theta
        return item_loss + user_loss

    def score(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        rows = multi_hot(require_history(history, type(self).__name__), self.schema.n_items)
        mu, _ = self.user_encoder(rows)
        return mu @ self.beta_mean.T  # the logit: sigmoid is monotone, so the ranking is its


MODEL_TYPES = (
    ModelType(
        "bivae",
        BiVAE,
        "bilateral VAE of users and items (BiVAE)",
        defaults={
            "dim": 100,
            "hidden": 200,
            "likelihood": "poisson",
            "kl_weight": 1.0,
            **training_defaults(0.001, 1024),
        },
        rules={
            "dim": IntRange(1),
            "hidden": IntRange(1),
            "likelihood": OneOf(LIKELIHOODS),
            "kl_weight": FloatRange(0.0),
            **TRAINING_RULES,
        },
        model_keys=("dim", "hidden", "likelihood", "kl_weight"),
    ),
)
