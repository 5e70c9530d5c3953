"""Every model type: output shapes, DDP-compatible losses, and losses that go down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kuberec.components.datasets.synthetic import SyntheticSpec, generate
from kuberec.components.models import (
    MODEL_TYPES,
    EncodedData,
    build_model,
    fit,
    make_sampler,
    resolve_hparams,
    score_users,
)
from kuberec.errors import ConfigError

TRAINED = [name for name, spec in MODEL_TYPES.items() if spec.trainable]
#: Small settings so a few epochs run in well under a second.
SMALL: dict[str, dict[str, object]] = {
    "mf": {"dim": 8},
    "ncf": {"dim": 8, "mlp_layers": [16, 8], "lr": 0.01},
    "two_tower": {"dim": 8, "history_length": 5, "batch_size": 64},
    "sasrec": {"dim": 8, "n_heads": 2, "history_length": 8, "batch_size": 32},
    "gru4rec": {"dim": 8, "history_length": 8, "batch_size": 32, "lr": 0.01},
    "dcn": {"embed_dim": 4, "mlp_layers": [16], "batch_size": 256, "lr": 0.01},
    "multvae": {"dim": 8, "hidden": 16, "batch_size": 8, "lr": 0.01},
    "bivae": {"dim": 8, "hidden": 16, "batch_size": 4, "lr": 0.01},
}


@pytest.fixture(scope="module")
def data() -> EncodedData:
    dataset = generate(SyntheticSpec(40, 30, 500, seed=11))
    text = np.random.default_rng(0).standard_normal((len(dataset.items), 6)).astype(np.float32)
    return EncodedData.from_dataset(dataset, text_embeddings=text)


def small(name: str) -> dict[str, object]:
    return SMALL.get(name, {})


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_scores_have_one_column_per_item(data: EncodedData, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, data, small(name))
    users = np.array([0, 3, 7])
    scores = score_users(model, data.history, users)
    assert scores.shape == (3, data.n_items)
    assert torch.isfinite(scores).all()


@pytest.mark.parametrize("name", list(MODEL_TYPES))
def test_pair_scores_match_the_full_scores(data: EncodedData, name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, data, small(name)).eval()
    users, items = torch.tensor([0, 3, 7]), torch.tensor([5, 0, 29])
    history = torch.as_tensor(data.history.recent(users.numpy(), model.history_length or None))
    with torch.no_grad():
        full = model.score(users, history if model.history_length != 0 else None)
        pairs = model.score_pairs(users, items, history if model.history_length != 0 else None)
    torch.testing.assert_close(pairs, full[torch.arange(3), items], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TRAINED)
def test_loss_uses_every_parameter_so_ddp_needs_no_unused_parameter_search(
    data: EncodedData, name: str
) -> None:
    torch.manual_seed(0)
    hparams = resolve_hparams(name, small(name))
    model = build_model(name, data, hparams)
    batch = next(iter(make_sampler(model, data, hparams, seed=0).batches(0)))
    loss = model(batch)
    assert loss.ndim == 0
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


@pytest.mark.parametrize("name", TRAINED)
def test_loss_decreases_over_a_few_epochs(data: EncodedData, name: str) -> None:
    _, history = fit(name, data, small(name), seed=0, epochs=6, device="cpu")
    losses = [r.loss for r in history]
    assert losses[-1] < losses[0], losses


def test_cold_users_are_scored_from_history_alone(data: EncodedData) -> None:
    torch.manual_seed(0)
    model = build_model("two_tower", data, small("two_tower")).eval()
    history = torch.as_tensor(data.history.recent(np.array([2]), 5))
    with torch.no_grad():
        cold = model.score(torch.tensor([-1]), history)
    assert cold.shape == (1, data.n_items) and torch.isfinite(cold).all()


def test_sequence_models_can_train_with_the_sampled_binary_loss(data: EncodedData) -> None:
    _, history = fit(
        "sasrec", data, {**small("sasrec"), "loss": "bce"}, seed=0, epochs=4, device="cpu"
    )
    assert history[-1].loss < history[0].loss


@pytest.mark.parametrize(("t", "beta"), [(0.0, 1.0), (1.0, None)])
def test_gbce_scales_the_positive_term_by_beta_from_the_sampling_rate(
    data: EncodedData, t: float, beta: float | None
) -> None:
    """t = 0 is plain BCE over the k negatives (beta 1); t = 1 gives beta = alpha = k / (n - 1)."""
    torch.manual_seed(0)
    hparams = resolve_hparams(
        "sasrec", {**small("sasrec"), "loss": "gbce", "n_negatives": 5, "gbce_t": t, "dropout": 0.0}
    )
    model = build_model("sasrec", data, hparams).eval()
    batch = next(iter(make_sampler(model, data, hparams, seed=0).batches(0)))
    hidden, targets, negatives = model.encode(batch["inputs"]), batch["targets"], batch["negatives"]
    real = targets != model.pad
    pos = (hidden * model.item_embeddings(targets)).sum(-1)[real]
    neg = torch.einsum("bld,bkd->blk", hidden, model.item_embeddings(negatives))
    neg = neg.masked_fill(negatives[:, None, :] == targets[:, :, None], -torch.inf)[real]
    expected_beta = beta if beta is not None else 5 / (data.n_items - 1)
    expected = (
        -expected_beta * torch.nn.functional.logsigmoid(pos)
        - torch.nn.functional.logsigmoid(-neg).sum(-1)
    ).mean()
    with torch.no_grad():
        torch.testing.assert_close(model.loss(batch), expected)


def test_a_horizon_of_two_averages_the_softmax_over_the_next_two_items(data: EncodedData) -> None:
    torch.manual_seed(0)
    hparams = resolve_hparams("sasrec", {**small("sasrec"), "horizon": 2, "dropout": 0.0})
    model = build_model("sasrec", data, hparams).eval()
    batch = next(iter(make_sampler(model, data, hparams, seed=0).batches(0)))
    real = batch["targets"] != model.pad
    logits = model.encode(batch["inputs"])[real] @ model.item_embeddings.weight[:-1].T
    ahead = batch["ahead"][real]
    taken = ahead != model.pad
    nll = torch.nn.functional.cross_entropy(
        logits[:, None, :].expand(-1, 2, -1)[taken], ahead[taken], reduction="sum"
    )
    with torch.no_grad():
        torch.testing.assert_close(model.loss(batch), nll / taken.sum())


def test_a_horizon_needs_the_full_softmax(data: EncodedData) -> None:
    with pytest.raises(ConfigError, match="horizon 3 > 1 needs loss 'ce'"):
        build_model("gru4rec", data, {**small("gru4rec"), "horizon": 3, "loss": "bce"})


@pytest.mark.parametrize(("n_items", "expected"), [(10_000, "ce"), (10_001, "sampled_ce")])
def test_the_default_loss_samples_only_where_a_full_softmax_is_too_costly(
    n_items: int, expected: str
) -> None:
    from kuberec.components.models.encoded import DataSchema
    from kuberec.components.models.registry import create_model

    for name in ("sasrec", "gru4rec"):
        model = create_model(name, DataSchema(n_users=5, n_items=n_items), {"dim": 8})
        assert model.loss_type == expected
